"""Seeded global shuffle and train/val split of packed sequences.

Every sequence gets ``key = xxhash64(seed, seq_id)``; the output order is key
order, so it depends only on the seed and the set of sequences — never on
the input's order or partitioning. Writer partitions are fixed slices of the
64-bit key range (not sampled bounds), so the same data and config always
give the same files. The val split takes the sequences with the smallest
``xxhash64(seed, "val", seq_id)``: a seeded sample independent of the order.
"""

from __future__ import annotations

import math

import numpy as np

from tokenmill.shards.dataset_info import SPLITS as SPLITS  # the splits dataset.json lists
from tokenmill.tokenize.pack import place_buckets


def add_keys(df, seed: int):
    from pyspark.sql import functions as F

    return (df.withColumn("key", F.xxhash64(F.lit(seed), F.col("seq_id")))
              .withColumn("split_key", F.xxhash64(F.lit(seed), F.lit("val"), F.col("seq_id"))))


def val_count(n: int, fraction: float) -> int:
    """At least one val sequence when there are two or more and fraction > 0."""
    if fraction <= 0 or n < 2:
        return 0
    return min(n - 1, max(1, round(n * fraction)))


def assign_split(keyed, n_val: int):
    """Add ``split``: 'val' for the n_val smallest split keys, else 'train'."""
    from pyspark.sql import functions as F

    if n_val == 0:
        return keyed.withColumn("split", F.lit("train"))
    threshold = (keyed.select("split_key").orderBy("split_key").limit(n_val)
                 .agg(F.max("split_key")).first()[0])
    return keyed.withColumn("split", F.when(F.col("split_key") <= F.lit(threshold), "val").otherwise("train"))


def assign_parts(df, parts: dict[str, int]):
    """Add ``part``: the slice of the key range, per split, in key order."""
    from pyspark.sql import functions as F

    unit = F.col("key").cast("double") + F.lit(2.0**63)  # [0, 2^64), monotone in key
    n = F.when(F.col("split") == "val", F.lit(parts["val"])).otherwise(F.lit(parts["train"]))
    part = F.least(F.floor(unit / F.lit(2.0**64) * n).cast("int"), n - 1)
    return df.withColumn("part", part)


def auto_parts(n_seqs: int, bytes_per_seq: int, default_parallelism: int, target_bytes: int = 128 << 20) -> int:
    if n_seqs == 0:
        return 1
    wanted = max(default_parallelism, math.ceil(n_seqs * bytes_per_seq / target_bytes))
    return max(1, min(wanted, n_seqs))


def shuffle(df, seed: int, val_fraction: float, train_parts: int, val_parts: int, n: int):
    """(seq_id, tokens, source) -> rows clustered by (split, part), in key order within."""
    from pyspark.sql import functions as F

    keyed = add_keys(df, seed)
    split = assign_split(keyed, val_count(n, val_fraction))
    parted = assign_parts(split, {"train": train_parts, "val": val_parts})
    bucket = F.when(F.col("split") == "val", F.col("part") + train_parts).otherwise(F.col("part"))
    placed = place_buckets(parted, bucket, train_parts + val_parts)
    return placed.sortWithinPartitions("split", "part", "key")


def max_share_deviation(codes: np.ndarray, n_sources: int, window: int) -> tuple[float, int | None]:
    """Largest |share of a source in a window - its global share| over all windows.

    ``codes``: the source code of each output sequence, in output order. Every
    window of ``window`` consecutive sequences is checked (a shorter output is
    one window). Returns (deviation, code of the worst source).
    """
    n = len(codes)
    if n == 0:
        return 0.0, None
    w = min(window, n)
    worst, worst_code = 0.0, None
    for code in range(n_sources):
        hits = np.concatenate([[0], np.cumsum(codes == code, dtype=np.int64)])
        share = hits[-1] / n
        if hits[-1] == 0:
            continue
        in_window = (hits[w:] - hits[:-w]) / w
        dev = float(np.max(np.abs(in_window - share)))
        if dev > worst:
            worst, worst_code = dev, code
    return worst, worst_code


def neighbour_gap_ratio(ids: np.ndarray) -> float | None:
    """How far apart in input order sequences stored next to each other are, against a random order.

    ``ids``: each output sequence's seq_id, in output order (seq_ids grow in
    input order). The mean distance in input-order rank between storage
    neighbours, divided by its expectation for a uniformly random order,
    (n + 1) / 3: about 1.0 for a good shuffle, 3 / (n + 1) (near 0) for the
    input order. Needs no source labels, so it means something for a corpus
    from one source. None for fewer than two sequences.
    """
    n = len(ids)
    if n < 2:
        return None
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(ids, kind="stable")] = np.arange(n)
    return float(np.abs(np.diff(ranks)).mean() / ((n + 1) / 3))

