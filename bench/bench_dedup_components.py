"""Connected components at scale: rounds, time and driver memory vs graph size.

A synthetic graph generated inside Spark (nothing built on the driver):
``--nodes`` nodes in blocks of ``--block``; inside each block a path
(i, i+1) — the worst case for label propagation — plus ``--random``
random edges per node inside the block. The expected answer is known: one
component per block, labelled with the block's first node; the benchmark
checks it with a Spark aggregation.

Driver memory: the Python driver's peak RSS and the JVM heap in use after a
GC, before and after (in local mode the JVM also runs the executors, so its
heap is an upper bound for the driver's part).

    python -m bench.bench_dedup_components --nodes 5000000 --block 1000 --random 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time

from pyspark.sql import functions as F


def jvm_heap_mb(spark) -> float:
    rt = spark._jvm.java.lang.Runtime.getRuntime()
    spark._jvm.java.lang.System.gc()
    return round((rt.totalMemory() - rt.freeMemory()) / 1e6, 1)


def graph(spark, nodes: int, block: int, random_per_node: float):
    ids = spark.range(nodes)
    path = ids.where((F.col("id") + 1) % block != 0).where(F.col("id") + 1 < nodes).select(
        F.col("id").alias("src"), (F.col("id") + 1).alias("dst"))
    n_random = int(nodes * random_per_node)
    rnd = spark.range(n_random).select(
        (F.abs(F.xxhash64("id", F.lit(1))) % nodes).alias("src"),
        (F.abs(F.xxhash64("id", F.lit(2))) % block).alias("off"))
    rnd = rnd.select("src", F.least(F.lit(nodes - 1), F.floor(F.col("src") / block) * block + F.col("off"))
                     .cast("long").alias("dst"))
    return path.unionByName(rnd)


def main() -> None:
    ap = argparse.ArgumentParser(description="connected components scale benchmark")
    ap.add_argument("--nodes", type=int, default=5_000_000)
    ap.add_argument("--block", type=int, default=1000)
    ap.add_argument("--random", type=float, default=0.2, help="random in-block edges per node")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    from tokenmill.dedup.components import connected_components
    from tokenmill.spark import get_spark

    spark = get_spark("bench-dedup-components", cores=args.cores)
    spark.range(1).count()
    heap0 = jvm_heap_mb(spark)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    scratch = tempfile.mkdtemp(prefix="bench-cc-")
    edges_path = os.path.join(scratch, "edges")
    graph(spark, args.nodes, args.block, args.random).write.parquet(edges_path)
    edges = spark.read.parquet(edges_path)
    n_edges = edges.count()
    t = time.time()
    labels, rounds = connected_components(edges, max_rounds=60, checkpoint_dir=os.path.join(scratch, "cc"))
    labels.write.parquet(os.path.join(scratch, "labels"))
    seconds = time.time() - t
    out = spark.read.parquet(os.path.join(scratch, "labels"))
    wrong = out.where(F.col("label") != F.floor(F.col("node") / args.block) * args.block).count()
    components = out.select("label").distinct().count()
    result = {
        "nodes": args.nodes, "edges": n_edges, "block": args.block, "rounds": rounds, "seconds": round(seconds, 1),
        "components": components, "expected_components": -(-args.nodes // args.block), "wrong_labels": wrong,
        "driver_python_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3, 1),
        "driver_python_rss_before_mb": round(rss0, 1),
        "jvm_heap_used_mb_before": heap0, "jvm_heap_used_mb_after": jvm_heap_mb(spark),
        "cores": args.cores, "uptime": os.popen("uptime").read().strip(),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
