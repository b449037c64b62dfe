"""Dedup quality against brute-force ground truth (pair recall and precision).

Corpora: the bundled sample (raw rows via etl's ingest) and the Python
standard library's own source files on this machine. Ground truth: every
pair whose exact Jaccard over the stage's own shingles reaches the threshold
(``bench.dedup_truth``, AllPairs prefix filter, no estimates). The dedup
stage then runs end to end on the same documents as its `clean` table.

Metrics (documents with no shingle are left out of both sides):
* pair recall    = true pairs that end in one cluster / true pairs
* pair precision = same-cluster pairs that are true pairs / same-cluster pairs
* drop precision = dropped documents whose exact Jaccard to their keeper
                   reaches the threshold / dropped documents

    python -m bench.bench_dedup_quality [--corpus sample stdlib] [--set dedup.FIELD=VALUE ...]
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from bench.dedup_truth import all_pairs, shingle_sets

STDLIB = "/root/.pyenv/versions/3.11.7/lib/python3.11"


def stdlib_docs() -> list[tuple[str, str]]:
    files = sorted(f for f in glob.glob(f"{STDLIB}/**/*.py", recursive=True) if "site-packages" not in f)
    return [(os.path.relpath(f, STDLIB), Path(f).read_text(encoding="utf-8", errors="replace")) for f in files]


def sample_docs(spark, work: Path) -> list[tuple[str, str]]:
    from pyspark.sql import functions as F

    from tokenmill.config.etl import EtlConfig, InputSpec
    from tokenmill.etl.ingest import ingest
    from tokenmill.sample import write_sample

    write_sample(work / "raw")
    rows = (ingest(spark, (InputSpec(str(work / "raw")),), EtlConfig())
            .where(F.col("reason").isNull() & F.col("text").isNotNull()).select("id", "text").collect())
    return [(r["id"], r["text"]) for r in rows]


def run_stage(spark, docs, out: Path, overrides: dict) -> tuple[dict, list[dict], float]:
    from tokenmill import tables
    from tokenmill.config import RunConfig, from_dict
    from tokenmill.pipeline import run_stages

    df = spark.createDataFrame([(i, "bench", t, "{}", len(t), len(t.split()), 0.5) for i, t in docs],
                               "id string, source string, text string, meta string, n_chars int, n_words int, quality double")
    tables.write(df.repartition(8), str(out / "tables/clean"))
    cfg = from_dict(RunConfig, {"output": str(out), "dedup": overrides})
    started = time.time()
    rec = run_stages(spark, cfg, ["dedup"], force=True).stages["dedup"]
    wall = time.time() - started
    clusters = [r.asDict() for r in tables.read(spark, str(out / "tables/dup_clusters")).collect()]
    return rec.extra, clusters, wall


def score(truth: dict, sets: dict, clusters: list[dict], threshold: float) -> dict:
    members: dict[str, list[str]] = {}
    keeper_of = {}
    for r in clusters:
        if r["id"] in sets:
            members.setdefault(r["cluster_id"], []).append(r["id"])
            keeper_of[r["id"]] = r["cluster_id"]
    predicted = {(min(a, b), max(a, b)) for ids in members.values() for a, b in itertools.combinations(ids, 2)}
    true = set(truth)
    hit = len(true & predicted)
    drops = [(d, k) for d, k in keeper_of.items() if d != k and k in sets]

    def jac(a, b):
        i = len(sets[a] & sets[b])
        return i / (len(sets[a]) + len(sets[b]) - i)

    good_drops = sum(jac(d, k) >= threshold for d, k in drops)
    return {
        "true_pairs": len(true), "predicted_pairs": len(predicted), "found_true_pairs": hit,
        "pair_recall": round(hit / len(true), 4) if true else None,
        "pair_precision": round(hit / len(predicted), 4) if predicted else None,
        "dropped": len(drops), "drop_precision": round(good_drops / len(drops), 4) if drops else None,
        "missed_examples": sorted(true - predicted)[:5],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="dedup quality vs brute-force ground truth")
    ap.add_argument("--corpus", nargs="+", default=["sample", "stdlib"], choices=["sample", "stdlib"])
    ap.add_argument("--set", action="append", default=[], metavar="dedup.FIELD=VALUE")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    args = ap.parse_args()
    overrides = {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key.removeprefix("dedup.")] = yaml.safe_load(value)
    threshold = float(overrides.get("threshold", 0.8))
    ngram = int(overrides.get("ngram", 5))

    from tokenmill.spark import get_spark

    spark = get_spark("bench-dedup-quality")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-dedup-q-"))
    results = {}
    for corpus in args.corpus:
        docs = stdlib_docs() if corpus == "stdlib" else sample_docs(spark, work / corpus)
        t0 = time.time()
        sets = shingle_sets(docs, ngram)
        truth = all_pairs(sets, threshold)
        truth_s = time.time() - t0
        extra, clusters, wall = run_stage(spark, docs, work / corpus / "out", overrides)
        res = score(truth, sets, clusters, threshold)
        res.update({"documents": len(docs), "mb": round(sum(len(t.encode()) for _, t in docs) / 1e6, 2),
                    "truth_seconds": round(truth_s, 1), "stage_seconds": round(wall, 1),
                    "bands": extra["bands"], "rows": extra["rows"], "candidate_edges": extra["candidate_edges"],
                    "verified_edges": extra["verified_edges"], "rounds": extra["component_rounds"]})
        results[corpus] = res
        print(corpus, json.dumps(res), flush=True)
    print(json.dumps({"overrides": overrides, "results": results}, indent=1))


if __name__ == "__main__":
    main()
