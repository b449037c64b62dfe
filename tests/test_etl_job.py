"""The etl stage end to end on the bundled sample corpus (small size)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from deltalake import DeltaTable

from tokenmill import cli
from tokenmill.sample import write_sample

SOURCES = ("web", "news", "forum", "books", "code")
ENTITIES = "[EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IP_ADDRESS, IBAN_CODE, US_SSN, CRYPTO, URL]"


def _args(sample: Path, out: Path) -> list[str]:
    args = ["etl", "--output", str(out), "--set", f"etl.pii.entities={ENTITIES}"]
    for s in SOURCES:
        args += ["--input", str(sample / s)]
    return args


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("etl_sample")
    truth = write_sample(root / "sample", seed=0, n_docs=400)
    out = root / "out"
    assert cli.main(_args(root / "sample", out)) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    tables = {name: DeltaTable(str(out / "tables" / name)) for name in ("documents", "clean", "rejects")}
    rows = {name: t.to_pyarrow_table().to_pylist() for name, t in tables.items()}
    # planted.json names a document by id, or PATH:LINE / PATH where the input had no id
    keys = {}
    for d in rows["documents"]:
        meta = json.loads(d["meta"])
        if d["source"] == "code":
            keys[d["id"]] = meta["file"]
        elif truth["sources"][d["source"]]["ids"]:
            keys[d["id"]] = d["id"]
        else:
            keys[d["id"]] = f"{meta['file']}:{meta['line']}"
    return dict(root=root, out=out, truth=truth, manifest=manifest, tables=tables, rows=rows, keys=keys)


def test_counts_balance(run):
    rec = run["manifest"]["stages"]["etl"]
    truth = run["truth"]
    n_raw = truth["n_docs"] + len(truth["bad_rows"]) + 1  # + the binary file
    assert rec["rows_in"] == n_raw
    assert rec["rows_out"] + sum(rec["dropped"].values()) == rec["rows_in"]
    ingest = rec["extra"]["ingest"]
    expected = Counter(b["kind"] for b in truth["bad_rows"]) + Counter(binary_file=1)
    assert ingest["dropped"] == dict(expected)
    assert ingest["rows_out"] == truth["n_docs"] == len(run["rows"]["documents"])
    assert rec["rows_out"] == len(run["rows"]["clean"])
    assert len(run["rows"]["rejects"]) == sum(rec["dropped"].values())
    assert Counter(r["reason"] for r in run["rows"]["rejects"]) == Counter(rec["dropped"])
    assert rec["extra"]["pii"] and set(rec["extra"]["pii"]) <= set(ENTITIES.strip("[]").split(", "))
    # the code files (.py, .js) take the code rules; every other document (a .txt among them) the prose rules
    files = [json.loads(d["meta"]).get("file", "") for d in run["rows"]["documents"]]
    by_source = Counter("code" if f.endswith((".py", ".js")) else "prose" for f in files)
    assert rec["extra"]["presets"] == dict(sorted(by_source.items()))


def test_delta_tables_history_and_row_counts(run):
    rec = run["manifest"]["stages"]["etl"]
    for name, table in run["tables"].items():
        assert table.version() == 0
        assert len(table.history()) == 1
    assert run["tables"]["clean"].to_pyarrow_table().num_rows == rec["rows_out"]
    assert rec["outputs"] == {"documents": "delta:v0", "clean": "delta:v0", "rejects": "delta:v0"}
    schema = run["tables"]["clean"].schema().to_arrow()
    assert schema.names == ["id", "source", "text", "meta", "n_chars", "n_words", "quality"]
    assert all(0.0 <= r["quality"] <= 1.0 for r in run["rows"]["clean"])


def test_every_planted_pii_value_is_gone(run):
    clean_text = "\n".join(r["text"] for r in run["rows"]["clean"])
    samples = "\n".join(r["sample"] or "" for r in run["rows"]["rejects"])
    planted = run["truth"]["pii"]
    assert planted
    left = [p["value"] for p in planted if p["value"] in clean_text or p["value"] in samples]
    assert left == []
    kept = {run["keys"][r["id"]] for r in run["rows"]["clean"]}
    assert any(p["doc"] in kept for p in planted)


def test_text_fixes_landed(run):
    truth = run["truth"]
    by_key = {run["keys"][r["id"]]: r["text"] for r in run["rows"]["clean"]}
    for item in truth["mojibake"]:
        assert item["original"] in by_key[item["doc"]] and item["broken"] not in by_key[item["doc"]]
    for item in truth["html_entities"]:
        assert item["unescaped"] in by_key[item["doc"]]
    for item in truth["control_chars"]:
        assert not any(c in by_key[item["doc"]] for c in item["chars"])


def test_junk_and_bad_words_are_dropped_with_reasons(run):
    truth = run["truth"]
    reason = {run["keys"][r["id"]]: r["reason"] for r in run["rows"]["rejects"] if r["id"] in run["keys"]}
    junk = Counter((j["kind"], reason.get(j["doc"])) for j in truth["junk"])
    assert junk == Counter({
        ("symbols", "gopher_symbol_ratio"): 4, ("lorem", "gopher_stop_words"): 4, ("short", "too_short"): 4,
        ("bullets", "gopher_bullet_lines"): 4, ("boilerplate", "gopher_dup_lines"): 4,
        ("ellipsis", "gopher_ellipsis_lines"): 4, ("empty", "empty"): 1})
    assert {reason.get(d["doc"]) for d in truth["bad_words"]["docs"]} == {"bad_words"}


def test_rerun_is_skipped(run, capsys):
    assert cli.main(_args(run["root"] / "sample", run["out"])) == 0
    assert "up to date" in capsys.readouterr().err
    assert DeltaTable(str(run["out"] / "tables" / "clean")).version() == 0
