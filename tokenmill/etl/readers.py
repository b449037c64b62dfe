"""What runs in Spark's Python workers during ingest: read one file task into raw rows.

``ingest`` (on the driver) lists the inputs and plans ``FileTask``s; the
functions here open a task's file or byte range and give one raw row per
line (JSONL) or per file (text), each a document or a reject with a
``reason``. They are module-level, so workers import them by reference.

A raw row is a tuple in ``RAW_COLUMNS`` order: id, source, text, meta,
n_chars, reason, sample. ``read_files_udf`` turns groups of tasks into
Arrow batches of such rows for ``mapInArrow``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from dataclasses import dataclass
from typing import Iterator

from tokenmill.etl import ranges

RAW_SCHEMA = ("id string, source string, text string, meta string, n_chars int, "
              "reason string, sample string")
RAW_COLUMNS = ["id", "source", "text", "meta", "n_chars", "reason", "sample"]
BATCH_ROWS = 512
BATCH_BYTES = 16 << 20
SAMPLE_BYTES = 1024


@dataclass(frozen=True)
class FileTask:
    """One file to read: absolute path, the location recorded in meta, how to read it."""

    path: str
    rel: str
    fmt: str  # "jsonl" or "text"
    source: str
    text_field: str
    id_field: str | None
    preset: str | None
    start: int = 0  # byte range [start, end) of the file; end None: to its end
    end: int | None = None
    first_line: int = 1  # number of the range's first line in the whole file

    def size(self) -> int:
        return (self.end if self.end is not None else os.path.getsize(self.path)) - self.start
    whole_row: bool = False  # text = the whole JSON row (chat / instruction records)



def stable_id(location: str, text: str) -> str:
    """An id from where the document was and what it says: same input, same id."""
    h = hashlib.blake2b(digest_size=10)
    h.update(location.encode("utf-8", "surrogatepass"))
    h.update(b"\0")
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _open(path: str) -> io.BufferedIOBase:
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".zst"):
        import zstandard

        raw = open(path, "rb")
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True), 1 << 20)
    return open(path, "rb", buffering=1 << 20)


def _open_range(task: FileTask) -> io.BufferedIOBase:
    if task.start == 0 and task.end is None:
        return _open(task.path)
    return ranges.open_range(task.path, task.start, task.size())


def _lines(stream, limit: int, first: int = 1) -> Iterator[tuple[int, bytes, bool]]:
    """(1-based line number, bytes, too_long). A too-long line yields only its head."""
    n = first - 1
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        n += 1
        if len(line) > limit and not line.endswith(b"\n"):
            head = line[:SAMPLE_BYTES]
            while line and not line.endswith(b"\n"):  # skip the rest in bounded chunks
                line = stream.readline(1 << 20)
            yield n, head, True
            continue
        yield n, line.rstrip(b"\r\n"), False


def _sample(data: bytes) -> str:
    return data[:SAMPLE_BYTES].decode("utf-8", "replace")


def _meta(obj: dict, task: FileTask, line: int | None) -> str:
    meta: dict = {}
    others = {k: v for k, v in obj.items() if k not in (task.text_field, task.id_field)}
    nested = others.pop("meta", None)
    if isinstance(nested, dict):
        meta.update(nested)
    elif nested is not None:
        meta["meta"] = nested
    meta.update(others)
    meta["file"] = task.rel
    if line is not None:
        meta["line"] = line
    if task.preset:
        meta["preset"] = task.preset
    return json.dumps(meta, ensure_ascii=False, sort_keys=True)


def _reject(task: FileTask, location: str, reason: str, data: bytes, doc_id=None) -> tuple:
    rid = str(doc_id) if doc_id is not None else stable_id(location, _sample(data))
    return (rid, task.source, None, None, None, reason, _sample(data))


def read_jsonl(task: FileTask, max_bytes: int, invalid_utf8: str) -> Iterator[tuple]:
    """One raw row per non-blank line."""
    with _open_range(task) as stream:
        for n, raw, too_long in _lines(stream, max_bytes, task.first_line):
            location = f"{task.rel}:{n}"
            if too_long:
                yield _reject(task, location, "too_long", raw)
                continue
            if not raw.strip():
                continue
            if b"\x00" in raw:
                yield _reject(task, location, "nul_bytes", raw, _peek_id(raw, task))
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                if invalid_utf8 == "reject":
                    yield _reject(task, location, "invalid_utf8", raw, _peek_id(raw, task))
                    continue
                line = raw.decode("utf-8", "replace")
            try:
                obj = json.loads(line)
            except ValueError:
                yield _reject(task, location, "malformed_json", raw)
                continue
            if not isinstance(obj, dict):
                yield _reject(task, location, "malformed_json", raw)
                continue
            doc_id = obj.get(task.id_field) if task.id_field else None
            if task.whole_row:
                doc_id = stable_id(location, line) if doc_id is None else doc_id
                yield (str(doc_id), task.source, line, _meta({}, task, n), len(line), None, None)
                continue
            if task.text_field not in obj:
                yield _reject(task, location, "missing_text", raw, doc_id)
                continue
            text = obj[task.text_field]
            if text is None:
                yield _reject(task, location, "null_text", raw, doc_id)
                continue
            if not isinstance(text, str):
                yield _reject(task, location, "text_not_string", raw, doc_id)
                continue
            if doc_id is None:
                doc_id = stable_id(location, text)
            yield (str(doc_id), task.source, text, _meta(obj, task, n), len(text), None, None)


def _peek_id(raw: bytes, task: FileTask):
    """The id of a row we cannot parse properly, when it is plainly there."""
    if not task.id_field:
        return None
    try:
        obj = json.loads(raw.replace(b"\x00", b"").decode("utf-8", "replace"))
        value = obj.get(task.id_field) if isinstance(obj, dict) else None
        return None if value is None else str(value)
    except ValueError:
        return None


def read_text_file(task: FileTask, max_bytes: int, invalid_utf8: str) -> Iterator[tuple]:
    """One document per file; binary files are rejected."""
    size = os.path.getsize(task.path)
    if task.whole_row:  # a record needs fields; a text file has none
        yield (stable_id(task.rel, ""), task.source, None, None, None, "not_a_record_file",
               f"{task.rel}: not JSONL, Parquet or a table")
        return
    with _open(task.path) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        yield _reject(task, task.rel, "too_long", data)
        return
    if _looks_binary(data):
        yield (stable_id(task.rel, ""), task.source, None, None, None, "binary_file",
               f"<{size} bytes of binary data>")
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if invalid_utf8 == "reject":
            yield _reject(task, task.rel, "invalid_utf8", data)
            return
        text = data.decode("utf-8", "replace")
    yield (stable_id(task.rel, text), task.source, text, _meta({}, task, None), len(text), None, None)


def _looks_binary(data: bytes) -> bool:
    head = data[:8192]
    if b"\x00" in head:
        return True
    bad = head.decode("utf-8", "replace").count("\ufffd")
    return bool(head) and bad > 0.3 * len(head) / 2


def read_task(task: FileTask, max_bytes: int, invalid_utf8: str) -> Iterator[tuple]:
    reader = read_jsonl if task.fmt == "jsonl" else read_text_file
    try:
        yield from reader(task, max_bytes, invalid_utf8)
    except _read_errors() as exc:
        # A truncated or corrupt .gz/.zst, or an unreadable file: one reject for the rest of the file.
        reason = "unreadable_file"
        yield (stable_id(task.rel, str(exc)), task.source, None, None, None, reason, f"{task.rel}: {exc}"[:SAMPLE_BYTES])


def _read_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged file raises: OS errors, truncation, zlib's and zstandard's own errors."""
    import zlib

    import zstandard

    return (OSError, EOFError, ValueError, zlib.error, zstandard.ZstdError)


def _rows_to_batch(rows: list[tuple]):
    import pyarrow as pa

    cols = list(zip(*rows))
    return pa.RecordBatch.from_arrays(
        [pa.array(cols[0], pa.string()), pa.array(cols[1], pa.string()), pa.array(cols[2], pa.string()),
         pa.array(cols[3], pa.string()), pa.array(cols[4], pa.int32()), pa.array(cols[5], pa.string()),
         pa.array(cols[6], pa.string())],
        names=RAW_COLUMNS,
    )


def read_files_udf(max_bytes: int, invalid_utf8: str):
    def run(batches):
        for batch in batches:
            for group in batch.column("files").to_pylist():
                for t in json.loads(group):
                    rows, size = [], 0
                    for row in read_task(FileTask(**t), max_bytes, invalid_utf8):
                        rows.append(row)
                        size += len(row[2] or "") + len(row[6] or "")
                        if len(rows) >= BATCH_ROWS or size >= BATCH_BYTES:
                            yield _rows_to_batch(rows)
                            rows, size = [], 0
                    if rows:
                        yield _rows_to_batch(rows)

    return run
