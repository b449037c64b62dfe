"""Near-dedup speed: tokenmill's dedup stage vs HF datatrove's MinHash pipeline.

Same corpus (the Python standard library's .py files on this machine, or
--corpus PATH.parquet with id/text), same word 5-gram shingles, same number
of permutations and bands x rows (9 x 13 of 128 by default), same cores, one
run each. Measured:

* tokenmill: the whole dedup stage (signatures table, exact groups, LSH
  buckets, verification, connected components in Spark, keepers, writing
  deduped/dup_clusters/rejects) on local[CORES]; and the signatures phase
  alone.
* datatrove: MinhashDedupSignature (CORES workers) -> MinhashDedupBuckets
  (one task per band, CORES workers) -> MinhashDedupCluster (one task);
  its filter step (rewriting the documents) is not counted.

datatrove is not a tokenmill dependency: install it in a separate virtual
environment (it needs a newer huggingface-hub than tokenizers allows) and
pass its interpreter:

    python -m bench.bench_dedup_speed --datatrove-python /tmp/venv-dedup-bench/bin/python
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STDLIB = "/root/.pyenv/versions/3.11.7/lib/python3.11"

DATATROVE_SCRIPT = r'''
import json, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupSignature)
from datatrove.pipeline.readers import JsonlReader
from datatrove.utils.hashing import HashConfig

def main():
    data, work, cores, bands, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    config = MinhashConfig(hash_config=HashConfig(precision=64), n_grams=5, num_buckets=bands, hashes_per_bucket=rows, seed=1)
    times = {}
    t = time.time()
    LocalPipelineExecutor(pipeline=[JsonlReader(data), MinhashDedupSignature(output_folder=f"{work}/sigs", config=config)],
                          tasks=cores, workers=cores, logging_dir=f"{work}/logs/sigs").run()
    times["signatures"] = time.time() - t
    t = time.time()
    LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(input_folder=f"{work}/sigs", output_folder=f"{work}/buckets", config=config)],
                          tasks=config.num_buckets, workers=cores, logging_dir=f"{work}/logs/buckets").run()
    times["buckets"] = time.time() - t
    t = time.time()
    LocalPipelineExecutor(pipeline=[MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/remove_ids", config=config)],
                          tasks=1, workers=1, logging_dir=f"{work}/logs/clusters").run()
    times["clusters"] = time.time() - t
    print("RESULT " + json.dumps(times))


if __name__ == "__main__":  # worker processes re-import this file
    main()

'''


def stdlib_docs() -> list[tuple[str, str]]:
    files = sorted(f for f in glob.glob(f"{STDLIB}/**/*.py", recursive=True) if "site-packages" not in f)
    return [(os.path.relpath(f, STDLIB), Path(f).read_text(encoding="utf-8", errors="replace")) for f in files]


def run_tokenmill(docs, work: Path, cores: int, overrides: dict) -> dict:
    os.environ["TOKENMILL_SPARK_CORES"] = str(cores)
    from tokenmill import tables
    from tokenmill.config import RunConfig, from_dict
    from tokenmill.dedup.job import signatures_of
    from tokenmill.pipeline import run_stages
    from tokenmill.spark import get_spark

    spark = get_spark("bench-dedup-speed", cores=cores)
    df = spark.createDataFrame([(i, "bench", t, "{}", len(t), len(t.split()), 0.5) for i, t in docs],
                               "id string, source string, text string, meta string, n_chars int, n_words int, quality double")
    tables.write(df.repartition(cores * 4), str(work / "tables/clean"))
    cfg = from_dict(RunConfig, {"output": str(work), "dedup": overrides})
    spark.range(1).count()  # start the JVM and a Python worker outside the timings
    clean = tables.read(spark, str(work / "tables/clean"))
    t = time.time()
    signatures_of(clean, cfg.dedup).write.mode("overwrite").format("noop").save()
    sig_s = time.time() - t
    t = time.time()
    rec = run_stages(spark, cfg, ["dedup"], force=True).stages["dedup"]
    total = time.time() - t
    return {"signatures_only_s": round(sig_s, 2), "stage_s": round(total, 2), "bands": rec.extra["bands"],
            "rows": rec.extra["rows"], "rounds": rec.extra["component_rounds"], "dropped": rec.dropped}


def run_datatrove(python: str, docs, work: Path, cores: int, bands: int, rows: int) -> dict:
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    # One file per core: datatrove's reader splits work by file.
    files = [open(data / f"docs-{k}.jsonl", "w") for k in range(cores)]
    for n, (i, t) in enumerate(docs):
        files[n % cores].write(json.dumps({"id": i, "text": t}) + "\n")
    for f in files:
        f.close()
    script = work / "run_datatrove.py"
    script.write_text(DATATROVE_SCRIPT)
    t = time.time()
    proc = subprocess.run([python, str(script), str(data), str(work / "dt"), str(cores), str(bands), str(rows)],
                          capture_output=True, text=True)
    total = time.time() - t
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        raise RuntimeError(f"datatrove failed:\n{proc.stderr[-3000:]}")
    phases = json.loads(line[0][len("RESULT "):])
    removed = sum(1 for _ in (work / "dt/remove_ids").rglob("*") if _.is_file())
    return {"phases_s": {k: round(v, 2) for k, v in phases.items()}, "pipeline_s": round(sum(phases.values()), 2),
            "process_s": round(total, 2), "remove_files": removed}


def main() -> None:
    ap = argparse.ArgumentParser(description="dedup speed vs datatrove")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--datatrove-python", default=None, help="interpreter of a venv with datatrove")
    ap.add_argument("--skip-tokenmill", action="store_true", help="run datatrove only (bands x rows 14 x 9)")
    ap.add_argument("--repeat-corpus", type=int, default=1,
                    help="the corpus N times, each copy with one extra line (near duplicates)")
    args = ap.parse_args()
    docs = stdlib_docs()
    # Copies get a distinct last line: near (not exact) duplicates, so every
    # copy goes through MinHash and LSH in both pipelines.
    docs = [(f"{k}/{i}", t if k == 0 else f"{t}\n# copy {k}\n") for k in range(args.repeat_corpus) for i, t in docs]
    mb = sum(len(t.encode()) for _, t in docs) / 1e6
    work = Path(tempfile.mkdtemp(prefix="bench-dedup-speed-"))
    print(f"corpus: {len(docs)} docs, {mb:.1f} MB; cores {args.cores}; uptime: {os.popen('uptime').read().strip()}")
    result = {"docs": len(docs), "mb": round(mb, 2), "cores": args.cores}
    ours = {"bands": 14, "rows": 9}
    if not args.skip_tokenmill:
        ours = run_tokenmill(docs, work / "tm", args.cores, {})
        ours["docs_per_s_per_core"] = round(len(docs) / ours["stage_s"] / args.cores, 1)
        ours["mb_per_s_per_core"] = round(mb / ours["stage_s"] / args.cores, 3)
        result["tokenmill"] = ours
        print("tokenmill", json.dumps(ours), flush=True)
    if args.datatrove_python:
        dt = run_datatrove(args.datatrove_python, docs, work, args.cores, ours["bands"], ours["rows"])
        dt["docs_per_s_per_core"] = round(len(docs) / dt["pipeline_s"] / args.cores, 1)
        dt["mb_per_s_per_core"] = round(mb / dt["pipeline_s"] / args.cores, 3)
        result["datatrove"] = dt
        print("datatrove", json.dumps(dt), flush=True)
    print(f"uptime after: {os.popen('uptime').read().strip()}")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
