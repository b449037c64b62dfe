"""Bin-pack whole examples into seq_len windows, padded and masked, in Spark.

Examples are hashed by id into a fixed number of packing groups (as
``tokenize/pack.py`` does), so windows do not depend on Spark's partitioning
or the input order. Within a group, examples are sorted by length
(longest first, then id) and placed best-fit decreasing: each goes into the
open window with the least room that still holds it, else a new window. No
example is ever split; an example longer than seq_len is a bug upstream
(the mask step rejects or truncates those) and raises.

A window (seq_len tokens):

    tokens     the examples' ids back to back, then pad_id
    loss_mask  the examples' masks, then 0
    doc_ids    1, 2, ... per example in window order, 0 on padding: the
               trainer's document mask (attend only within equal doc_ids
               > 0) and position restarts (position = index within the run)

Every example ends with EOS (the mask step makes sure), so readers that
split at EOS see the same boundaries. A group is held in one task's memory
while it is packed: raise pack_groups for larger data.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass

import numpy as np

from tokenmill.tokenize.pack import assign_groups, place_buckets, seq_id

PACKED_SCHEMA = ("seq_id long, tokens array<int>, loss_mask array<tinyint>, doc_ids array<int>, "
                 "n_examples int, n_tokens int, n_targets int, source string")


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indexes of the items in each bin; items must be sorted longest first.

    Ties (bins with equal room) go to the lowest bin index, so the result is
    a function of the lengths alone.
    """
    bins: list[list[int]] = []
    rooms: list[int] = []  # distinct room values of open bins, ascending
    by_room: dict[int, list[int]] = {}  # room -> heap of bin indexes
    for item, n in enumerate(lengths):
        if n > capacity:
            raise ValueError(f"an example of {n} tokens does not fit a window of {capacity}")
        k = bisect.bisect_left(rooms, n)
        if k == len(rooms):
            b, room = len(bins), capacity
            bins.append([])
        else:
            room = rooms[k]
            b = heapq.heappop(by_room[room])
            if not by_room[room]:
                del by_room[room], rooms[k]
        bins[b].append(item)
        left = room - n
        if left > 0:
            if left not in by_room:
                by_room[left] = []
                bisect.insort(rooms, left)
            heapq.heappush(by_room[left], b)
    return bins


@dataclass(frozen=True)
class Window:
    tokens: np.ndarray  # (seq_len,) int32
    loss_mask: np.ndarray  # (seq_len,) int8
    doc_ids: np.ndarray  # (seq_len,) int32, 0 on padding
    n_tokens: int  # not padding
    n_targets: int


def fill_window(members, seq_len: int, pad_id: int) -> Window:
    """members: (tokens, mask) arrays of the window's examples, in order."""
    tokens = np.full(seq_len, pad_id, np.int32)
    mask = np.zeros(seq_len, np.int8)
    docs = np.zeros(seq_len, np.int32)
    pos = 0
    for doc, (t, m) in enumerate(members, start=1):
        tokens[pos:pos + len(t)], mask[pos:pos + len(t)], docs[pos:pos + len(t)] = t, m, doc
        pos += len(t)
    return Window(tokens, mask, docs, pos, int(mask.sum()))


def _windows_batch(rows: list[tuple]):
    import pyarrow as pa

    def lists(arrays, kind):
        flat = np.concatenate(arrays) if arrays else np.empty(0, kind.to_pandas_dtype())
        offsets = np.r_[0, np.cumsum([len(a) for a in arrays])].astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, kind))

    ws = [r[1] for r in rows]
    return pa.RecordBatch.from_arrays([
        pa.array([r[0] for r in rows], pa.int64()),
        lists([w.tokens for w in ws], pa.int32()), lists([w.loss_mask for w in ws], pa.int8()),
        lists([w.doc_ids for w in ws], pa.int32()),
        pa.array([r[2] for r in rows], pa.int32()), pa.array([w.n_tokens for w in ws], pa.int32()),
        pa.array([w.n_targets for w in ws], pa.int32()), pa.array([r[3] for r in rows], pa.string()),
    ], names=["seq_id", "tokens", "loss_mask", "doc_ids", "n_examples", "n_tokens", "n_targets", "source"])


def pack_group(group: int, tokens: list, masks: list, sources: list[str], seq_len: int, pad_id: int):
    """One group's examples (sorted longest first) -> rows (seq_id, Window, n_examples, source)."""
    bins = best_fit_decreasing([len(t) for t in tokens], seq_len)
    return [(seq_id(group, k), fill_window([(tokens[i], masks[i]) for i in items], seq_len, pad_id),
             len(items), sources[items[0]]) for k, items in enumerate(bins)]


def make_packer(seq_len: int, pad_id: int, batch_windows: int = 1024):
    """A mapInArrow function over partitions sorted by (group, length desc, id)."""

    def pack(batches):
        group, tokens, masks, sources = None, [], [], []

        def flush():
            rows = pack_group(group, tokens, masks, sources, seq_len, pad_id)
            for lo in range(0, len(rows), batch_windows):
                yield _windows_batch(rows[lo:lo + batch_windows])

        for batch in batches:
            groups = batch.column("group").to_pylist()
            tok = batch.column("tokens").to_pylist()
            msk = batch.column("loss_mask").to_pylist()
            src = batch.column("source").to_pylist()
            for i, g in enumerate(groups):
                if g != group:
                    if group is not None:
                        yield from flush()
                    group, tokens, masks, sources = g, [], [], []
                tokens.append(np.asarray(tok[i], np.int32))
                masks.append(np.asarray(msk[i], np.int8))
                sources.append(src[i])
        if group is not None:
            yield from flush()

    return pack


def pack_examples(examples, seq_len: int, pad_id: int, groups: int):
    """tokenized examples (id, source, tokens, loss_mask) -> windows (PACKED_SCHEMA)."""
    from pyspark.sql import functions as F

    grouped = assign_groups(examples.select("id", "source", "tokens", "loss_mask"), groups)
    placed = place_buckets(grouped, F.col("group"), groups)
    ordered = placed.sortWithinPartitions(F.col("group"), F.size("tokens").desc(), F.col("id"))
    return ordered.select("group", "tokens", "loss_mask", "source").mapInArrow(
        make_packer(seq_len, pad_id), PACKED_SCHEMA)


@dataclass(frozen=True)
class PackingStats:
    examples: int
    windows: int
    tokens: int  # example tokens (not padding)
    targets: int
    seq_len: int

    @property
    def pad_tokens(self) -> int:
        return self.windows * self.seq_len - self.tokens

    def shares(self, windows: int) -> dict:
        """Target and non-pad share of all tokens in ``windows`` windows."""
        total = max(1, windows * self.seq_len)
        return {"target_share": round(self.targets / total, 6), "token_share": round(self.tokens / total, 6)}

    def report(self) -> dict:
        """Packing efficiency, next to one example per window."""
        return {"examples": self.examples, "windows": self.windows, "tokens": self.tokens,
                "target_tokens": self.targets, "pad_tokens": self.pad_tokens,
                "packed": self.shares(self.windows), "one_per_window": self.shares(self.examples)}


def packing_stats(windows, seq_len: int) -> PackingStats:
    """Sum the per-window counts of packed windows (one Spark aggregate)."""
    from pyspark.sql import functions as F

    row = windows.agg(F.sum("n_examples"), F.count("*"), F.sum("n_tokens"), F.sum("n_targets")).first()
    return PackingStats(*(int(v or 0) for v in row), seq_len=seq_len)
