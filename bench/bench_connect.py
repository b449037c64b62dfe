"""The whole pipeline on three kinds of Spark session, and one big file read split or not.

1. ``tokenmill run`` (etl, dedup, tokenize, shards) over the same JSONL corpus,
   each kind in its own process, cold: classic ``local[N]``, Spark Connect
   (``--remote local[N]``, a server started here) and a standalone cluster
   (``--master spark://...``: N workers x 1 core, executors in their own
   JVMs). Wall time of each and its ratio to classic. The cluster's own
   start (master and workers) is not counted; each run's JVM start is.
2. One plain JSONL file read by ingest (rows counted, texts hashed):
   as one task (the way before byte-range splits) and split at line ends.

    python -m bench.bench_connect --corpus sample --n-docs 400 --set etl.pii.enabled=false   # smoke size
    python -m bench.bench_connect --corpus machine --mb 200 --cores 2   # >= 200 MB of real text
    python -m bench.bench_connect --corpus machine --mb 200 --cores 2 --rounds 3   # orders rotated
    python -m bench.bench_connect --corpus machine --mb 200 --cores 2 --rounds 3 --executor-archive
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
ROOT = Path(__file__).resolve().parents[1]
CONFIG = "tokenize: {seq_len: 1024}\nshards: {partitions: 4}\n"
OVERRIDES: list[str] = []  # --set FIELD=VALUE, passed to every run
# The standalone cluster's executors: each has one core and sees half of the
# run's calls, so the optimizing JIT compiler (C2) compiles the same methods in
# every executor and pays back less in each. On 200 MB of prose with the local
# driver's JIT settings its threads took 18.7 of the two executors' 49 CPU-seconds;
# with the quick compiler only, 2.7 of 34 (bench/RESULTS.md).
EXECUTOR_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1"


def executor_java_options(args) -> str:
    """--executor-java-options, plus this machine's class archive with --executor-archive (the
    cluster's executors run here, with the driver's Java, pyspark and class path)."""
    from tokenmill import jvm_archive

    archive = jvm_archive.java_options() if args.executor_archive else []
    if args.executor_archive and not archive:
        raise SystemExit("--executor-archive: no complete class archive here; run `tokenmill jvm-archive`")
    return " ".join([args.executor_java_options, *archive]).strip()


def corpus_docs(args) -> list[str]:
    from bench.etl_corpus import machine_docs, sample_docs

    return sample_docs(args.n_docs) if args.corpus == "sample" else machine_docs(args.mb * 1_000_000)


def _env(cores: int) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable, "TOKENMILL_PROGRESS_S": "0",
           "TOKENMILL_SPARK_CORES": str(cores), "SPARK_LOCAL_IP": "127.0.0.1"}
    for name in ("SPARK_REMOTE", "MASTER", "TOKENMILL_SPARK_MASTER"):
        env.pop(name, None)
    return env


def run_pipeline(where: list[str], inputs: Path, out: Path, config: Path, env: dict[str, str]) -> float:
    command = [sys.executable, "-m", "tokenmill.cli", "run", "--input", str(inputs), "--output", str(out),
               "--config", str(config), *where]
    for override in OVERRIDES:
        command += ["--set", override]
    started = time.time()
    with open(out.with_suffix(".log"), "w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        raise SystemExit(f"{' '.join(where) or 'classic'} run failed; see {out.with_suffix('.log')}")
    return time.time() - started


def stage_walls(out: Path) -> dict[str, float]:
    """Each stage's wall time from the run's manifest (the rest of a run is start-up and planning)."""
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    return {name: round(rec["wall_s"], 1) for name, rec in stages.items()}


def pipeline_runs(inputs: Path, work: Path, cores: int, kinds: list[str], executor_options: str) -> dict:
    from tokenmill.standalone import local_cluster

    config = work / "run.yaml"
    config.write_text(CONFIG)
    env = _env(cores)
    walls = {}
    for kind in kinds:
        out = work / kind
        if kind == "classic":
            walls[kind] = run_pipeline(["--master", f"local[{cores}]"], inputs, out, config, env)
        elif kind == "connect":
            walls[kind] = run_pipeline(["--remote", f"local[{cores}]"], inputs, out, config, env)
        else:
            # local[N] sessions get 2N shuffle partitions from tokenmill; give the cluster the same,
            # and its executors (the JVMs that run the tasks) the JVM options the admin chose. As
            # --conf flags, not a SPARK_CONF_DIR: that folder would go first on the driver's class
            # path, and the JVM maps no class archive made for another class path.
            conf = [f"spark.sql.shuffle.partitions={2 * cores}", f"spark.executor.extraJavaOptions={executor_options}"]
            with local_cluster(work / "cluster", workers=cores, cores=1, memory="2g", env=env) as url:
                where = ["--master", url, *(f"--conf={c}" for c in conf)]
                walls[kind] = run_pipeline(where, inputs, out, config, env)
    result = {k: {"wall_s": round(v, 1), "stage_wall_s": stage_walls(work / k)} for k, v in walls.items()}
    if "classic" in walls:
        for kind, wall in walls.items():
            result[kind]["ratio_to_classic"] = round(wall / walls["classic"], 3)
    return result


def rounds_of_runs(inputs: Path, work: Path, cores: int, kinds: list[str], rounds: int,
                   executor_options: str) -> dict:
    """One round: ``pipeline_runs``. More: each round in a rotated order, and per kind the
    median wall time and the median of its per-round ratios to classic."""
    if rounds == 1:
        return {"pipeline": pipeline_runs(inputs, work, cores, kinds, executor_options)}
    results = []
    for r in range(rounds):
        order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
        folder = work / f"round-{r}"
        folder.mkdir()
        results.append({"order": order, **pipeline_runs(inputs, folder, cores, order, executor_options)})
    summary = {}
    for kind in kinds:
        walls = [res[kind]["wall_s"] for res in results]
        summary[kind] = {"median_wall_s": statistics.median(walls), "walls_s": walls}
        if "classic" in kinds:
            ratios = [res[kind]["ratio_to_classic"] for res in results]
            summary[kind].update(median_ratio=round(statistics.median(ratios), 3), ratios=ratios)
    return {"rounds": results, "summary": summary}


def single_file_read(docs: list[str], work: Path, cores: int) -> dict:
    """Ingest of one big plain JSONL: one task vs line-aligned byte ranges (same rows)."""
    from pyspark.sql import functions as F

    from bench.etl_corpus import write_jsonl
    from tokenmill.etl import ranges
    from tokenmill.config.etl import EtlConfig
    from tokenmill.etl.ingest import FileTask, read_files
    from tokenmill.spark import get_spark

    folder = work / "single"
    size = write_jsonl(docs, folder, n_files=1)
    path = next(folder.glob("*.jsonl"))
    task = FileTask(str(path), path.name, "jsonl", "single", "text", "id", None)
    spark = get_spark("bench-connect-read", cores=cores)
    cfg = EtlConfig()
    result = {"mb": round(size / 1e6, 1)}
    read_files(spark, [task], cfg).count()  # warm up: JVM, Python workers, page cache, for both reads alike
    usual = ranges.MIN_SPLIT_BYTES
    for name, min_split in (("one_task", 1 << 62), ("split", usual)):
        ranges.MIN_SPLIT_BYTES = min_split  # "one_task": no file is ever large enough to split
        started = time.time()
        row = read_files(spark, [task], cfg).withColumn("task", F.spark_partition_id()).agg(
            F.count("*").alias("rows"), F.sum(F.crc32("text")).alias("crc"),
            F.countDistinct("task").alias("tasks")).first()
        result[name] = {"wall_s": round(time.time() - started, 2), "tasks": row["tasks"], "rows": row["rows"],
                        "crc": row["crc"]}
    ranges.MIN_SPLIT_BYTES = usual
    spark.stop()
    result["same_rows"] = all(result["one_task"][k] == result["split"][k] for k in ("rows", "crc"))
    result["speedup"] = round(result["one_task"]["wall_s"] / max(result["split"]["wall_s"], 1e-9), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=("sample", "machine"), default="sample")
    parser.add_argument("--n-docs", type=int, default=3600, help="sample corpus size")
    parser.add_argument("--mb", type=int, default=200, help="machine corpus size")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--kinds", default="classic,connect,standalone")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a run config override for every run, e.g. etl.pii.enabled=false")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every kind this many times, the order rotated each round (the machine's "
                             "speed drifts: a fixed order favours whichever kind runs first)")
    parser.add_argument("--executor-java-options", default=EXECUTOR_JAVA_OPTIONS,
                        help="the standalone cluster's spark.executor.extraJavaOptions (default: the quick "
                             "compiler only; the local driver's JIT settings are tokenmill.spark.JIT_OPTIONS)")
    parser.add_argument("--executor-archive", action="store_true",
                        help="the executors map this machine's Spark class archive too (tokenmill jvm-archive), "
                             "as the classic and Connect runs' single JVM does")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    OVERRIDES.extend(args.set)
    args.executor_java_options = executor_java_options(args)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    from bench.etl_corpus import work_folder, write_jsonl

    with work_folder("bench-connect-", args.keep) as work:
        docs = corpus_docs(args)
        n_bytes = write_jsonl(docs, work / "corpus", n_files=16)
        report = {"corpus": args.corpus, "docs": len(docs), "mb": round(n_bytes / 1e6, 1), "cores": args.cores,
                  "uptime_before": uptime, "executor_java_options": args.executor_java_options,
                  **rounds_of_runs(work / "corpus", work, args.cores, args.kinds.split(","), args.rounds,
                                   args.executor_java_options),
                  "single_file_read": single_file_read(docs, work, args.cores)}
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
