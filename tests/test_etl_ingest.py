"""Ingest: every input format, and every kind of bad input, row by row."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from tokenmill import cli
from tokenmill.errors import UserError
from tokenmill.config.etl import EtlConfig, IngestConfig, InputSpec
from tokenmill.etl.ingest import group_files, ingest, plan_input, source_label
from tokenmill.etl.readers import FileTask, read_task, stable_id

CFG = EtlConfig()
LINES = [
    b'{"id": "a", "text": "Alpha text.", "meta": {"lang": "en"}, "url": "u1"}',
    b"",  # blank lines are not rows
    b'{"id": "b", "text": "Cut off',
    b'{"id": "c", "text": "Caf\xe9 bad bytes"}',
    b'{"id": "d", "text": null}',
    b'{"id": "e", "meta": {}}',
    b'{"id": "f", "text": "NUL\x00inside"}',
    b"[1, 2, 3]",
    b'{"id": "g", "text": 42}',
    b'{"text": "No id here."}',
]


def _task(path: Path, fmt: str = "jsonl", rel: str | None = None, preset=None) -> FileTask:
    return FileTask(str(path), rel or path.name, fmt, "src", "text", "id", preset)


def _rows(task: FileTask, **kw) -> list[tuple]:
    ic = IngestConfig(**kw)
    return list(read_task(task, ic.max_doc_bytes, ic.invalid_utf8))


def test_jsonl_each_bad_line_gets_its_reason(tmp_path):
    path = tmp_path / "part.jsonl"
    path.write_bytes(b"\n".join(LINES) + b"\n")
    rows = _rows(_task(path))
    got = [(r[0], r[2], r[5]) for r in rows]
    no_id = stable_id("part.jsonl:10", "No id here.")
    assert got == [
        ("a", "Alpha text.", None),
        (stable_id("part.jsonl:3", '{"id": "b", "text": "Cut off'), None, "malformed_json"),
        ("c", None, "invalid_utf8"),
        ("d", None, "null_text"),
        ("e", None, "missing_text"),
        ("f", None, "nul_bytes"),
        (rows[6][0], None, "malformed_json"),
        ("g", None, "text_not_string"),
        (no_id, "No id here.", None),
    ]
    meta = json.loads(rows[0][3])
    assert meta == {"lang": "en", "url": "u1", "file": "part.jsonl", "line": 1}
    assert rows[0][4] == len("Alpha text.")
    assert rows[2][6] == "{\"id\": \"c\", \"text\": \"Caf\ufffd bad bytes\"}"  # sample shows the damage


def test_invalid_utf8_can_be_repaired_instead(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(LINES[3] + b"\n")
    rows = _rows(_task(path), invalid_utf8="replace")
    assert [(r[0], r[2], r[5]) for r in rows] == [("c", "Caf\ufffd bad bytes", None)]


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_compressed_jsonl(tmp_path, suffix):
    data = b'{"id": "x", "text": "one"}\n{"id": "y", "text": "two"}\n'
    path = tmp_path / f"p{suffix}"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else zstandard.ZstdCompressor().compress(data))
    assert [(r[0], r[2]) for r in _rows(_task(path))] == [("x", "one"), ("y", "two")]


def test_truncated_gzip_is_one_reject_not_a_crash(tmp_path):
    path = tmp_path / "p.jsonl.gz"
    data = gzip.compress(b"".join(b'{"id": "%d", "text": "n%d"}\n' % (i, i * 7919) for i in range(5000)))
    path.write_bytes(data[: len(data) // 2])
    rows = _rows(_task(path))
    assert rows[-1][5] == "unreadable_file"
    assert all(r[5] is None for r in rows[:-1])


def test_fifty_megabyte_document_is_rejected_as_too_long(tmp_path):
    big = "word " * 10_000_000  # 50 MB
    jsonl = tmp_path / "big.jsonl"
    with open(jsonl, "w") as f:
        f.write(json.dumps({"id": "big", "text": big}) + "\n")
        f.write(json.dumps({"id": "after", "text": "still read"}) + "\n")
    rows = _rows(_task(jsonl))
    assert [(r[0] if r[5] is None else "?", r[5]) for r in rows] == [("?", "too_long"), ("after", None)]
    assert len(rows[0][6]) <= 1024
    text = tmp_path / "big.txt"
    text.write_text(big)
    rows = _rows(_task(text, "text"))
    assert [r[5] for r in rows] == ["too_long"]


def test_text_files_binary_and_empty(tmp_path):
    (tmp_path / "a.txt").write_text("Some prose.\n")
    (tmp_path / "b.bin.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    (tmp_path / "c.txt").write_bytes(b"")
    got = [_rows(_task(tmp_path / n, "text"))[0] for n in ("a.txt", "b.bin.txt", "c.txt")]
    assert [(r[2], r[5]) for r in got] == [("Some prose.\n", None), (None, "binary_file"), ("", None)]


def test_plan_input_formats_presets_and_labels(tmp_path):
    root = tmp_path / "corpus"
    (root / "src").mkdir(parents=True)
    (root / "a.jsonl.zst").write_bytes(b"")
    (root / "b.parquet").write_bytes(b"")
    (root / "src" / "m.py").write_text("x = 1\n")
    (root / "notes.md").write_text("hi")
    (root / ".hidden").write_text("skip me")
    tasks, parquet, kind = plan_input(InputSpec(path=str(root)), CFG)
    assert kind == ""
    assert [(t.rel, t.fmt, t.preset, t.source) for t in tasks] == [
        ("corpus/a.jsonl.zst", "jsonl", None, "corpus"),
        ("corpus/notes.md", "text", None, "corpus"),
        ("corpus/src/m.py", "text", "code", "corpus"),
    ]
    assert [Path(p).name for p in parquet] == ["b.parquet"]
    assert source_label(InputSpec(path=str(root / "a.jsonl.zst"))) == "corpus"
    assert source_label(InputSpec(path=str(root), source="web")) == "web"


def test_missing_input_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="input not found"):
        plan_input(InputSpec(path=str(tmp_path / "nope")), CFG)


def test_group_files_balances_bytes(tmp_path):
    tasks = []
    for i, size in enumerate([900, 500, 400, 100, 10]):
        p = tmp_path / f"f{i}.txt"
        p.write_bytes(b"x" * size * 1000)
        tasks.append(_task(p, "text"))
    groups = group_files(tasks, target_bytes=1_000_000, min_groups=2)
    assert sorted(sorted(Path(t.path).name for t in g) for g in groups) == [
        ["f0.txt", "f3.txt"], ["f1.txt", "f2.txt", "f4.txt"]]


def test_read_tasks_come_in_multiples_of_the_parallelism():
    from tokenmill.etl import ranges

    mb = 1 << 20
    assert ranges.task_count(300 * mb, 4, 64 * mb) == 8  # not 5: a fifth task would leave three cores idle
    assert ranges.task_count(1, 4, 64 * mb) == 4
    assert ranges.task_count(256 * mb, 4, 64 * mb) == 4 and ranges.task_count(257 * mb, 4, 64 * mb) == 8
    for total in (1, 10 * mb, 300 * mb, 10_000 * mb):
        n = ranges.task_count(total, 3, 64 * mb)
        assert n % 3 == 0 and -(-total // n) <= 64 * mb
    assert ranges.split_bytes(300 * mb, 4, 64 * mb) == 300 * mb // 8


def test_ingest_all_formats_with_spark(spark, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl").write_bytes(b'{"id": "j1", "text": "From JSONL."}\n{"broken\n')
    (d / "b.jsonl.gz").write_bytes(gzip.compress(b'{"id": "g1", "text": "From gzip."}\n'))
    (d / "empty.jsonl").write_bytes(b"")
    (d / "t.txt").write_text("From a text file.")
    pq.write_table(pa.table({"id": ["p1", None], "text": ["From Parquet.", "No id."],
                             "meta": [{"k": "v"}, {"k": "w"}]}), d / "c.parquet")
    delta = tmp_path / "dl"
    from tokenmill import tables

    tables.write(spark.createDataFrame([("d1", "From Delta.", 3)], "id string, body string, n int"), str(delta))
    specs = (InputSpec(path=str(d), source="mixed"),
             InputSpec(path=str(delta), text_field="body"))
    rows = sorted(ingest(spark, specs, CFG).collect(), key=lambda r: (r.reason or "", r.text or ""))
    got = [(r.source, r.id if r.id in ("d1", "j1", "p1", "g1") else "derived", r.text, r.reason) for r in rows]
    assert got == [
        ("dl", "d1", "From Delta.", None),
        ("mixed", "j1", "From JSONL.", None),
        ("mixed", "p1", "From Parquet.", None),
        ("mixed", "derived", "From a text file.", None),
        ("mixed", "g1", "From gzip.", None),
        ("mixed", "derived", "No id.", None),
        ("mixed", "derived", None, "malformed_json"),
    ]
    by_text = {r.text: r for r in rows}
    assert json.loads(by_text["From Parquet."].meta) == {"k": "v"}
    assert json.loads(by_text["From Delta."].meta) == {"n": 3}
    # the derived id is stable: same content, same place, same id
    again = {r.text: r.id for r in ingest(spark, specs, CFG).collect()}
    assert again["No id."] == by_text["No id."].id and again["From a text file."] == by_text["From a text file."].id


def test_cli_missing_input_and_unwritable_output_exit_2(spark, tmp_path, capsys):
    rc = cli.main(["etl", "--input", str(tmp_path / "missing"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "input not found" in err
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    rc = cli.main(["etl", "--input", str(tmp_path / "in.jsonl"), "--output", str(blocker / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "cannot create output folder" in err


def test_empty_inputs_give_no_rows(spark, tmp_path):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "one_empty").mkdir()
    (tmp_path / "one_empty" / "a.jsonl").write_bytes(b"")
    specs = (InputSpec(path=str(tmp_path / "empty_dir")), InputSpec(path=str(tmp_path / "one_empty")))
    df = ingest(spark, specs, CFG)
    assert df.columns == ["id", "source", "text", "meta", "n_chars", "reason", "sample"]
    assert df.count() == 0


@pytest.mark.parametrize("suffix", [".jsonl.zst", ".jsonl.gz"])
def test_corrupt_compressed_file_is_one_reject(tmp_path, suffix):
    data = b"".join(b'{"id": "%d", "text": "n%d"}\n' % (i, i) for i in range(2000))
    if suffix.endswith(".zst"):  # a damaged frame header
        packed, start, end = zstandard.ZstdCompressor().compress(data), 4, 12
    else:  # damaged deflate data
        packed = gzip.compress(data)
        start, end = len(packed) // 2, len(packed) // 2 + 64
    path = tmp_path / f"p{suffix}"
    path.write_bytes(packed[:start] + bytes(b ^ 0xFF for b in packed[start:end]) + packed[end:])
    rows = _rows(_task(path))
    assert rows[-1][5] == "unreadable_file" and rows[-1][6].startswith(f"p{suffix}: ")
    assert all(r[5] is None for r in rows[:-1])


def test_parquet_rows_without_ids_get_unique_stable_ids(spark, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    pq.write_table(pa.table({"text": ["Same words.", "Same words.", "Other words."]}), d / "a.parquet")
    pq.write_table(pa.table({"text": ["Same words."]}), d / "b.parquet")
    specs = (InputSpec(path=str(d)),)
    first = sorted((r.id, r.text) for r in ingest(spark, specs, CFG).collect())
    assert len({i for i, _ in first}) == 4  # one id per row, even for equal texts
    # Stable: a rerun, and a rerun that splits the files into other partitions, give the same ids.
    assert sorted((r.id, r.text) for r in ingest(spark, specs, CFG).collect()) == first
    spark.conf.set("spark.sql.files.maxPartitionBytes", "64")
    try:
        again = sorted((r.id, r.text) for r in ingest(spark, specs, CFG).repartition(3).collect())
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert again == first


def test_delta_rows_without_ids_get_unique_ids(spark, tmp_path):
    from tokenmill import tables

    delta = tmp_path / "dl"
    tables.write(spark.createDataFrame([("Twice.",), ("Twice.",)], "text string"), str(delta))
    ids = [r.id for r in ingest(spark, (InputSpec(path=str(delta)),), CFG).collect()]
    assert len(ids) == 2 and len(set(ids)) == 2


def test_corrupt_parquet_is_one_reject(spark, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    pq.write_table(pa.table({"id": ["ok"], "text": ["Readable."]}), d / "good.parquet")
    (d / "bad.parquet").write_bytes(b"PAR1 this is not a parquet file at all")
    rows = sorted(ingest(spark, (InputSpec(path=str(d)),), CFG).collect(), key=lambda r: r.reason or "")
    assert [(r.text, r.reason) for r in rows] == [("Readable.", None), (None, "unreadable_file")]
    assert rows[1].sample.startswith("in/bad.parquet: ")


def test_parquet_without_a_string_text_column_is_a_user_error(spark, tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "no_text.parquet")
    with pytest.raises(UserError, match=r"no column 'text'.*set text_field"):
        ingest(spark, (InputSpec(path=str(tmp_path / "no_text.parquet")),), CFG)
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    with pytest.raises(UserError, match=r"column 'text' holds bigint, not text"):
        ingest(spark, (InputSpec(path=str(tmp_path / "ints.parquet")),), CFG)
