"""Big plain JSONL files are read by many tasks, with the ids of a one-task read."""

from __future__ import annotations

import random
import zlib

import pytest

from tokenmill.etl import ranges
from tokenmill.config.etl import EtlConfig
from tokenmill.etl.ingest import FileTask, read_files, read_task, split_task

CFG = EtlConfig()
MAX, UTF8 = CFG.ingest.max_doc_bytes, CFG.ingest.invalid_utf8


def _task(path, **kw) -> FileTask:
    return FileTask(str(path), path.name, "jsonl", "src", "text", "id", None, **kw)


def _write_lines(path, lines: list[bytes], trailing_newline=True) -> None:
    path.write_bytes(b"\n".join(lines) + (b"\n" if trailing_newline else b""))


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_ranges_cut_at_line_ends_and_know_their_first_line(tmp_path, trailing_newline):
    lines = [b'{"text": "%s"}' % (b"x" * n) for n in (1, 30, 0, 5, 70, 2)] + [b"", b'{"text": "end"}']
    path = tmp_path / "a.jsonl"
    _write_lines(path, lines, trailing_newline)
    data = path.read_bytes()
    cuts = ranges.line_ranges(str(path), target=20)
    assert cuts[0][0] == 0 and cuts[-1][1] == len(data)
    for (start, end, line), (next_start, _, next_line) in zip(cuts, cuts[1:]):
        assert end == next_start and data[end - 1:end] == b"\n"  # contiguous, each cut after a newline
        assert next_line == line + data[start:end].count(b"\n")
    assert [line for _, _, line in cuts] == [1 + data[:s].count(b"\n") for s, _, _ in cuts]


def test_any_split_gives_the_rows_of_a_whole_file_read(tmp_path):
    rng = random.Random(1)
    lines = []
    for i in range(300):
        kind = rng.random()
        if kind < 0.1:
            lines.append(b'{"text": "cut off')  # malformed: a reject whose id comes from its line
        elif kind < 0.15:
            lines.append(b"")
        elif kind < 0.5:
            lines.append(b'{"id": "d%d", "text": "with id %d"}' % (i, i))
        else:
            lines.append(b'{"text": "%s"}' % (b"w " * rng.randint(0, 40)))  # an id from file:line
    path = tmp_path / "mixed.jsonl"
    _write_lines(path, lines)
    whole = list(read_task(_task(path), MAX, UTF8))
    for target in (1, 64, 1000, 5000):
        pieces = split_task(_task(path), target)
        assert len(pieces) > 1
        split = [row for piece in pieces for row in read_task(piece, MAX, UTF8)]
        assert split == whole, f"target {target}"


def test_compressed_and_small_files_are_not_split(tmp_path):
    small = tmp_path / "s.jsonl"
    _write_lines(small, [b'{"text": "a"}'] * 10)
    assert split_task(_task(small), 1 << 20) == [_task(small)]
    gz = tmp_path / "s.jsonl.gz"
    gz.write_bytes(zlib.compress(b"x"))
    assert split_task(_task(gz), 1) == [_task(gz)]


def test_a_60mb_file_is_read_by_several_tasks_with_one_task_ids(spark, tmp_path):
    from pyspark.sql import functions as F

    path = tmp_path / "big.jsonl"
    rng = random.Random(7)
    words = [w.encode() for w in "river stone light spark shard token data mill over under".split()]
    bodies = [b" ".join(rng.choice(words) for _ in range(180)) for _ in range(500)]
    with open(path, "wb") as f:  # every third line has an id; the others get one from their line number
        for i in range(62_000):
            body = bodies[i % 500]
            f.write(b'{"id": "k%d", "text": "%s"}\n' % (i, body) if i % 3 == 0 else b'{"text": "%s"}\n' % body)
    assert path.stat().st_size > 60_000_000
    whole = list(read_task(_task(path), MAX, UTF8))
    expected_ids = sorted(r[0] for r in whole)
    expected_crc = sum(zlib.crc32(r[2].encode()) for r in whole)

    df = read_files(spark, [_task(path)], CFG)
    got = df.withColumn("task", F.spark_partition_id()).groupBy().agg(
        F.count("*").alias("n"), F.countDistinct("task").alias("tasks"),
                           F.sum(F.crc32(F.col("text"))).alias("crc"), F.sort_array(F.collect_list("id")).alias("ids"))
    row = got.first()
    assert row["tasks"] > 1, "a big plain JSONL must be read by more than one task"
    assert row["n"] == len(whole) and row["crc"] == expected_crc
    assert row["ids"] == expected_ids
