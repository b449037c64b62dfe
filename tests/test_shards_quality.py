"""The shuffle-quality figure and split sizes (no Spark)."""

from __future__ import annotations

import numpy as np

from tokenmill.shards.shuffle import max_share_deviation, val_count


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


def test_val_count():
    assert [val_count(n, 0.01) for n in (0, 1, 2, 150, 1000)] == [0, 0, 1, 2, 10]
    assert val_count(1000, 0.0) == 0
