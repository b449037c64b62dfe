"""Shuffle + MDS write throughput of the shards stage, by cores and data size.

    python -m bench.bench_shards --cores 1,2 --sequences 4000,16000

For each (cores, sequences) a fresh process builds a ``tables/sequences`` of
seq_len 2048 uint16 tokens (skewed ids so zstd has something to do; not
timed), then times the shards stage alone: seeded global shuffle, train/val
split, one MDSWriter per partition (zstd), merged indexes, staging swap.
MB/s counts uncompressed token bytes (sequences x 2048 x 2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEQ_LEN = 2048


def one(cores: int, n: int, partitions: int) -> dict:
    os.environ["TOKENMILL_SPARK_CORES"] = str(cores)
    os.environ.setdefault("TOKENMILL_PROGRESS_S", "0")
    from pyspark.sql import functions as F

    from tokenmill import tables
    from tokenmill.config import RunConfig, from_dict
    from tokenmill.manifest import Manifest, StageRecord
    from tokenmill.pipeline import run_stages
    from tokenmill.spark import get_spark
    from tokenmill.config.tokenize import TokenizeConfig
    from tokenmill.hashing import file_sha256
    from tokenmill.tokenize.tokenizer import train_bpe

    spark = get_spark("bench-shards", cores=cores)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out"
        tok = train_bpe(["a small text to train on " * 50], TokenizeConfig(vocab_size=300))
        out.mkdir(parents=True)
        tok.save(str(out / "tokenizer.json"))
        tokens = F.expr(f"transform(sequence(1, {SEQ_LEN}), x -> "
                        "cast(pow(pmod(hash(id, x), 1000003) / 1000003.0, 3) * 8192 as int))")
        seqs = (spark.range(n, numPartitions=cores * 2)
                .select(F.col("id").alias("seq_id"), tokens.alias("tokens"),
                        F.concat(F.lit("s"), (F.col("id") % 3).cast("string")).alias("source")))
        tables.write(seqs, str(out / "tables" / "sequences"))
        m = Manifest.load(out)
        m.record(StageRecord("tokenize", rows_in=n, rows_out=n, extra={
            "tokenizer_sha256": file_sha256(out / "tokenizer.json"), "vocab_size": 8192, "dtype": "uint16",
            "eos_id": 0, "bos_id": None, "seq_len": SEQ_LEN, "tokens": n * SEQ_LEN, "tokens_dropped": 0}))
        cfg = from_dict(RunConfig, {"output": str(out), "shards": {"partitions": partitions}})
        t = time.perf_counter()
        manifest = run_stages(spark, cfg, ["shards"], force=True)
        wall = time.perf_counter() - t
        x = manifest.stages["shards"].extra
        mb = n * SEQ_LEN * 2 / 1e6
        return {"cores": cores, "sequences": n, "token_mb": round(mb, 1), "partitions": partitions,
                "wall_s": round(wall, 2), "mb_s": round(mb / wall, 2), "tokens_s": round(n * SEQ_LEN / wall),
                "zstd_mb": round(sum(x["bytes"].values()) / 1e6, 1),
                "shards": sum(s["shards"] for s in x["splits"].values()),
                "load": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cores", default="1,2")
    ap.add_argument("--sequences", default="4000,16000")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(int(args.cores), int(args.sequences), args.partitions)), flush=True)
        return
    for n in args.sequences.split(","):
        for cores in args.cores.split(","):
            done = subprocess.run([sys.executable, "-m", "bench.bench_shards", "--one", "--cores", cores,
                                   "--sequences", n, "--partitions", str(args.partitions)],
                                  capture_output=True, text=True)
            lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
            print(lines[-1] if lines else done.stderr[-2000:], flush=True)


if __name__ == "__main__":
    main()
