"""The Spark session: the active one when there is one (Databricks), else local.

Locally we size the driver for the machine, turn Arrow on (pandas/Arrow UDFs
move batches as Arrow), keep logs quiet and the UI off. ``TOKENMILL_JAVA_OPTIONS``
adds options to the local driver's JVM (the tests use it for a JVM that warms
up fast: many short jobs on tiny data). Delta is used through
Spark only when the session's classpath already has it; offline the
``tables`` module commits Parquet files as Delta with delta-rs instead.
"""

from __future__ import annotations

import os
import sys

from tokenmill.errors import UserError


def get_spark(app_name: str = "tokenmill", cores: int | None = None):
    """Return the active SparkSession, or start a local one fit for this machine."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UserError(
            "pyspark is not installed; install the local extra: pip install 'tokenmill[local]'"
        ) from None
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Workers must run the same Python as the driver (the venv's).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # presidio's e-mail recognizer would fetch the public suffix list.
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    cores = cores or int(os.environ.get("TOKENMILL_SPARK_CORES", "0")) or os.cpu_count() or 2
    builder = (
        SparkSession.builder.master(os.environ.get("TOKENMILL_SPARK_MASTER", f"local[{cores}]"))
        .appName(app_name)
        .config("spark.driver.memory", os.environ.get("TOKENMILL_DRIVER_MEMORY", _driver_memory()))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "2000")
        .config("spark.sql.shuffle.partitions", str(max(2, cores * 2)))
        .config("spark.default.parallelism", str(max(2, cores * 2)))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.python.worker.reuse", "true")
        .config("spark.sql.parquet.compression.codec", "zstd")
        .config("spark.driver.extraJavaOptions", " ".join(["-Dlog4j2.level=ERROR", *_java_options()]))
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def has_delta(spark) -> bool:
    """True when Spark itself can read and write Delta (Databricks, delta-spark jars)."""
    try:
        spark._jvm.io.delta.tables.DeltaTable  # noqa: B018 - probe the JVM classpath
        return spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable") is not None
    except Exception:
        return False


def _java_options() -> list[str]:
    return os.environ.get("TOKENMILL_JAVA_OPTIONS", "").split()


def _driver_memory() -> str:
    """A quarter of RAM, between 1 and 8 GiB: leaves room for Python workers."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return "2g"
    gib = max(1, min(8, total // (4 << 30)))
    return f"{gib}g"
