"""The shuffle-quality figure and split sizes (no Spark)."""

from __future__ import annotations

import numpy as np

from tokenmill.shards.shuffle import max_share_deviation, neighbour_gap_ratio, val_count


def test_share_deviation_of_sorted_and_shuffled_orders():
    codes = np.repeat([0, 1], 5000)  # sorted by source: the worst case
    dev, worst = max_share_deviation(codes, 2, 1000)
    assert dev == 0.5 and worst == 0
    rng = np.random.default_rng(0)
    dev, _ = max_share_deviation(rng.permutation(codes), 2, 1000)
    assert 0.01 < dev < 0.08
    # Exact on a small case: global share of 0 is 1/2; the window [0, 0] has share 1.
    dev, _ = max_share_deviation(np.array([0, 0, 1, 1]), 2, 2)
    assert dev == 0.5
    assert max_share_deviation(np.array([0, 1, 1]), 2, 1000)[0] == 0.0  # one window: the whole


def test_neighbour_gap_ratio_needs_no_source_labels():
    n = 20_000
    ids = (np.arange(n, dtype=np.int64) // 100 << 32) | (np.arange(n) % 100)  # seq_ids: group << 32 | index
    assert neighbour_gap_ratio(ids) == 3 / (n + 1)  # input order: every neighbour one rank away
    assert neighbour_gap_ratio(ids[::-1]) == 3 / (n + 1)
    rng = np.random.default_rng(0)
    assert abs(neighbour_gap_ratio(rng.permutation(ids)) - 1.0) < 0.02
    # shuffled only inside blocks of 100: far from random
    blocks = np.concatenate([rng.permutation(ids[i:i + 100]) for i in range(0, n, 100)])
    assert neighbour_gap_ratio(blocks) < 0.02
    brute = np.mean([abs(a - b) for a, b in zip([2, 0, 3, 1], [0, 3, 1])])  # ranks of [30, 10, 40, 20]
    assert neighbour_gap_ratio(np.array([30, 10, 40, 20])) == brute / (5 / 3)
    assert neighbour_gap_ratio(np.array([7])) is None


def test_val_count():
    assert [val_count(n, 0.01) for n in (0, 1, 2, 150, 1000)] == [0, 0, 1, 2, 10]
    assert val_count(1000, 0.0) == 0


def test_place_buckets_gives_each_bucket_its_own_partition(spark):
    from pyspark.sql import functions as F

    from tokenmill.tokenize.pack import place_buckets

    df = spark.range(0, 700).withColumn("b", (F.col("id") % 7).cast("int"))
    placed = place_buckets(df, F.col("b"), 7)
    per_partition = placed.rdd.mapPartitions(lambda rows: [sorted({r.b for r in rows})]).collect()
    assert per_partition == [[b] for b in range(7)]
