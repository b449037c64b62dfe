"""Pack token streams into sequences of exactly ``seq_len`` tokens.

Documents are hashed (by id) into a fixed number of packing groups; each
group is sorted by id and its documents' tokens (each ending with EOS) are
concatenated and cut into ``seq_len`` windows, with no padding, so long
documents span several sequences. The group's leftover tail (fewer than
``seq_len`` tokens) is dropped and counted. Because groups are fixed by the
config, the sequences do not depend on Spark's partitioning or input order.

Sequence ids are ``group << 32 | index in group``: unique and stable.
A sequence's ``source`` is the source of the document holding its first token.

The packer emits, besides the sequences, one stats row per group (a JSON
``stats`` column, null on sequence rows; no accumulator, so it runs on Spark
Connect too) so the stage can account for every token and document:

    tokens == sequences * seq_len + tokens_dropped
    docs   == docs_complete + docs_partial + docs_tail

``docs_partial``: the one document (or none) cut by the dropped tail;
``docs_tail``: documents entirely inside the dropped tail.
"""

from __future__ import annotations

import json
from collections import deque

import numpy as np
import pyarrow as pa

PACKED_SCHEMA = "seq_id long, tokens array<int>, source string"
# What the packer yields: sequences (stats null) and one row per group (only stats set).
PACKED_WITH_STATS_SCHEMA = PACKED_SCHEMA + ", stats string"
GROUP_BITS = 32


def seq_id(group: int, index: int) -> int:
    return (group << GROUP_BITS) | index


class GroupPacker:
    """Packs one group's documents, fed in order, batch by batch."""

    def __init__(self, group: int, seq_len: int):
        self.group = group
        self.seq_len = seq_len
        self.buf: list[np.ndarray] = []  # tokens from position n_seq * seq_len on
        self.pos = 0  # tokens seen in this group
        self.n_seq = 0
        self.docs = 0
        self.last_source: str | None = None
        self.open_docs: deque[tuple[int, int]] = deque()  # (start, end) of docs not yet complete

    def add(self, values: np.ndarray, lengths: np.ndarray, sources: list[str]):
        """Append documents (flat token values + per-doc lengths); return full sequences."""
        L = self.seq_len
        ends = self.pos + np.cumsum(lengths)
        starts = ends - lengths
        self.buf.append(values)
        total = self.pos + len(values)
        n_full = total // L
        out = []
        if n_full > self.n_seq:
            data = np.concatenate(self.buf)
            base = self.n_seq * L
            for k in range(self.n_seq, n_full):
                i = int(np.searchsorted(starts, k * L, side="right")) - 1
                source = sources[i] if i >= 0 else self.last_source
                out.append((seq_id(self.group, k), data[k * L - base:(k + 1) * L - base], source))
            self.buf = [data[(n_full * L) - base:]]
            self.n_seq = n_full
        self.pos = total
        self.docs += len(lengths)
        if len(sources):
            self.last_source = sources[-1]
        boundary = self.n_seq * L
        self.open_docs.extend(zip(starts.tolist(), ends.tolist()))
        while self.open_docs and self.open_docs[0][1] <= boundary:
            self.open_docs.popleft()
        return out

    def stats(self) -> dict:
        boundary = self.n_seq * self.seq_len
        partial = sum(1 for start, _ in self.open_docs if start < boundary)
        return {
            "group": self.group,
            "docs": self.docs,
            "docs_complete": self.docs - len(self.open_docs),
            "docs_partial": partial,
            "docs_tail": len(self.open_docs) - partial,
            "tokens": self.pos,
            "sequences": self.n_seq,
            "tokens_dropped": self.pos - boundary,
        }


def _seq_batch(seqs, seq_len: int) -> pa.RecordBatch:
    n = len(seqs)
    values = np.concatenate([s[1] for s in seqs]).astype(np.int32, copy=False) if n else np.empty(0, np.int32)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * seq_len)
    return pa.RecordBatch.from_arrays(
        [
            pa.array([s[0] for s in seqs], pa.int64()),
            pa.ListArray.from_arrays(offsets, pa.array(values)),
            pa.array([s[2] for s in seqs], pa.string()),
            pa.nulls(n, pa.string()),
        ],
        names=["seq_id", "tokens", "source", "stats"],
    )


def _stats_batch(stats: dict) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.nulls(1, pa.int64()), pa.nulls(1, pa.list_(pa.int32())), pa.nulls(1, pa.string()),
         pa.array([json.dumps(stats, sort_keys=True)], pa.string())],
        names=["seq_id", "tokens", "source", "stats"],
    )


def make_packer(seq_len: int):
    """A mapInArrow function over partitions sorted by (group, id).

    Yields sequence batches and, as each group finishes, one stats row for it.
    """

    def pack(batches):
        packer: GroupPacker | None = None
        finished: list[dict] = []  # stats of groups done in this batch, sent after its sequences
        for batch in batches:
            groups = batch.column("group").to_numpy()
            tokens = batch.column("tokens")
            offsets = tokens.offsets.to_numpy()
            values = tokens.values.to_numpy(zero_copy_only=False)
            sources = batch.column("source").to_pylist()
            seqs = []
            # Runs of equal group within the batch.
            cuts = np.flatnonzero(np.diff(groups)) + 1
            for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(groups)]):
                g = int(groups[lo])
                if packer is None or packer.group != g:
                    if packer is not None:
                        finished.append(packer.stats())
                    packer = GroupPacker(g, seq_len)
                seqs.extend(packer.add(values[offsets[lo]:offsets[hi]], np.diff(offsets[lo:hi + 1]),
                                       sources[lo:hi]))
            if seqs:
                yield _seq_batch(seqs, seq_len)
            while finished:
                yield _stats_batch(finished.pop(0))
        if packer is not None:
            yield _stats_batch(packer.stats())

    return pack


def assign_groups(df, groups: int):
    """Add ``group``: a stable hash of the document id into [0, groups)."""
    from pyspark.sql import functions as F

    return df.withColumn("group", F.pmod(F.xxhash64(F.col("id")), F.lit(groups)).cast("int"))


_M32 = 0xFFFFFFFF


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def _mix(h1: int, k1: int) -> int:
    k1 = _rotl32((k1 * 0xCC9E2D51) & _M32, 15) * 0x1B873593 & _M32
    return (_rotl32(h1 ^ k1, 13) * 5 + 0xE6546B64) & _M32


def spark_hash_long(value: int, seed: int = 42) -> int:
    """Spark's ``hash(value)`` of a long (Murmur3 x86_32, seed 42), as a signed int."""
    v = value & 0xFFFFFFFFFFFFFFFF
    h = _mix(_mix(seed, v & _M32), v >> 32) ^ 8
    h = (h ^ (h >> 16)) * 0x85EBCA6B & _M32
    h = (h ^ (h >> 13)) * 0xC2B2AE35 & _M32
    h ^= h >> 16
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_labels(n: int) -> list[int]:
    """For each bucket b < n, a long whose Spark hash partition among n is b.

    ``repartition(n, label)`` then puts each bucket in its own partition: exact
    placement without the sampling pass (a full scan) that range partitioning
    needs. Computed on the driver (Spark's Murmur3, so no Spark job); were
    Spark's hash to change, buckets could share a partition: the consumers
    (packer, MDS writer) handle that, only parallelism would suffer (a test
    checks the placement).
    """
    found: dict[int, int] = {}
    label = 0
    while len(found) < n and label < 1024 * n:
        found.setdefault(spark_hash_long(label) % n, label)  # Python % is Spark's pmod here
        label += 1
    return [found.get(b, b) for b in range(n)]


def place_buckets(df, bucket, n: int):
    """Repartition into n partitions with bucket b (an int column in [0, n)) in partition b.

    Unlike ``repartitionByRange`` this needs no sampling pass, which would run
    the whole upstream plan (e.g. the tokenizer) one extra time.
    """
    from pyspark.sql import functions as F

    labels = F.array(*[F.lit(v).cast("long") for v in partition_labels(n)])
    return (df.withColumn("_label", F.element_at(labels, bucket + 1))
              .repartition(n, "_label").drop("_label"))


def tokenize_and_pack(docs, tokenizer_json: str, eos_id: int, bos_id: int | None, seq_len: int, groups: int):
    """(id, source, text) -> sequences and group stats (PACKED_WITH_STATS_SCHEMA), in one Python pass.

    Texts are grouped and sorted in the JVM first, so each batch crosses into
    Python once (text in, sequences out) instead of twice. Split the result
    with ``sequences_of`` and ``group_stats_of``.
    """
    from pyspark.sql import functions as F

    from tokenmill.tokenize.encode import make_encoder

    grouped = assign_groups(docs.select("id", "source", "text"), groups)
    ordered = place_buckets(grouped, F.col("group"), groups).sortWithinPartitions("group", "id")
    encode = make_encoder(tokenizer_json, eos_id, bos_id)
    pack = make_packer(seq_len)
    return ordered.select("group", "id", "source", "text").mapInArrow(
        lambda batches: pack(encode(batches)), PACKED_WITH_STATS_SCHEMA)


def sequences_of(packed):
    """The sequence rows (PACKED_SCHEMA) of a packer's output."""
    from pyspark.sql import functions as F

    return packed.where(F.col("stats").isNull()).drop("stats")


def group_stats_of(packed) -> list[dict]:
    """One stats dict per group. A group is packed whole by one task and its
    stats are deterministic, so a recomputed partition gives the same row."""
    from pyspark.sql import functions as F

    by_group: dict[int, dict] = {}
    for row in packed.where(F.col("stats").isNotNull()).select("stats").collect():
        stats = json.loads(row["stats"])
        by_group.setdefault(stats["group"], stats)
    return [by_group[g] for g in sorted(by_group)]


def total_stats(group_stats, seq_len: int) -> dict:
    """Sum per-group stats dicts and check the accounting identities."""
    keys = ("docs", "docs_complete", "docs_partial", "docs_tail", "tokens", "sequences", "tokens_dropped")
    totals = dict.fromkeys(keys, 0)
    for s in group_stats:
        for k in keys:
            totals[k] += s[k]
    totals["tokens_in_sequences"] = totals["sequences"] * seq_len
    if totals["tokens_in_sequences"] + totals["tokens_dropped"] != totals["tokens"]:
        raise AssertionError(f"token accounting broke: {totals}")
    if totals["docs_complete"] + totals["docs_partial"] + totals["docs_tail"] != totals["docs"]:
        raise AssertionError(f"document accounting broke: {totals}")
    return totals
