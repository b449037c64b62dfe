"""Whole-etl benchmark: MB/s per core, against ftfy alone over the same text.

Two measurements on the same texts:

1. per core, in one Python process (CPU seconds, so other load on the
   machine does not count): ``ftfy.fix_text`` alone (default config) vs
   tokenmill's per-document etl work (normalize with ftfy, quality filters,
   PII) — what each Spark Python worker runs;
2. the whole ``tokenmill etl`` stage under Spark (``local[N]``): the texts
   written as JSONL, then ingest -> documents -> clean + PII -> clean/rejects
   Delta tables; wall time, MB/s and MB/s per core. Wall time includes
   Spark's own work (JVM, Arrow transfer, Parquet/Delta writes) and
   suffers from other load on the machine (``uptime`` is printed);
3. ftfy alone under Spark on the same JSONL and cores: read, ``fix_text``
   in a mapInArrow, write Parquet (the same session, after the stage, so
   both find a warm JVM).

    python -m bench.bench_etl --corpus sample
    python -m bench.bench_etl --corpus machine --mb 200 --cores 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""


def per_core(docs: list[str]) -> dict:
    import ftfy

    from tokenmill.etl.clean import cleaner
    from tokenmill.config.etl import EtlConfig

    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    c = cleaner(EtlConfig())
    c.row("0", "s", "warm up a@example.com", "{}")
    start = time.process_time()
    for d in docs:
        ftfy.fix_text(d)
    t_ftfy = time.process_time() - start
    start = time.process_time()
    for d in docs:
        c.row("0", "s", d, "{}")
    t_ours = time.process_time() - start
    return {"mb": round(n_bytes / 1e6, 2), "ftfy_cpu_s": round(t_ftfy, 2), "ftfy_mb_s": round(n_bytes / 1e6 / t_ftfy, 3),
            "etl_cpu_s": round(t_ours, 2), "etl_mb_s": round(n_bytes / 1e6 / t_ours, 3),
            "etl_over_ftfy_time": round(t_ours / t_ftfy, 2)}


def spark_stage(docs: list[str], cores: int, workdir: str) -> dict:
    from bench.etl_corpus import write_jsonl

    os.environ["TOKENMILL_SPARK_CORES"] = str(cores)
    from tokenmill.config import from_dict
    from tokenmill.config import RunConfig
    from tokenmill.pipeline import run_stages
    from tokenmill.spark import get_spark

    inp, out = os.path.join(workdir, "input"), os.path.join(workdir, "out")
    jsonl_bytes = write_jsonl(docs, inp, n_files=max(4, 2 * cores))
    text_bytes = sum(len(d.encode("utf-8")) for d in docs)
    spark = get_spark("bench-etl", cores=cores)
    cfg = from_dict(RunConfig, {"inputs": [{"path": inp}], "output": out})
    start = time.time()
    manifest = run_stages(spark, cfg, ["etl"], force=True)
    wall = time.time() - start
    rec = manifest.stages["etl"]
    ftfy_wall = spark_ftfy(spark, inp, os.path.join(workdir, "ftfy"))
    return {"cores": cores, "jsonl_mb": round(jsonl_bytes / 1e6, 1), "text_mb": round(text_bytes / 1e6, 1),
            "wall_s": round(wall, 1), "mb_s": round(text_bytes / 1e6 / wall, 3),
            "mb_s_per_core": round(text_bytes / 1e6 / wall / cores, 3),
            "ftfy_spark_wall_s": round(ftfy_wall, 1), "stage_over_ftfy_spark": round(wall / ftfy_wall, 2),
            "rows_in": rec.rows_in, "rows_out": rec.rows_out, "dropped": rec.dropped, "pii": rec.extra.get("pii")}


def spark_ftfy(spark, inp: str, out: str) -> float:
    """Wall seconds for ftfy alone under Spark: JSONL in, fixed texts out as Parquet."""
    import pyarrow as pa

    def fix(batches):
        import ftfy

        for batch in batches:
            texts = [None if t is None else ftfy.fix_text(t) for t in batch.column("text").to_pylist()]
            yield pa.RecordBatch.from_arrays([batch.column("id"), pa.array(texts, pa.string())], names=["id", "text"])

    start = time.time()
    docs = spark.read.json(inp).select("id", "text")
    docs.mapInArrow(fix, "id string, text string").write.mode("overwrite").parquet(out)
    return time.time() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", choices=["sample", "machine"], default="sample")
    p.add_argument("--mb", type=float, default=200.0, help="MB of machine text (corpus machine)")
    p.add_argument("--per-core-mb", type=float, default=20.0, help="MB used for the per-core comparison")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--skip-spark", action="store_true")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)

    from bench.etl_corpus import machine_docs, print_result, sample_docs

    docs = sample_docs() if args.corpus == "sample" else machine_docs(int(args.mb * 1e6))
    result = {"corpus": args.corpus, "docs": len(docs),
              "uptime_before": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
    subset, size = [], 0
    for d in docs:
        subset.append(d)
        size += len(d)
        if size >= args.per_core_mb * 1e6:
            break
    result["per_core"] = per_core(subset)
    print(json.dumps(result["per_core"]), file=sys.stderr)
    if not args.skip_spark:
        workdir = tempfile.mkdtemp(prefix="tokenmill-bench-etl-")
        try:
            result["spark"] = spark_stage(docs, args.cores, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    result["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print_result(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
