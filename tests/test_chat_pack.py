"""Bin-packing whole examples into padded windows: exact placement, accounting, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from tokenmill.chat.pack import (PackingStats, best_fit_decreasing, fill_window, pack_examples, pack_group,
                                 packing_stats)

TOKENIZED = "id string, source string, tokens array<int>, loss_mask array<tinyint>"


def test_best_fit_decreasing_places_each_item_in_the_tightest_bin():
    # capacity 10: 7 opens bin 0 (room 3), 6 opens bin 1 (room 4), 4 -> bin 1 (room 0),
    # 3 -> bin 0 (room 0), 3 opens bin 2 (room 7), 2 -> bin 2 (room 5)
    assert best_fit_decreasing([7, 6, 4, 3, 3, 2], 10) == [[0, 3], [1, 2], [4, 5]]
    # equal rooms: the lower bin index wins
    assert best_fit_decreasing([5, 5, 2, 2], 7) == [[0, 2], [1, 3]]
    assert best_fit_decreasing([10, 1], 10) == [[0], [1]]
    with pytest.raises(ValueError, match="an example of 11 tokens does not fit a window of 10"):
        best_fit_decreasing([11], 10)


def test_fill_window_pads_masks_and_numbers_the_examples():
    w = fill_window([(np.array([5, 6, 2]), np.array([0, 1, 1])), (np.array([7, 2]), np.array([0, 1]))], 7, 0)
    assert w.tokens.tolist() == [5, 6, 2, 7, 2, 0, 0]
    assert w.loss_mask.tolist() == [0, 1, 1, 0, 1, 0, 0]
    assert w.doc_ids.tolist() == [1, 1, 1, 2, 2, 0, 0]
    assert (w.n_tokens, w.n_targets) == (5, 3)


def test_pack_group_ids_and_sources():
    toks = [np.arange(4), np.arange(3), np.arange(2)]
    rows = pack_group(2, toks, [np.ones(4), np.ones(3), np.ones(2)], ["a", "b", "c"], seq_len=5, pad_id=9)
    assert [(sid, n, src, w.tokens.tolist()) for sid, w, n, src in rows] == [
        ((2 << 32) + 0, 1, "a", [0, 1, 2, 3, 9]),
        ((2 << 32) + 1, 2, "b", [0, 1, 2, 0, 1]),
    ]


def _examples(n: int, seed: int = 0):
    """n examples with lengths 2..9, each ending in EOS (1), masks on the second half."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        length = int(rng.integers(2, 10))
        tokens = [int(t) for t in rng.integers(3, 100, length - 1)] + [1]
        mask = [0] * (length // 2) + [1] * (length - length // 2)
        rows.append((f"ex{i:03d}", f"src{i % 3}", tokens, mask))
    return rows


def _unpack(rows):
    """Windows -> {example tokens: example mask} by cutting at doc_ids."""
    out = {}
    for r in rows:
        docs = np.array(r.doc_ids)
        for d in range(1, r.n_examples + 1):
            at = np.flatnonzero(docs == d)
            assert (np.diff(at) == 1).all()  # one contiguous run: never split
            out[tuple(np.array(r.tokens)[at])] = list(np.array(r.loss_mask)[at])
        assert all(t == 0 for t in np.array(r.tokens)[docs == 0])  # pad id
        assert not np.array(r.loss_mask)[docs == 0].any()
    return out


def test_spark_packing_keeps_examples_whole_and_accounts_for_tokens(spark):
    rows = _examples(60)
    windows = pack_examples(spark.createDataFrame(rows, TOKENIZED), seq_len=16, pad_id=0, groups=3)
    got = windows.collect()
    assert _unpack(got) == {tuple(t): m for _, _, t, m in rows}
    assert all(len(r.tokens) == len(r.loss_mask) == len(r.doc_ids) == 16 for r in got)
    stats = packing_stats(windows, 16)
    n_tokens, n_targets = sum(len(t) for _, _, t, _ in rows), sum(sum(m) for _, _, _, m in rows)
    assert (stats.examples, stats.tokens, stats.targets) == (60, n_tokens, n_targets)
    assert stats.windows == len(got) and stats.pad_tokens == len(got) * 16 - n_tokens
    report = stats.report()
    assert report["one_per_window"] == {"target_share": round(n_targets / (60 * 16), 6),
                                        "token_share": round(n_tokens / (60 * 16), 6)}
    assert report["packed"] == {"target_share": round(n_targets / (len(got) * 16), 6),
                                "token_share": round(n_tokens / (len(got) * 16), 6)}
    assert report["packed"]["token_share"] > 0.9 and report["one_per_window"]["token_share"] < 0.4


def test_spark_packing_is_the_same_for_any_order_and_partitioning(spark):
    rows = _examples(80, seed=1)

    def packed_bytes(data, parts):
        df = spark.createDataFrame(data, TOKENIZED).repartition(parts)
        out = sorted(pack_examples(df, seq_len=20, pad_id=0, groups=4).collect(), key=lambda r: r.seq_id)
        return b"".join(np.array(r.tokens, np.int32).tobytes() + np.array(r.loss_mask, np.int8).tobytes()
                        + np.array(r.doc_ids, np.int32).tobytes() + np.int64(r.seq_id).tobytes() for r in out)

    assert packed_bytes(rows, 1) == packed_bytes(rows[::-1], 5)


def test_stats_of_nothing():
    assert PackingStats(0, 0, 0, 0, 8).report()["packed"] == {"target_share": 0.0, "token_share": 0.0}
