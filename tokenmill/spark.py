"""The Spark session: the active one when there is one (Databricks), else a new one.

Three kinds: a classic local session (the default), a classic session on a
cluster (``--master spark://...``, ``MASTER``) and a Spark Connect session
(``--remote sc://...`` or ``local[N]``, ``SPARK_REMOTE``; what Databricks
serverless, standard access mode and Databricks Connect give). Stages use
only what all three have; ``is_connect`` is the one check for the rest.

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
import warnings

from tokenmill import interrupts, jvm_archive
from tokenmill.errors import UserError


def get_spark(app_name: str = "tokenmill", cores: int | None = None, *, master: str | None = None,
              remote: str | None = None, conf: dict[str, str] | None = None):
    """The active SparkSession, else a new one.

    ``remote`` (or SPARK_REMOTE) starts a Spark Connect session: ``sc://host:port``
    for a running server, ``local[N]`` for one started here. Otherwise a classic
    session on ``master`` (or MASTER, TOKENMILL_SPARK_MASTER; default local[cores]).
    ``conf``: Spark properties for a new session, applied after ours (they win).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UserError(
            "pyspark is not installed; install the local extra: pip install 'tokenmill[local]'"
        ) from None
    remote = remote or os.environ.get("SPARK_REMOTE") or None
    active = _active_session(SparkSession, connect=remote is not None)
    if active is not None:
        return active
    # Workers must run the same Python as the driver (the venv's).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # presidio's e-mail recognizer would fetch the public suffix list.
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    cores = cores or int(os.environ.get("TOKENMILL_SPARK_CORES", "0")) or os.cpu_count() or 2
    master = master or os.environ.get("MASTER") or os.environ.get("TOKENMILL_SPARK_MASTER") or f"local[{cores}]"
    builder = SparkSession.builder.remote(remote) if remote else SparkSession.builder.master(master)
    for key, value in session_settings(remote or master, cores, conf).items():
        builder = builder.config(key, value)
    with warnings.catch_warnings():
        # Connect re-applies every setting to the running session and warns about the
        # static ones (driver memory, UI): those already took effect at server start.
        warnings.simplefilter("ignore", UserWarning)
        spark = builder.appName(app_name).getOrCreate()
    interrupts.reinstall()
    _quiet_logs(spark, remote)
    return spark


def parse_conf(pairs: list[str]) -> dict[str, str]:
    """``--conf spark.key=value`` flags (as spark-submit takes them) as a dict."""
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.startswith("spark.") or key == "spark.":
            raise UserError(f"--conf: expected spark.PROPERTY=VALUE, got {pair!r}")
        conf[key] = value.strip()
    return conf


# A task's failure comes back to the driver as the job's exception, with the
# Python worker's traceback in it: tokenmill prints it (one line for a user's
# error). These loggers would print the same traceback again, inside Java's.
TASK_FAILURE_LOGGERS = (
    "org.apache.spark.executor.Executor",
    "org.apache.spark.scheduler.TaskSetManager",
    "org.apache.spark.sql.execution.datasources.FileFormatWriter",
)


def _quiet_logs(spark, remote: str | None) -> None:
    """Errors only in the logs of the JVM this process runs (none for a remote server),
    and task failures only once, from the driver's exception."""
    if not is_connect(spark):
        context = spark.sparkContext
    elif remote is not None and remote.startswith("local"):
        from pyspark import SparkContext

        context = SparkContext._active_spark_context  # the local Connect server's own driver
    else:
        return
    if context is None:
        return
    context.setLogLevel("ERROR")
    log4j = context._jvm.org.apache.logging.log4j
    for name in TASK_FAILURE_LOGGERS:
        log4j.core.config.Configurator.setLevel(name, log4j.Level.OFF)


def _active_session(SparkSession, connect: bool):
    if connect:
        from pyspark.sql.connect.session import SparkSession as ConnectSession

        return ConnectSession.getActiveSession()
    return SparkSession.getActiveSession()


# The JIT's optimizing compiler (C2) at its default thresholds spent 25 of the
# JVM's 65 CPU-seconds of a 200 MB pipeline run compiling methods that run only
# briefly (each query's generated code, each stage's one-off paths). Compiling
# only methods ten times hotter halves that, and the tasks' own CPU time stays
# the same: the run took 71 s instead of 82 s. TOKENMILL_JAVA_OPTIONS come
# after these, so they win.
JIT_OPTIONS = ("-XX:Tier4InvocationThreshold=50000", "-XX:Tier4MinInvocationThreshold=6000",
               "-XX:Tier4CompileThreshold=150000", "-XX:Tier4BackEdgeThreshold=400000")


def session_settings(where: str, cores: int, conf: dict[str, str] | None = None) -> dict[str, str]:
    """Session settings: ours (machine-sized ones only where this machine runs the
    executors), then ``conf``, the user's, which win."""
    return {**_our_settings(where, cores), **(conf or {})}


def _our_settings(where: str, cores: int) -> dict[str, str]:
    settings = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "2000",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.python.worker.reuse": "true",
        "spark.sql.parquet.compression.codec": "zstd",
        # The stages cache text columns for a second read; the cache's compression
        # schemes cannot shrink text but hash and copy every value trying to
        # (2.4 of 17 JVM CPU-seconds in etl on 300 MB of source code).
        "spark.sql.inMemoryColumnarStorage.compressed": "false",
        "spark.driver.extraJavaOptions": _driver_java_options(where),
        # Python workers start as `python -m pyspark.daemon` in the driver's working
        # directory, which `-m` puts first on sys.path: run from a source checkout (or
        # any folder holding a `tokenmill/`), the workers imported that folder's code
        # instead of the installed package. PYTHONSAFEPATH (Python 3.11+) leaves the
        # working directory off sys.path.
        "spark.executorEnv.PYTHONSAFEPATH": "1",
    }
    if where.startswith("sc://"):  # a running server: its machine is sized by whoever started it
        return settings
    settings["spark.driver.memory"] = os.environ.get("TOKENMILL_DRIVER_MEMORY", _driver_memory())
    if where.startswith("local"):
        settings["spark.sql.shuffle.partitions"] = str(max(2, cores * 2))
        settings["spark.default.parallelism"] = str(max(2, cores * 2))
    return settings


def _driver_java_options(where: str) -> str:
    """Quiet logs, the JIT thresholds, Spark's class archive where the driver JVM starts
    here and one exists (``tokenmill jvm-archive``), then TOKENMILL_JAVA_OPTIONS."""
    archive = [] if where.startswith("sc://") else jvm_archive.java_options()
    return " ".join(["-Dlog4j2.level=ERROR", *JIT_OPTIONS, *archive, *_java_options()])


def is_connect(spark) -> bool:
    """True for a Spark Connect session (serverless, standard access mode, Databricks Connect)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


_PARALLELISM: dict[str, int] = {}


def parallelism(spark) -> int:
    """How many tasks the session runs at once (Spark's default parallelism)."""
    if not is_connect(spark):
        return spark.sparkContext.defaultParallelism
    try:
        configured = spark.conf.get("spark.default.parallelism", None)
    except Exception:  # serverless may refuse to show a setting
        configured = None
    if configured:
        return int(configured)
    if spark.session_id not in _PARALLELISM:
        _PARALLELISM[spark.session_id] = measured_parallelism(spark)
    return _PARALLELISM[spark.session_id]


def measured_parallelism(spark) -> int:
    """A range without a partition count is split by the server's default parallelism."""
    from pyspark.sql import functions as F

    ids = spark.range(0, 1 << 16).select(F.spark_partition_id().alias("p"))
    return int(ids.agg(F.max("p")).first()[0]) + 1


_HAS_DELTA: dict[str, bool] = {}


def has_delta(spark) -> bool:
    """True when Spark itself can read and write Delta (Databricks, delta-spark jars).

    Asked once per session: every table operation asks, and a missing class
    costs a Java exception through py4j (about 0.1 s) each time.
    """
    key = spark.session_id if is_connect(spark) else spark.sparkContext.applicationId  # one JVM, one classpath
    if key not in _HAS_DELTA:
        _HAS_DELTA[key] = _delta_source_exists(spark) if is_connect(spark) else _delta_class_loads(spark)
    return _HAS_DELTA[key]


def _delta_class_loads(spark) -> bool:
    try:
        return spark._jvm.java.lang.Class.forName("io.delta.tables.DeltaTable") is not None
    except Exception:
        return False


def _delta_source_exists(spark) -> bool:
    """Ask the server to resolve a Delta read of a missing path: only a missing source says no."""
    try:
        spark.read.format("delta").load("/tokenmill-delta-probe-does-not-exist").schema  # noqa: B018
    except Exception as exc:  # the error's text names the reason
        return "DATA_SOURCE_NOT_FOUND" not in str(exc) and "Failed to find data source" not in str(exc)
    return True


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
