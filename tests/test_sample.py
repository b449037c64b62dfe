"""The bundled sample corpus: deterministic, counted, and its ground truth is true.

The checks here re-derive everything from the written files with code of
their own (readers, checksums, shingles), not with the generator's helpers.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import itertools
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from tokenmill import cli
from tokenmill.errors import UserError
from tokenmill.sample import write_sample

EXPECTED_DOCS = {"web": 1294, "news": 798, "forum": 947, "books": 138, "code": 423}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    truth = write_sample(out)
    return out, truth, read_docs(out)


# ------------------------------------------------------------------ independent readers

def read_jsonl_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    elif path.name.endswith(".zst"):
        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data.split(b"\n")[:-1] if data else []


def parse_row(raw: bytes) -> dict | None:
    """A usable row: valid UTF-8, valid JSON, a string text. Else None."""
    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return row if isinstance(row, dict) and isinstance(row.get("text"), str) else None


def read_docs(out: Path) -> dict[str, dict]:
    """key -> {"text", "source"} for every usable document, keyed as planted.json says."""
    docs: dict[str, dict] = {}
    for source in ("web", "news", "forum"):
        for path in sorted((out / source).iterdir()):
            for n, raw in enumerate(read_jsonl_lines(path), 1):
                row = parse_row(raw)
                if row is not None:
                    key = row.get("id") or f"{source}/{path.name}:{n}"
                    docs[key] = {"text": row["text"], "source": source}
    for path in sorted((out / "books").iterdir()):
        for row in pq.read_table(path).to_pylist():
            docs[row["id"]] = {"text": row["text"], "source": "books", "meta": row["meta"]}
    for path in sorted((out / "code").rglob("*")):
        if path.is_file():
            try:
                docs[str(path.relative_to(out))] = {"text": path.read_text("utf-8"), "source": "code"}
            except UnicodeDecodeError:
                pass  # the planted binary file
    return docs


def shingles(text: str, n: int = 5) -> set:
    toks = re.findall(r"\w+", text.lower())
    return {" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1)}


def jac(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


# ------------------------------------------------------------------ determinism and counts

def digest_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_runs_are_byte_identical_and_seed_matters(sample, tmp_path):
    out, _, _ = sample
    write_sample(tmp_path / "again")
    assert digest_tree(out) == digest_tree(tmp_path / "again")
    write_sample(tmp_path / "seed0", seed=0, n_docs=400)
    write_sample(tmp_path / "seed1", seed=1, n_docs=400)
    seed0, seed1 = digest_tree(tmp_path / "seed0"), digest_tree(tmp_path / "seed1")
    assert seed0["web/part-00000.jsonl"] != seed1["web/part-00000.jsonl"]
    assert seed0["planted.json"] != seed1["planted.json"]


def test_document_counts_per_source(sample):
    out, truth, docs = sample
    assert truth["n_docs"] == 3600 == len(docs)
    assert {s: v["documents"] for s, v in truth["sources"].items()} == EXPECTED_DOCS
    assert Counter(d["source"] for d in docs.values()) == EXPECTED_DOCS
    size = sum(len(d["text"].encode()) for d in docs.values())
    assert 3_000_000 < size < 8_000_000  # a few MB: the whole pipeline runs in minutes


def test_layout_and_formats(sample):
    out, truth, _ = sample
    assert (out / "web/part-00003.jsonl").read_bytes() == b""
    assert gzip.decompress((out / "news/part-00000.jsonl.gz").read_bytes()).startswith(b'{"id": "news-000001"')
    forum = read_jsonl_lines(out / "forum/part-00000.jsonl.zst")
    assert "id" not in json.loads(forum[0]) and set(json.loads(forum[0])) == {"text", "meta"}
    assert pq.read_schema(out / "books/part-00000.parquet").names == ["id", "text", "meta"]
    code = [k for k in truth["sources"]["code"]["files"]]
    assert all(re.fullmatch(r"code/[a-z-]+/(core|io|util|api|jobs|vendor|src)/\w+\.(py|js)", p) for p in code)
    assert sum(p.endswith(".js") for p in code) > 50
    rows = {s: v["rows"] for s, v in truth["sources"].items()}
    assert rows == {"web": 1299, "news": 799, "forum": 948, "books": 138, "code": 423}


def test_bad_rows_are_bad_and_at_their_lines(sample):
    out, truth, _ = sample
    assert Counter(b["kind"] for b in truth["bad_rows"]) == {
        "malformed_json": 3, "invalid_utf8": 1, "null_text": 1, "missing_text": 1, "nul_bytes": 1}
    for bad in truth["bad_rows"]:
        raw = read_jsonl_lines(out / bad["path"])[bad["line"] - 1]
        assert parse_row(raw) is None, bad
        if bad["kind"] == "invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")
        if bad["kind"] == "nul_bytes":
            assert b"\x00" in raw
    # Every other line of every JSONL file is a usable row.
    total_bad = sum(1 for s in ("web", "news", "forum") for p in (out / s).iterdir()
                    for raw in read_jsonl_lines(p) if parse_row(raw) is None)
    assert total_bad == len(truth["bad_rows"]) == 7
    assert truth["bad_files"] == [{"path": "web/part-00003.jsonl", "kind": "empty_file"},
                                  {"path": "code/misc/blob.txt", "kind": "binary_file"}]
    with pytest.raises(UnicodeDecodeError):
        (out / "code/misc/blob.txt").read_text("utf-8")


# ------------------------------------------------------------------ PII

def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()][::-1]
    return sum(d if i % 2 == 0 else (d * 2 if d < 5 else d * 2 - 9) for i, d in enumerate(digits)) % 10 == 0


def iban_ok(value: str) -> bool:
    s = value.replace(" ", "")
    lengths = {"DE": 22, "GB": 22, "NL": 18, "FR": 27}
    n = int("".join(str(int(c, 36)) for c in s[4:] + s[:4]))
    return len(s) == lengths[s[:2]] and n % 97 == 1


def btc_ok(address: str) -> bool:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n = 0
    for c in address:
        n = n * 58 + alphabet.index(c)
    raw = n.to_bytes(25, "big")
    return raw[0] in (0, 5) and hashlib.sha256(hashlib.sha256(raw[:21]).digest()).digest()[:4] == raw[21:]


def test_pii_values_are_in_their_documents_and_valid(sample):
    _, truth, docs = sample
    found = truth["pii"]
    assert Counter(p["entity"] for p in found) == {
        "EMAIL_ADDRESS": 14, "PHONE_NUMBER": 18, "CREDIT_CARD": 8, "IP_ADDRESS": 10,
        "IBAN_CODE": 6, "US_SSN": 6, "CRYPTO": 6, "URL": 8}
    assert len({p["value"] for p in found}) == len(found)
    for p in found:
        assert p["value"] in docs[p["doc"]]["text"], p
        assert docs[p["doc"]]["source"] == p["source"]
    checks = {
        "EMAIL_ADDRESS": lambda v: re.fullmatch(r"[a-z0-9._]+@([a-z]+\.)?example\.(com|org|net)", v),
        "CREDIT_CARD": luhn_ok,
        "IBAN_CODE": iban_ok,
        "CRYPTO": btc_ok,
        "US_SSN": lambda v: re.fullmatch(r"(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}", v),
        "IP_ADDRESS": lambda v: ipaddress.ip_address(v).is_private,  # documentation ranges
        "URL": lambda v: re.fullmatch(r"https://[a-z.]*example\.(com|org|net)/\S+", v),
        "PHONE_NUMBER": lambda v: re.fullmatch(r"[+()\d][\d .()-]{9,16}\d", v),
    }
    for p in found:
        assert checks[p["entity"]](p["value"]), p
    assert {p["value"][:3] for p in found if p["entity"] == "PHONE_NUMBER"} >= {"+44", "+61"}
    assert sum(":" in p["value"] for p in found if p["entity"] == "IP_ADDRESS") == 4
    assert [p["source"] for p in found].count("code") == 2


def test_checkers_reject_corrupted_values():
    # The validity checks above must be able to fail.
    assert not luhn_ok("4111 1111 1111 1112") and luhn_ok("4111 1111 1111 1111")
    assert not iban_ok("DE89370400440532013001") and iban_ok("DE89370400440532013000")
    assert btc_ok("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2") and not btc_ok("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3")


def test_phone_numbers_are_valid_for_phonenumbers(sample):
    phonenumbers = pytest.importorskip("phonenumbers")
    _, truth, _ = sample
    for p in truth["pii"]:
        if p["entity"] == "PHONE_NUMBER":
            assert phonenumbers.is_valid_number(phonenumbers.parse(p["value"], "US")), p["value"]


def test_prose_has_no_pii_shaped_numbers_outside_plants(sample):
    _, truth, docs = sample
    planted = {p["doc"] for p in truth["pii"]} | {j["doc"] for j in truth["junk"]}
    pattern = re.compile(r"\d{3}-\d{2}-\d{4}|\d{4}[ -]?\d{4}[ -]?\d{4}|@|https?://|\d+\.\d+\.\d+\.\d+")
    hits = [k for k, d in docs.items() if d["source"] != "code" and k not in planted and pattern.search(d["text"])]
    assert hits == []


# ------------------------------------------------------------------ duplicates

def test_exact_duplicates_normalize_to_one_text(sample):
    _, truth, docs = sample
    clusters = truth["exact_duplicates"]
    assert len(clusters) == 26
    for c in clusters:
        texts = [docs[m["doc"]]["text"] for m in c["docs"]]
        assert len(texts) >= 2 and len({" ".join(t.lower().split()) for t in texts}) == 1
        for m, t in zip(c["docs"], texts):
            assert (t == texts[0]) == (m["variant"] in ("original", "identical")), m
    keys = [m["doc"] for c in clusters for m in c["docs"]]
    assert len(keys) == len(set(keys))
    # No other two documents share a normalized text.
    groups = defaultdict(set)
    for k, d in docs.items():
        groups[" ".join(d["text"].lower().split())].add(k)
    assert sorted(sorted(g) for g in groups.values() if len(g) > 1) == sorted(
        sorted(m["doc"] for m in c["docs"]) for c in clusters)


def test_near_duplicates_have_jaccard_at_least_085(sample):
    _, truth, docs = sample
    clusters = truth["near_duplicates"]
    assert len(clusters) == 22
    for c in clusters:
        first = shingles(docs[c["docs"][0]["doc"]]["text"])
        for m in c["docs"][1:]:
            text = docs[m["doc"]]["text"]
            j = jac(first, shingles(text))
            assert 0.85 <= j < 1.0 and j == pytest.approx(m["jaccard"], abs=1e-4), m
            split = lambda t: {tuple(t.split()[i:i + 5]) for i in range(len(t.split()) - 4)}  # noqa: E731
            assert jac(split(docs[c["docs"][0]["doc"]]["text"]), split(text)) >= 0.85


def test_no_unplanted_pair_is_even_half_similar(sample):
    """All pairs, via an inverted index of rare shingles: only planted clusters are similar."""
    _, truth, docs = sample
    sets = {k: shingles(d["text"]) for k, d in docs.items() if len(d["text"].split()) >= 5}
    index = defaultdict(list)
    for k, s in sets.items():
        for sh in s:
            index[sh].append(k)
    shared = Counter()
    for keys in index.values():
        if 1 < len(keys) <= 20:  # a pair with Jaccard >= 0.5 shares many rare shingles
            shared.update(itertools.combinations(sorted(keys), 2))
    similar = {pair for pair, n in shared.items() if n >= 10 and jac(sets[pair[0]], sets[pair[1]]) >= 0.5}
    planted = set()
    for c in truth["exact_duplicates"] + truth["near_duplicates"]:
        planted |= set(itertools.combinations(sorted(m["doc"] for m in c["docs"]), 2))
    assert similar == {p for p in planted if p[0] in sets and p[1] in sets}


def test_random_pairs_are_far_apart(sample):
    _, _, docs = sample
    rng = random.Random(7)
    keys = sorted(k for k, d in docs.items() if d["source"] != "code" and len(d["text"]) > 500)
    js = [jac(shingles(docs[a]["text"]), shingles(docs[b]["text"])) for a, b in
          (rng.sample(keys, 2) for _ in range(300))]
    assert max(js) < 0.05


# ------------------------------------------------------------------ text defects and quality

def test_text_defects_are_where_planted(sample):
    _, truth, docs = sample
    ftfy = pytest.importorskip("ftfy")
    assert len(truth["mojibake"]) == 12 and len(truth["html_entities"]) == 10
    for m in truth["mojibake"]:
        assert m["broken"] in docs[m["doc"]]["text"] and "\u00c3" in m["broken"] + "\u00e2"
        assert ftfy.fix_text(m["broken"], uncurl_quotes=False) == m["original"]
    for m in truth["html_entities"]:
        assert m["escaped"] in docs[m["doc"]]["text"] and "&" in m["escaped"]
        assert ftfy.fix_text(m["escaped"]) == m["unescaped"]
    for m in truth["control_chars"]:
        assert all(c in docs[m["doc"]]["text"] for c in m["chars"])
    bad = truth["bad_words"]
    assert bad["words"] == ["frack", "gorram", "smeg"] and len(bad["docs"]) == 6
    for m in bad["docs"]:
        assert re.search(rf"\b{m['word']}\b", docs[m["doc"]]["text"])
    others = [d["text"] for k, d in docs.items() if k not in {m["doc"] for m in bad["docs"]}]
    assert not any(re.search(r"\b(frack|gorram|smeg)\b", t) for t in others)


def gopher_failures(text: str) -> list[str]:
    """Names of the Gopher quality rules (Rae et al. 2021, appendix A) a text fails."""
    words = text.split()
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    lw = [w.lower() for w in words]
    fails = []
    if not text.strip():
        return ["empty"]
    if len(words) < 50:
        fails.append("too_short")
    if not 3 <= sum(map(len, words)) / len(words) <= 10:
        fails.append("gopher_mean_word_length")
    if (text.count("#") + text.count("...")) / len(words) > 0.1:
        fails.append("gopher_symbol_ratio")
    if sum(bool(re.search(r"[a-zA-Z]", w)) for w in words) / len(words) < 0.8:
        fails.append("gopher_alpha_words")
    if sum(ln.startswith(("\u2022", "-", "*")) for ln in lines) / len(lines) > 0.9:
        fails.append("gopher_bullet_lines")
    if sum(ln.endswith(("...", "\u2026")) for ln in lines) / len(lines) > 0.3:
        fails.append("gopher_ellipsis_lines")
    if len({"the", "be", "to", "of", "and", "that", "have", "with"} & set(lw)) < 2:
        fails.append("gopher_stop_words")
    if 1 - len(set(lines)) / len(lines) > 0.3:
        fails.append("gopher_dup_lines")
    if 1 - len(set(paras)) / len(paras) > 0.3:
        fails.append("gopher_dup_paras")
    total = max(sum(map(len, lw)), 1)
    for n, limit in ((2, 0.20), (3, 0.18), (4, 0.16)):
        grams = Counter(tuple(lw[i:i + n]) for i in range(len(lw) - n + 1))
        if grams:
            top, count = grams.most_common(1)[0]
            if count > 1 and count * sum(map(len, top)) / total > limit:
                fails.append(f"gopher_top_{n}gram")
    for n, limit in ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)):
        grams = [tuple(lw[i:i + n]) for i in range(len(lw) - n + 1)]
        seen, dup = Counter(grams), [False] * len(lw)
        for i, g in enumerate(grams):
            if seen[g] > 1:
                dup[i:i + n] = [True] * n
        if sum(len(w) for w, d in zip(lw, dup) if d) / total > limit:
            fails.append(f"gopher_dup_{n}gram")
    return fails


def test_prose_passes_and_junk_fails_gopher_rules(sample):
    _, truth, docs = sample
    junk = {j["doc"]: j for j in truth["junk"]}
    assert Counter(j["kind"] for j in junk.values()) == {"symbols": 4, "lorem": 4, "short": 4, "bullets": 4,
                                                         "boilerplate": 4, "ellipsis": 4, "empty": 1}
    prose = {k: d["text"] for k, d in docs.items() if d["source"] != "code" and k not in junk}
    failing = {k: fails for k, fails in ((k, gopher_failures(t)) for k, t in prose.items()) if fails}
    assert failing == {}
    for key, j in junk.items():
        assert j["rule"] in gopher_failures(docs[key]["text"]), (j, docs[key]["text"][:80])


def test_gopher_check_can_fail():
    assert gopher_failures("word " * 10) and gopher_failures("the cat sat " * 40)
    assert gopher_failures("\n".join(["\u2022 an item"] * 60))
    assert {"gopher_stop_words", "gopher_top_2gram", "gopher_dup_5gram"} <= set(
        gopher_failures(" ".join(["lorem ipsum dolor sit amet"] * 20)))


# ------------------------------------------------------------------ sizes, errors, CLI

def test_small_corpus_keeps_every_plant(tmp_path):
    truth = write_sample(tmp_path / "s", n_docs=400)
    docs = read_docs(tmp_path / "s")
    assert len(docs) == 400 == truth["n_docs"]
    assert len(truth["pii"]) == 76 and len({p["entity"] for p in truth["pii"]}) == 8
    for p in truth["pii"]:
        assert p["value"] in docs[p["doc"]]["text"]
    assert len(truth["bad_rows"]) == 7 and len(truth["near_duplicates"]) == 22
    with pytest.raises(UserError, match="--n-docs"):
        write_sample(tmp_path / "t", n_docs=399)


def test_cli_writes_and_refuses_a_foreign_directory(tmp_path, capsys):
    assert cli.main(["sample", str(tmp_path / "c"), "--n-docs", "400"]) == 0
    out = capsys.readouterr().out
    assert "wrote 400 documents" in out and f"--input {tmp_path / 'c' / 'forum'} " in out
    assert cli.main(["sample", str(tmp_path / "c"), "--n-docs", "400"]) == 0  # rewriting a sample is fine
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("mine")
    assert cli.main(["sample", str(tmp_path / "foreign")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "foreign" / "keep.txt").read_text() == "mine"
