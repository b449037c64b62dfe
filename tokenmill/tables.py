"""Read and write stage tables as Delta tables.

Three ways, one API:

* a catalog name (``catalog.schema.table``, on Databricks): Spark's
  ``saveAsTable`` / ``spark.table``;
* a path, when Spark's classpath has Delta (Databricks, delta-spark jars):
  Spark's own Delta writer and reader;
* a path, offline (no Delta jars, no Maven): Spark writes Parquet files into a
  fresh folder inside the table and delta-rs (``deltalake``) commits them as
  one Delta transaction. The result is a real Delta table that Spark and
  Databricks read. A crash before the commit leaves only unreferenced files;
  readers keep seeing the previous version.

``write`` replaces a table (or only the rows of one value of a column, used
by ``rejects`` where each stage owns its rows) and returns the new version.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from urllib.parse import quote, unquote

from tokenmill import locations
from tokenmill.errors import UserError
from tokenmill.spark import has_delta, is_connect

_CATALOG_NAME = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_`][\w`]*){1,2}$")


def is_catalog_name(location: str) -> bool:
    """``catalog.schema.table`` (or ``schema.table``) rather than a path."""
    return "/" not in location and ":" not in location and bool(_CATALOG_NAME.match(location))


def stage_location(out: str, name: str, catalog_schema: str | None = None) -> str:
    """Where stage table ``name`` lives: ``OUT/tables/name`` or ``catalog.schema.name``."""
    if catalog_schema:
        return f"{catalog_schema}.{name}"
    return f"{str(out).rstrip('/')}/tables/{name}"


def exists(spark, location: str) -> bool:
    if is_catalog_name(location):
        return bool(spark.catalog.tableExists(location))
    if has_delta(spark):
        return _spark_is_delta(spark, location)
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(_local(location))


def version(spark, location: str) -> int | None:
    """Current version of a Delta table, or None when there is no table."""
    if not exists(spark, location):
        return None
    if is_catalog_name(location) or has_delta(spark):
        target = location if is_catalog_name(location) else f"delta.`{location}`"
        row = spark.sql(f"DESCRIBE HISTORY {target} LIMIT 1").collect()
        return int(row[0]["version"]) if row else None
    from deltalake import DeltaTable

    return DeltaTable(_local(location)).version()


def read(spark, location: str):
    """The table as a DataFrame. A missing table is a UserError naming it."""
    if not exists(spark, location):
        raise UserError(f"table not found: {location} (run the stage that writes it first)")
    if is_catalog_name(location):
        return spark.table(location)
    if has_delta(spark):
        return spark.read.format("delta").load(location)
    return _read_offline(spark, location)


def row_count(spark, location: str) -> int:
    """Rows in the current version, from Delta file stats when we have them."""
    if is_catalog_name(location) or has_delta(spark):
        return read(spark, location).count()
    from deltalake import DeltaTable

    import pyarrow as pa

    actions = pa.table(DeltaTable(_local(location)).get_add_actions(flatten=True))
    counts = actions.column("num_records").to_pylist() if "num_records" in actions.column_names else [None]
    if any(c is None for c in counts):
        return read(spark, location).count()
    return int(sum(counts))


def write(df, location: str, *, replace_where: tuple[str, str] | None = None) -> int:
    """Replace the table with ``df`` (or only rows where column == value).

    Returns the new table version.
    """
    spark = df.sparkSession
    if replace_where is not None:
        column, value = replace_where
        if exists(spark, location):
            from pyspark.sql import functions as F

            kept = read(spark, location).where(F.col(column) != F.lit(value))
            df = kept.unionByName(df.select(*kept.columns))
    if is_catalog_name(location):
        df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").saveAsTable(location)
        return version(spark, location)
    if has_delta(spark):
        df.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(location)
        return version(spark, location)
    return _write_offline(df, location)


def vacuum(spark, location: str, retention_hours: float) -> int | None:
    """Delete files no version newer than ``retention_hours`` ago needs; returns how many (None: unknown)."""
    if not exists(spark, location):
        return 0
    if is_catalog_name(location) or has_delta(spark):
        target = location if is_catalog_name(location) else f"delta.`{location}`"
        check = "spark.databricks.delta.retentionDurationCheck.enabled"
        previous = spark.conf.get(check, "true")
        spark.conf.set(check, "false")  # a retention under a week is the caller's explicit choice
        try:
            spark.sql(f"VACUUM {target} RETAIN {retention_hours:g} HOURS")
        finally:
            spark.conf.set(check, previous)
        return None
    from deltalake import DeltaTable

    root = Path(_local(location))
    deleted = DeltaTable(str(root)).vacuum(retention_hours=int(retention_hours), dry_run=False,
                                           enforce_retention_duration=False)
    for folder in sorted((p for p in root.glob("part-*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):  # a write's folder whose files are all gone
            folder.rmdir()
    return len(deleted)


def drop(spark, location: str) -> None:
    """Remove a table (its files too, for a path); a missing table is fine.

    A remote path that this session cannot delete is emptied instead: readers
    then see no rows rather than an earlier run's.
    """
    if not exists(spark, location):
        return
    if is_catalog_name(location):
        spark.sql(f"DROP TABLE IF EXISTS {location}")
        return
    local = _local(location)
    if "://" not in local:
        import shutil

        shutil.rmtree(local)
        return
    empty = read(spark, location).limit(0)
    write(empty, location)


# --- offline: Spark writes Parquet, delta-rs commits ------------------------------


def _local(location: str) -> str:
    """delta-rs takes plain paths and file:// URIs; strip the scheme for local files."""
    if location.startswith("file://"):
        return location[len("file://"):]
    return location


def _spark_is_delta(spark, location: str) -> bool:
    if is_connect(spark):  # no JVM here: a Delta read's schema resolves only for a Delta table
        try:
            spark.read.format("delta").load(location).schema  # noqa: B018
            return True
        except Exception:
            return False
    try:
        jvm = spark._jvm
        return bool(jvm.io.delta.tables.DeltaTable.isDeltaTable(spark._jsparkSession, location))
    except Exception:
        return False


def _read_offline(spark, location: str):
    from deltalake import DeltaTable

    table = DeltaTable(_local(location))
    files = [unquote(uri) for uri in table.file_uris()]
    if not files:
        schema = _spark_schema(table.schema().to_arrow())
        return spark.createDataFrame([], schema)
    return spark.read.parquet(*files)


def _spark_schema(arrow_schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(arrow_schema)


def _write_offline(df, location: str) -> int:
    import pyarrow.parquet as pq
    from deltalake import DeltaTable, Schema
    from deltalake.transaction import (
        AddAction,
        CommitProperties,
        PostCommitHookProperties,
        create_table_with_add_actions,
    )

    root = locations.make_writable_dir(Path(_local(location)), "table folder")
    # One fresh folder per write: a failed write leaves only files no commit names.
    batch = f"part-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
    df.write.mode("error").parquet(str(root / batch))
    files = sorted((root / batch).glob("*.parquet"))
    if not files:
        raise RuntimeError(f"Spark wrote no Parquet file into {root / batch}")
    schema = pq.read_schema(files[0])
    schema = schema.remove_metadata()
    actions = [_add_action(AddAction, root, f) for f in files]
    hooks = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)
    props = CommitProperties(custom_metadata={"tokenmill.batch": batch})
    if DeltaTable.is_deltatable(str(root)):
        DeltaTable(str(root)).create_write_transaction(
            actions, mode="overwrite", schema=schema,
            commit_properties=props, post_commithook_properties=hooks,
        )
    else:
        create_table_with_add_actions(
            str(root), Schema.from_arrow(schema), actions, mode="overwrite",
            commit_properties=props, post_commithook_properties=hooks,
        )
    return DeltaTable(str(root)).version()


def _add_action(AddAction, root: Path, file: Path):
    import pyarrow.parquet as pq

    stat = file.stat()
    rows = pq.ParquetFile(file).metadata.num_rows
    return AddAction(
        path=quote(str(file.relative_to(root))),
        size=stat.st_size,
        partition_values={},
        modification_time=int(stat.st_mtime * 1000),
        data_change=True,
        stats=json.dumps({"numRecords": rows}),
    )
