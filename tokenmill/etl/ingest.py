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

This module runs on the driver (listing, formats, grouping, table inputs,
the stage's one DataFrame); what the Python tasks run to read a file is in
``tokenmill.etl.readers``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tokenmill import locations, tables
from tokenmill import spark as session
from tokenmill.errors import UserError
from tokenmill.etl import ranges
from tokenmill.config.etl import EtlConfig, InputSpec
# FileTask, read_task and stable_id are also named here for callers that plan and read in one place.
from tokenmill.etl.readers import RAW_SCHEMA, SAMPLE_BYTES, FileTask, read_files_udf, read_task, stable_id  # noqa: F401

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
COMPRESSED = (".gz", ".zst")
GROUP_BYTES = 64 << 20  # compressed bytes of files per Spark task


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


# --- file tasks: cut, grouped and handed to the workers -------------------------------


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
    return df.mapInArrow(read_files_udf(cfg.ingest.max_doc_bytes, cfg.ingest.invalid_utf8), RAW_SCHEMA)


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
