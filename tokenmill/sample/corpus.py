"""The bundled sample corpus: ``tokenmill sample OUT_DIR``.

A deterministic corpus made here (nothing downloaded) with the defects a real
crawl has, planted at known places so tests can assert exact outcomes:

    OUT_DIR/web/part-0000{0,1,2}.jsonl      JSONL with ids; part-00003.jsonl is empty
    OUT_DIR/news/part-0000{0,1,2}.jsonl.gz  gzip JSONL with ids
    OUT_DIR/forum/part-0000{0,1}.jsonl.zst  zstd JSONL without ids
    OUT_DIR/books/part-0000{0,1}.parquet    Parquet, one chapter per row, with ids
    OUT_DIR/code/<repo>/**/*.py|*.js        one document per file (plus one binary file)
    OUT_DIR/planted.json                    ground truth of everything planted

A document without an id is named in planted.json by ``PATH:LINE`` (JSONL,
1-based line of the decompressed file) or ``PATH`` (text file), PATH relative
to OUT_DIR. The same seed gives byte-identical files.

Give the pipeline one input per source directory (``input_paths``), not
OUT_DIR itself: that labels each document with its source, and keeps
planted.json (a .json file) from being read as a JSONL input.
"""

from __future__ import annotations

import argparse
import html
import json
import random
from pathlib import Path

from tokenmill import safe_output
from tokenmill.errors import UserError
from tokenmill.sample import codegen, files, pii, plants, prose
from tokenmill.sample import words as W
from tokenmill.sample.files import Doc
from tokenmill.sample.plants import jaccard, word_shingles  # noqa: F401  (public: the ground truth's shingles)

DEFAULT_N_DOCS = 3600
MIN_N_DOCS = 400
EXACT_CLUSTERS = 24
NEAR_CLUSTERS = 20
CODE_CLUSTERS = 2  # of each kind, exact and near
MOJIBAKE_DOCS = 12
HTML_DOCS = 10
CONTROL_DOCS = 3
BAD_WORD_DOCS = 6
CODE_PII_DOCS = 2
JUNK_PER_KIND = 4
SOURCES = ("web", "news", "forum", "books", "code")
PROSE_SOURCES = ("web", "news", "forum", "books")
DUP_SOURCES = ("web", "news", "forum")
SHARE = {"news": 0.22, "forum": 0.26, "books": 0.04, "code": 0.12}  # web takes the rest
REPOS = ["ledger-tools", "weather-dash", "garden-planner", "trainline-api", "orbit-sim",
         "recipe-box", "harbour-ops", "score-keeper"]


def _rng(seed: int, part: str) -> random.Random:
    """One generator per part, so changing one part leaves the others' bytes alone."""
    return random.Random(f"tokenmill-sample-{seed}-{part}")


# ---------------------------------------------------------------- base documents

def _meta(source: str, rng: random.Random) -> dict:
    if source == "web":
        return {"url": f"https://www.example.com/page/{rng.randint(10000, 99999)}", "lang": "en"}
    if source == "news":
        return {"section": rng.choice(W.SECTIONS), "published": f"{rng.randint(2015, 2024)}-06-01"}
    return {"board": rng.choice(W.BOARDS), "thread": rng.randint(1000, 99999), "post": 1}


def _prose_docs(source: str, n: int, rng: random.Random) -> list[Doc]:
    make = {"web": prose.web_page, "news": prose.news_story, "forum": prose.forum_post}[source]
    return [Doc(source, *make(rng)) for _ in range(n)]


def _book_docs(n: int, rng: random.Random) -> list[Doc]:
    docs: list[Doc] = []
    book = 0
    while len(docs) < n:
        book += 1
        title, author = prose.book_title(rng), f"{rng.choice(W.FIRST_NAMES)} {rng.choice(W.LAST_NAMES)}"
        for ch in range(1, min(rng.randint(2, 5), n - len(docs)) + 1):
            meta = {"title": title, "author": author, "chapter": str(ch)}
            docs.append(Doc("books", prose.book_chapter(rng, title, author, ch), meta, id=f"book-{book:03d}-ch{ch:02d}"))
    return docs


def _code_docs(n: int, rng: random.Random, used: set[str]) -> list[Doc]:
    return [_code_doc(rng, used) for _ in range(n)]


def _code_doc(rng: random.Random, used: set[str], min_lines: int = 0) -> Doc:
    """A .py (70%) or .js file at a path not used before."""
    repo = rng.choice(REPOS)
    while True:
        if rng.random() < 0.7:
            pkg = rng.choice(["core", "io", "util", "api", "jobs"])
            path, text = f"code/{repo}/{pkg}/{codegen.snake(rng)}.py", codegen.python_module(rng, min_lines)
        else:
            path, text = f"code/{repo}/src/{codegen.camel(rng)}.js", codegen.js_module(rng, min_lines)
        if path not in used:
            used.add(path)
            return Doc("code", text, {"repo": repo}, path=path)


# ---------------------------------------------------------------- planting

def _pick(docs: list[Doc], rng: random.Random) -> Doc:
    """A not-yet-planted document, so each document carries one kind of plant."""
    free = [d for d in docs if not d.planted]
    doc = rng.choice(free)
    doc.planted = True
    return doc


def _unique_pii(rng: random.Random, kind: str, used: set[str]) -> tuple[str, str, str]:
    """A PII sentence whose value was not planted before, so every value names one document."""
    while True:
        sentence, entity, value = pii.pii_sentence(rng, kind)
        if value not in used:
            used.add(value)
            return sentence, entity, value


def _plant_pii(prose_docs: list[Doc], code_docs: list[Doc], rng: random.Random) -> list[dict]:
    found, used = [], set()
    for kind, count in pii.PLAN.items():
        for i in range(count):
            doc = _pick(prose_docs, rng)
            sentence, entity, value = _unique_pii(rng, kind, used)
            doc.text = plants.insert_sentence(doc.text, sentence, rng)
            found.append({"doc": doc, "entity": entity, "value": value})
            if kind == "EMAIL_ADDRESS" and i % 2 == 0:  # every other one: e-mail and phone together
                sentence, entity, value = _unique_pii(rng, "PHONE_NUMBER", used)
                doc.text = plants.insert_sentence(doc.text, sentence, rng)
                found.append({"doc": doc, "entity": entity, "value": value})
    for _ in range(CODE_PII_DOCS):
        doc = _pick(code_docs, rng)
        value = _unique_pii(rng, "EMAIL_ADDRESS", used)[2]
        mark = "#" if doc.path.endswith(".py") else "//"
        doc.text = f"{mark} Maintainer: {value}\n{doc.text}"
        found.append({"doc": doc, "entity": "EMAIL_ADDRESS", "value": value})
    return found


def _plant_text_fixes(prose_docs: list[Doc], rng: random.Random) -> dict[str, list]:
    out: dict[str, list] = {"mojibake": [], "html_entities": [], "control_chars": [], "bad_words": []}
    for i in range(MOJIBAKE_DOCS):
        doc, original = _pick(prose_docs, rng), plants.ACCENTED[i % len(plants.ACCENTED)]
        broken = plants.mojibake(original)
        doc.text = plants.insert_sentence(doc.text, broken, rng)
        out["mojibake"].append({"doc": doc, "broken": broken, "original": original})
    for i in range(HTML_DOCS):
        doc, escaped = _pick(prose_docs, rng), plants.HTML[i % len(plants.HTML)]
        doc.text = plants.insert_sentence(doc.text, escaped, rng)
        out["html_entities"].append({"doc": doc, "escaped": escaped, "unescaped": html.unescape(escaped)})
    for i in range(CONTROL_DOCS):
        doc, chars = _pick(prose_docs, rng), ["\x00", "\x07", "\x1b"][: i + 1]
        doc.text = plants.insert_sentence(doc.text, f"The log line ended{''.join(chars)} without warning.", rng)
        out["control_chars"].append({"doc": doc, "chars": chars})
    for i in range(BAD_WORD_DOCS):
        doc, word = _pick(prose_docs, rng), plants.BAD_WORDS[i % len(plants.BAD_WORDS)]
        sentence = rng.choice(plants.BAD_WORD_SENTENCES).format(n=rng.choice(W.TOPICS["cooking"]), w=word)
        doc.text = plants.insert_sentence(doc.text, sentence, rng)
        out["bad_words"].append({"doc": doc, "word": word})
    return out


def _exact_clusters(rng: random.Random) -> tuple[list[Doc], list[list[dict]]]:
    docs, clusters = [], []
    for c in range(EXACT_CLUSTERS):
        text = prose.web_page(rng)[0]
        members = []
        for j in range(2 + c % 2):  # sizes fixed by position, so per-source counts are too
            variant = "original" if j == 0 else rng.choice(["identical", "whitespace", "case"])
            body = {"original": text, "identical": text, "case": text.lower(),
                    "whitespace": plants.whitespace_variant(text)}[variant]
            source = DUP_SOURCES[(c + j) % len(DUP_SOURCES)]  # members in different sources
            doc = Doc(source, body, _meta(source, rng), planted=True)
            docs.append(doc)
            members.append({"doc": doc, "variant": variant})
        clusters.append(members)
    return docs, clusters


def _near_clusters(rng: random.Random) -> tuple[list[Doc], list[list[dict]]]:
    docs, clusters = [], []
    for c in range(NEAR_CLUSTERS):
        text = prose.long_article(rng, min_words=rng.randint(400, 700))
        source = DUP_SOURCES[c % len(DUP_SOURCES)]
        first = Doc(source, text, _meta(source, rng), planted=True)
        members = [{"doc": first, "edits": 0, "jaccard": 1.0}]
        for m in range(1 + c % 2):
            copy, k, j = plants.near_copy(text, rng)
            source = DUP_SOURCES[(c + m + 1) % len(DUP_SOURCES)]
            members.append({"doc": Doc(source, copy, _meta(source, rng), planted=True), "edits": k, "jaccard": j})
        docs += [m["doc"] for m in members]
        clusters.append(members)
    return docs, clusters


def _code_clusters(rng: random.Random, used: set[str]) -> tuple[list[Doc], list[list[dict]], list[list[dict]]]:
    docs, exact, near = [], [], []
    for _ in range(CODE_CLUSTERS):
        a = _code_doc(rng, used, min_lines=80)
        a.planted = True
        name = a.path.rsplit("/", 1)[1]
        repo = rng.choice([r for r in REPOS if r != a.meta["repo"]])
        b = Doc("code", a.text, {"repo": repo}, path=f"code/{repo}/vendor/{name}", planted=True)
        used.add(b.path)
        docs += [a, b]
        exact.append([{"doc": a, "variant": "original"}, {"doc": b, "variant": "identical"}])
    for _ in range(CODE_CLUSTERS):
        a = _code_doc(rng, used, min_lines=80)
        a.planted = True
        copy, k, j = plants.near_copy(a.text, rng, code=True)
        stem, ext = a.path.rsplit(".", 1)
        b = Doc("code", copy, dict(a.meta), path=f"{stem}_old.{ext}", planted=True)
        used.add(b.path)
        docs += [a, b]
        near.append([{"doc": a, "edits": 0, "jaccard": 1.0}, {"doc": b, "edits": k, "jaccard": j}])
    return docs, exact, near


def _junk_docs(rng: random.Random) -> tuple[list[Doc], list[dict]]:
    docs, found = [], []
    for kind in plants.JUNK_KINDS:
        for i in range(JUNK_PER_KIND):
            source = ("web", "forum")[i % 2]
            doc = Doc(source, plants.junk(rng, kind), _meta(source, rng), planted=True)
            docs.append(doc)
            found.append({"doc": doc, "kind": kind, "rule": plants.JUNK_RULES[kind]})
    doc = Doc("web", " \n\t ", _meta("web", rng), planted=True)  # whitespace only
    return docs + [doc], found + [{"doc": doc, "kind": "empty", "rule": "empty"}]


# ---------------------------------------------------------------- writing files

# Bad rows: (source, file index, 1-based line, kind, id or None, raw bytes of the line).
# A file shorter than the line number gets the row at its end.
# ---------------------------------------------------------------- entry points

def write_sample(out_dir: str | Path, seed: int = 0, n_docs: int | None = None) -> dict:
    """Write the corpus under out_dir and return the planted ground truth (also in planted.json)."""
    n_docs = DEFAULT_N_DOCS if n_docs is None else n_docs
    if n_docs < MIN_N_DOCS:
        raise UserError(f"--n-docs: must be at least {MIN_N_DOCS} (the planted documents alone need that many), got {n_docs}")
    target = check_out_dir(out_dir)
    with safe_output.staged_folder(target) as staging:
        truth = _write_corpus(staging, seed, n_docs)
        check_out_dir(out_dir)  # again: files may have appeared in it meanwhile
    return truth


def _write_corpus(out: Path, seed: int, n_docs: int) -> dict:
    for s in SOURCES:
        (out / s).mkdir()
    used_paths: set[str] = set()
    exact_docs, exact = _exact_clusters(_rng(seed, "exact"))
    near_docs, near = _near_clusters(_rng(seed, "near"))
    code_dup_docs, code_exact, code_near = _code_clusters(_rng(seed, "code-dups"), used_paths)
    junk_docs, junk = _junk_docs(_rng(seed, "junk"))
    added = exact_docs + near_docs + code_dup_docs + junk_docs

    counts = _base_counts(n_docs - len(added))
    by_source = {s: _prose_docs(s, counts[s], _rng(seed, s)) for s in ("web", "news", "forum")}
    by_source["books"] = _book_docs(counts["books"], _rng(seed, "books"))
    by_source["code"] = _code_docs(counts["code"], _rng(seed, "code"), used_paths)
    base_prose = [d for s in PROSE_SOURCES for d in by_source[s]]

    rng = _rng(seed, "plant")
    found_pii = _plant_pii(base_prose, by_source["code"], rng)
    fixes = _plant_text_fixes(base_prose, rng)
    for d in added:
        by_source[d.source].append(d)
    for s in ("web", "news", "forum", "code"):  # spread planted documents over the files
        _rng(seed, f"shuffle-{s}").shuffle(by_source[s])

    sources, bad_rows, binary = files.write_sources(out, by_source, _rng(seed, "binary"))
    assert sum(v["documents"] for v in sources.values()) == n_docs

    truth = {
        "version": 1,
        "seed": seed,
        "n_docs": n_docs,
        "doc_key": "id if the row has one; else PATH:LINE (JSONL, 1-based line of the decompressed file) or PATH (text file), relative to the sample dir",
        "shingles": {"n": 5, "tokens": "lowercase \\w+ words"},
        "sources": sources,
        "pii": [_ref(x) for x in found_pii],
        "exact_duplicates": [_cluster(i, c) for i, c in enumerate(exact + code_exact)],
        "near_duplicates": [_cluster(i, c) for i, c in enumerate(near + code_near)],
        "mojibake": [_ref(x) for x in fixes["mojibake"]],
        "html_entities": [_ref(x) for x in fixes["html_entities"]],
        "control_chars": [_ref(x) for x in fixes["control_chars"]],
        "junk": [_ref(x) for x in junk],
        "bad_words": {"words": list(plants.BAD_WORDS), "docs": [_ref(x) for x in fixes["bad_words"]]},
        "bad_rows": bad_rows,
        "bad_files": [{"path": "web/part-00003.jsonl", "kind": "empty_file"}, binary],
    }
    (out / "planted.json").write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return truth


def input_paths(out_dir: str | Path) -> list[Path]:
    """The pipeline inputs of a sample: one directory per source."""
    return [Path(out_dir) / s for s in SOURCES]


def _base_counts(total: int) -> dict[str, int]:
    counts = {s: round(total * share) for s, share in SHARE.items()}
    counts["web"] = total - sum(counts.values())
    return counts


def _ref(item: dict) -> dict:
    doc = item["doc"]
    return {"doc": doc.key, "source": doc.source, **{k: v for k, v in item.items() if k != "doc"}}


def _cluster(i: int, members: list[dict]) -> dict:
    return {"cluster": i, "docs": [_ref(m) for m in members]}


def check_out_dir(out_dir: str | Path) -> Path:
    """OUT_DIR resolved, when it is new, empty, or an earlier sample and nothing else (see safe_output)."""
    return safe_output.check_output_folder(out_dir, "OUT_DIR", "sample", is_sample)


def is_sample(folder: Path) -> bool:
    """Whether ``folder`` holds exactly the files of the sample its planted.json describes."""
    try:
        truth = json.loads((folder / "planted.json").read_text(encoding="utf-8"))
        files = {"planted.json"} | {f for s in truth["sources"].values() for f in s["files"]}
        files |= {b["path"] for b in truth["bad_files"]}
        folders = {str(parent) for f in files for parent in Path(f).parents if str(parent) != "."}
        found = {str(p.relative_to(folder)): p.is_dir() for p in folder.rglob("*")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return all((name in folders) if is_dir else (name in files) for name, is_dir in found.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory to write (new, empty, or an earlier sample)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical bytes (default 0)")
    parser.add_argument("--n-docs", type=int, metavar="N", default=DEFAULT_N_DOCS,
                        help=f"number of documents, planted ones included (default {DEFAULT_N_DOCS}, minimum {MIN_N_DOCS})")


def main(args: argparse.Namespace) -> int:
    truth = write_sample(args.out_dir, seed=args.seed, n_docs=args.n_docs)
    total_bytes = sum(p.stat().st_size for p in Path(args.out_dir).rglob("*") if p.is_file())
    print(f"wrote {truth['n_docs']} documents ({total_bytes / 1e6:.1f} MB on disk) to {args.out_dir}")
    for name, s in truth["sources"].items():
        print(f"  {name:<6} {s['documents']:>5} docs  {len(s['files']):>4} files  ({s['format']})")
    print(f"  planted: {len(truth['pii'])} PII values, {len(truth['exact_duplicates'])} exact and "
          f"{len(truth['near_duplicates'])} near duplicate clusters, {len(truth['junk'])} junk docs, "
          f"{len(truth['bad_rows'])} bad rows; ground truth in {Path(args.out_dir) / 'planted.json'}")
    print("  inputs: " + " ".join(f"--input {p}" for p in input_paths(args.out_dir)))
    return 0
