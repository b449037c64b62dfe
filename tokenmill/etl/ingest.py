"""Ingest raw inputs into one schema: id, source, text, meta, n_chars (+ reason, sample).

File inputs (JSONL plain/.gz/.zst, text files) are read by Python tasks, so
every line gets its own verdict: a malformed, non-UTF-8, NUL-bearing or
oversized line becomes a row with a ``reason`` instead of failing the job.
(Spark's text reader has no zstd codec offline and gives no line numbers.)
Parquet, Delta and catalog tables are read by Spark.

Small files are packed several to a task. A plain (uncompressed) JSONL file
larger than a task's share is cut into byte ranges at line ends, one task
each; the driver counts the lines before each cut, so a line keeps its
number (and its derived id) whatever the split. Compressed files cannot be
entered midway and are read by one task each; a text file is one document.

A row whose ``reason`` is null is a document; any other row is a reject
whose ``sample`` holds the first characters of what was read.

With ``whole_rows`` (chat and instruction runs) the ``text`` of each row is
the whole input row as a JSON object text, for ``tokenmill.chat.validate``
to judge: a JSONL line as read, a table row through ``to_json``. The same
file planning, ids and rejects apply; plain text files are rejected as
``not_a_record_file``.

Invalid UTF-8 is rejected by default (``etl.ingest.invalid_utf8: reject``):
a row that cannot be decoded is usually a mis-declared encoding, and
repairing it with U+FFFD would silently keep a damaged document. Set it to
``replace`` to keep such rows with replacement characters.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tokenmill import locations, tables
from tokenmill import spark as session
from tokenmill.errors import UserError
from tokenmill.etl import ranges
from tokenmill.etl.config import EtlConfig, InputSpec

RAW_SCHEMA = ("id string, source string, text string, meta string, n_chars int, "
              "reason string, sample string")
RAW_COLUMNS = ["id", "source", "text", "meta", "n_chars", "reason", "sample"]
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
COMPRESSED = (".gz", ".zst")
BATCH_ROWS = 512
BATCH_BYTES = 16 << 20
SAMPLE_BYTES = 1024
GROUP_BYTES = 64 << 20  # compressed bytes of files per Spark task


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


# --- planning: which files, which formats -------------------------------------------


def _input_path(spec: InputSpec) -> str:
    """The input as a path here: file:// stripped, dbfs:/ as its Databricks mount."""
    mounted = locations.fuse_path(spec.path)
    return str(mounted) if mounted is not None else locations.strip_file_scheme(spec.path)


def source_label(spec: InputSpec) -> str:
    if spec.source:
        return spec.source
    p = Path(_input_path(spec).rstrip("/"))
    if tables.is_catalog_name(spec.path) and not p.exists():
        return spec.path.split(".")[-1]
    return (p.parent.name if p.is_file() else p.name) or "input"


def _is_hidden(rel_parts: tuple[str, ...]) -> bool:
    return any(part.startswith((".", "_")) for part in rel_parts)


def file_format(name: str) -> str:
    """jsonl / parquet / text, from a file name."""
    base = name.lower()
    for suffix in COMPRESSED:
        base = base.removesuffix(suffix)
    if base.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if base.endswith(".parquet"):
        return "parquet"
    return "text"


def plan_input(spec: InputSpec, cfg: EtlConfig, whole_rows: bool = False) -> tuple[list[FileTask], list[str], str]:
    """(files read by Python tasks, Parquet files, table kind) for one input.

    table kind is "" for plain files, else "delta" or "table". A path that
    does not exist (and is not a catalog table) is a UserError.
    """
    raw = _input_path(spec)
    p = Path(raw)
    source = source_label(spec)
    fmt = spec.format
    if fmt == "table" or (fmt == "auto" and not p.exists() and tables.is_catalog_name(raw)):
        return [], [], "table"
    if locations.is_remote(raw):
        if fmt == "delta":
            return [], [], "delta"
        raise UserError(f"input {spec.path}: files are listed and read on this machine, so give a local, file:// "
                        "or /Volumes/... path (an object-store Delta table works with format: delta)")
    if not p.exists():
        raise UserError(f"input not found: {spec.path} (check the path, or give a catalog table as catalog.schema.table)")
    if fmt == "delta" or (fmt == "auto" and p.is_dir() and (p / "_delta_log").is_dir()):
        return [], [], "delta"
    if p.is_file():
        files = [p]
        root = p.parent
    else:
        root = p
        files = sorted(f for f in p.rglob("*") if f.is_file() and not _is_hidden(f.relative_to(p).parts))
    tasks, parquet = [], []
    code_ext = tuple(cfg.ingest.text_extensions_code)
    for f in files:
        kind = fmt if fmt != "auto" else file_format(f.name)
        rel = relative_location(root, f)
        if kind == "parquet":
            parquet.append(str(f.resolve()))
            continue
        preset = spec.preset
        if preset is None and kind == "text" and f.name.lower().endswith(code_ext):
            preset = "code"
        tasks.append(FileTask(str(f.resolve()), rel, kind, source, spec.text_field, spec.id_field, preset,
                              whole_row=whole_rows))
    return tasks, parquet, ""


def relative_location(root: Path, file: Path) -> str:
    """Where a file is recorded (meta, ids, rejects): its path from the input folder's parent."""
    return str(file.relative_to(root.parent)) if root.parent != root else file.name


def input_root(spec: InputSpec) -> Path:
    p = Path(_input_path(spec))
    return p.parent if p.is_file() else p


# --- reading files in Python tasks ----------------------------------------------------


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


def _read_files_udf(max_bytes: int, invalid_utf8: str):
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


def group_files(tasks: list[FileTask], target_bytes: int, min_groups: int) -> list[list[FileTask]]:
    """Files packed into groups of about target_bytes (largest first, each to the lightest group)."""
    sized = sorted(((t.size(), t) for t in tasks), key=lambda x: -x[0])
    total = sum(size for size, _ in sized)
    n = max(1, min(len(sized), max(min_groups, -(-total // target_bytes))))
    groups: list[list[FileTask]] = [[] for _ in range(n)]
    loads = [0] * n
    for size, t in sized:
        i = loads.index(min(loads))
        groups[i].append(t)
        loads[i] += max(size, 4096)  # a tiny file still costs an open
    return [g for g in groups if g]


def split_task(task: FileTask, target: int) -> list[FileTask]:
    """A plain JSONL file's task as byte ranges of about ``target`` bytes, cut at line ends."""
    if task.fmt != "jsonl" or task.path.lower().endswith(COMPRESSED) or task.size() <= target:
        return [task]
    return [dataclasses.replace(task, start=start, end=end, first_line=line)
            for start, end, line in ranges.line_ranges(task.path, target)]


def read_files(spark, tasks: list[FileTask], cfg: EtlConfig):
    """Raw rows of all file tasks, in equal groups of at most about GROUP_BYTES, as
    many as a multiple of the session's parallelism (``ranges.task_count``).

    The task list travels as a literal array indexed by a range of one row
    per partition: no RDD, so it runs on Spark Connect as on a classic driver.
    """
    from pyspark.sql import functions as F

    cores = session.parallelism(spark)
    total = sum(t.size() for t in tasks)
    target = ranges.split_bytes(total, cores, GROUP_BYTES)
    pieces = [piece for t in tasks for piece in split_task(t, target)]
    groups = group_files(pieces, target, ranges.task_count(total, cores, GROUP_BYTES))
    payload = F.array(*[F.lit(json.dumps([dataclasses.asdict(t) for t in g])) for g in groups])
    df = spark.range(0, len(groups), 1, len(groups)).select(
        F.element_at(payload, F.col("id").cast("int") + 1).alias("files"))
    return df.mapInArrow(_read_files_udf(cfg.ingest.max_doc_bytes, cfg.ingest.invalid_utf8), RAW_SCHEMA)


# --- tables (Parquet, Delta, catalog) --------------------------------------------------


def from_table(df, spec: InputSpec, cfg: EtlConfig, location: str, root: Path | None = None,
               whole_rows: bool = False):
    """Map a DataFrame input onto the raw schema: text/id fields, meta as JSON, rejects.

    A row without an id gets one from the input, the file it came from and its
    position in that file (``root``: the folder Parquet files are named from;
    None for tables, whose file names are unique), so equal texts get distinct
    ids that a rerun or another partitioning gives again.
    """
    from pyspark.sql import functions as F

    source = source_label(spec)
    if whole_rows:
        text = F.to_json(F.struct(*[F.col(c) for c in df.columns]))
        others = []
    else:
        check_text_column(df, spec)
        text = F.col(spec.text_field).cast("string")
        others = [c for c in df.columns if c not in (spec.text_field, spec.id_field)]
    if others == ["meta"]:
        meta_type = df.schema["meta"].dataType.simpleString()
        meta = F.col("meta") if meta_type == "string" else F.to_json(F.col("meta"))
    elif others:
        meta = F.to_json(F.struct(*[F.col(c) for c in others]))
    else:
        meta = F.lit("{}")
    meta = _with_preset(meta, spec.preset)
    df, position = _with_row_position(df, root, text, meta)
    derived = F.substring(F.sha2(F.concat_ws("\u0000", F.lit(location), position, text), 256), 1, 20)
    doc_id = F.coalesce(F.col(spec.id_field).cast("string"), derived) if spec.id_field in df.columns else derived
    reason = (F.when(text.isNull(), F.lit("null_text"))
              .when(F.octet_length(text) > cfg.ingest.max_doc_bytes, F.lit("too_long")))
    sample = F.when(reason.isNotNull(), F.coalesce(F.substring(text, 1, SAMPLE_BYTES), F.lit("")))
    return df.select(
        doc_id.alias("id"), F.lit(source).alias("source"),
        F.when(reason.isNull(), text).alias("text"),
        F.when(reason.isNull(), meta).alias("meta"),
        F.when(reason.isNull(), F.length(text)).cast("int").alias("n_chars"),
        reason.alias("reason"), sample.alias("sample"),
    )


def check_text_column(df, spec: InputSpec) -> None:
    """The text field exists and holds strings; anything else is a config mistake, said in one line."""
    if spec.text_field not in df.columns:
        raise UserError(f"input {spec.path}: no column {spec.text_field!r} (columns: {', '.join(df.columns)}); "
                        f"set text_field for this input")
    kind = df.schema[spec.text_field].dataType.simpleString()
    if kind != "string" and not kind.startswith(("varchar", "char")):
        strings = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string"]
        raise UserError(f"input {spec.path}: column {spec.text_field!r} holds {kind}, not text; set text_field "
                        f"to a string column ({', '.join(strings) or 'there is none'})")


def _with_row_position(df, root: Path | None, text, meta):
    """(df, a string column naming each row's file and position in it).

    Parquet and Delta readers expose ``_metadata.file_path``/``row_index``.
    Where a source does not (a view), equal rows are numbered instead: rows
    with the same text and meta are interchangeable, so any order gives the
    same set of ids.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    try:
        located = df.withColumn("__file", F.col("_metadata.file_path")).withColumn("__row", F.col("_metadata.row_index"))
        located.schema  # analysed now, so a source without these columns fails here
    except Exception:
        numbered = df.withColumn("__row", F.row_number().over(Window.partitionBy(text).orderBy(meta)))
        return numbered, F.concat(F.lit("#"), F.col("__row").cast("string"))
    df = located
    path = F.regexp_replace(F.col("__file"), r"^file:/*", "/")
    if root is None:
        name = F.element_at(F.split(path, "/"), -1)
    else:
        prefix = "^\\Q" + str(root.resolve().parent).rstrip("/") + "/\\E"
        name = F.regexp_replace(path, prefix, "")
    return df, F.concat(name, F.lit(":"), F.col("__row").cast("string"))


def check_parquet_files(spec: InputSpec, paths: list[str]) -> tuple[list[str], list[tuple]]:
    """(readable Parquet files, one unreadable_file reject per file whose footer cannot be read)."""
    import pyarrow.parquet as pq

    readable, rejects = [], []
    root = input_root(spec).resolve()
    for path in paths:
        try:
            pq.read_metadata(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... on a damaged file
            rel = relative_location(root, Path(path))
            rejects.append((stable_id(rel, str(exc)), source_label(spec), None, None, None, "unreadable_file",
                            f"{rel}: {exc}"[:SAMPLE_BYTES]))
        else:
            readable.append(path)
    return readable, rejects


def _with_preset(meta, preset: str | None):
    from pyspark.sql import functions as F

    if not preset:
        return meta
    # meta is a JSON object text: add "preset" as its first key.
    return F.when(meta == F.lit("{}"), F.lit(f'{{"preset":"{preset}"}}')).otherwise(
        F.concat(F.lit(f'{{"preset":"{preset}",'), meta.substr(F.lit(2), F.length(meta))))


def ingest(spark, specs: tuple[InputSpec, ...], cfg: EtlConfig, whole_rows: bool = False):
    """All inputs as one DataFrame of raw rows (RAW_SCHEMA); ``whole_rows``: text = each row as JSON."""
    frames, tasks = [], []
    for spec in specs:
        file_tasks, parquet, kind = plan_input(spec, cfg, whole_rows)
        tasks += file_tasks
        if kind == "table":
            frames.append(from_table(spark.table(spec.path), spec, cfg, spec.path, whole_rows=whole_rows))
        elif kind == "delta":
            frames.append(from_table(tables.read(spark, _input_path(spec)), spec, cfg, spec.path,
                                     whole_rows=whole_rows))
        readable, rejects = check_parquet_files(spec, parquet)
        if readable:
            frames.append(from_table(spark.read.parquet(*readable), spec, cfg, spec.path, input_root(spec),
                                     whole_rows))
        if rejects:
            frames.append(spark.createDataFrame(rejects, RAW_SCHEMA))
    if tasks:
        frames.append(read_files(spark, tasks, cfg))
    if not frames:
        return spark.createDataFrame([], RAW_SCHEMA)
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


def input_bytes(specs: tuple[InputSpec, ...]) -> int:
    """Bytes on disk of the file inputs (for progress and MB/s)."""
    total = 0
    for spec in specs:
        p = Path(_input_path(spec))
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and "_delta_log" not in f.parts)
    return total
