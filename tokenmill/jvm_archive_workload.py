"""The workload whose classes go into the JVM class-data archive (``jvm_archive.build``).

Run as ``python -m tokenmill.jvm_archive_workload pipeline|session`` in a JVM
told to archive the classes it loads: "pipeline" runs every stage on a few
sample documents through the same session settings a run uses; "session"
starts a session and runs one job. The JVM writes the archive as it exits,
which it does once its stdin closes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tokenmill.config import load_run_config
from tokenmill.pipeline import STAGES, run_stages
from tokenmill.sample.corpus import write_sample
from tokenmill.spark import get_spark


def run_pipeline(spark) -> None:
    root = Path(tempfile.mkdtemp())
    write_sample(root / "raw", n_docs=400)
    cfg = load_run_config(None, {"inputs": [{"path": str(root / "raw")}], "output": str(root / "out"),
                                 "tokenize": {"seq_len": 64, "vocab_size": 300}})
    run_stages(spark, cfg, list(STAGES))


def run_one_job(spark) -> None:
    numbers = spark.range(100)
    numbers.groupBy((numbers.id % 3).alias("k")).count().collect()


def main(workload: str) -> None:
    from pyspark import SparkContext

    spark = get_spark("tokenmill-jvm-archive", cores=2)
    if workload == "pipeline":
        run_pipeline(spark)
    else:
        run_one_job(spark)
    jvm = SparkContext._gateway.proc
    spark.stop()
    jvm.stdin.close()  # the JVM exits once its stdin closes, and writes the archive as it exits
    jvm.wait()


if __name__ == "__main__":
    main(sys.argv[1])
