"""Pack token streams into sequences of exactly ``seq_len`` tokens.

Documents are hashed (by id) into a fixed number of packing groups; each
group is sorted by id and its documents' tokens (each ending with EOS) are
concatenated and cut into ``seq_len`` windows, with no padding, so long
documents span several sequences. The group's leftover tail (fewer than
``seq_len`` tokens) is dropped and counted. Because groups are fixed by the
config, the sequences do not depend on Spark's partitioning or input order.

Sequence ids are ``group << 32 | index in group``: unique and stable.
A sequence's ``source`` is the source of the document holding its first token.

The packer emits, besides the sequences, one stats row per group (``stat``
holds JSON) so the stage can account for every token and document:

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

PACKED_SCHEMA = "seq_id long, tokens array<int>, source string, stat string"
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
        names=["seq_id", "tokens", "source", "stat"],
    )


def _stat_batch(stats: list[dict]) -> pa.RecordBatch:
    n = len(stats)
    return pa.RecordBatch.from_arrays(
        [
            pa.nulls(n, pa.int64()),
            pa.nulls(n, pa.list_(pa.int32())),
            pa.nulls(n, pa.string()),
            pa.array([json.dumps(s, sort_keys=True) for s in stats], pa.string()),
        ],
        names=["seq_id", "tokens", "source", "stat"],
    )


def make_packer(seq_len: int):
    """A mapInArrow function over partitions sorted by (group, id)."""

    def pack(batches):
        packer: GroupPacker | None = None
        for batch in batches:
            groups = batch.column("group").to_numpy()
            tokens = batch.column("tokens")
            offsets = tokens.offsets.to_numpy()
            values = tokens.values.to_numpy(zero_copy_only=False)
            sources = batch.column("source").to_pylist()
            seqs, stats = [], []
            # Runs of equal group within the batch.
            cuts = np.flatnonzero(np.diff(groups)) + 1
            for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(groups)]):
                g = int(groups[lo])
                if packer is None or packer.group != g:
                    if packer is not None:
                        stats.append(packer.stats())
                    packer = GroupPacker(g, seq_len)
                seqs.extend(packer.add(values[offsets[lo]:offsets[hi]], np.diff(offsets[lo:hi + 1]),
                                       sources[lo:hi]))
            if seqs:
                yield _seq_batch(seqs, seq_len)
            if stats:
                yield _stat_batch(stats)
        if packer is not None:
            yield _stat_batch([packer.stats()])

    return pack


def assign_groups(df, groups: int):
    """Add ``group``: a stable hash of the document id into [0, groups)."""
    from pyspark.sql import functions as F

    return df.withColumn("group", F.pmod(F.xxhash64(F.col("id")), F.lit(groups)).cast("int"))


def partition_labels(spark, n: int) -> list[int]:
    """For each bucket b < n, a long whose Spark hash partition among n is b.

    ``repartition(n, label)`` then puts each bucket in its own partition: exact
    placement without the sampling pass (a full scan) that range partitioning
    needs. Were Spark's hash to change, buckets could share a partition: the
    consumers (packer, MDS writer) handle that; only parallelism would suffer.
    """
    from pyspark.sql import functions as F

    rows = (spark.range(0, 64 * n).select("id", F.expr(f"pmod(hash(id), {n})").alias("p"))
            .groupBy("p").agg(F.min("id").alias("id")).collect())
    found = {r.p: r.id for r in rows}
    return [found.get(b, b) for b in range(n)]


def place_buckets(df, bucket, n: int):
    """Repartition into n partitions with bucket b (an int column in [0, n)) in partition b.

    Unlike ``repartitionByRange`` this needs no sampling pass, which would run
    the whole upstream plan (e.g. the tokenizer) one extra time.
    """
    from pyspark.sql import functions as F

    labels = F.array(*[F.lit(v).cast("long") for v in partition_labels(df.sparkSession, n)])
    return (df.withColumn("_label", F.element_at(labels, bucket + 1))
              .repartition(n, "_label").drop("_label"))


def tokenize_and_pack(docs, tokenizer_json: str, eos_id: int, bos_id: int | None, seq_len: int, groups: int):
    """(id, source, text) -> packed rows (seq_id, tokens, source, stat), in one Python pass.

    Texts are grouped and sorted in the JVM first, so each batch crosses into
    Python once (text in, sequences out) instead of twice. Rows with ``stat``
    set are per-group statistics; the others are sequences.
    """
    from pyspark.sql import functions as F

    from tokenmill.tokenize.encode import make_encoder

    grouped = assign_groups(docs.select("id", "source", "text"), groups)
    ordered = place_buckets(grouped, F.col("group"), groups).sortWithinPartitions("group", "id")
    encode = make_encoder(tokenizer_json, eos_id, bos_id)
    pack = make_packer(seq_len)
    return ordered.select("group", "id", "source", "text").mapInArrow(
        lambda batches: pack(encode(batches)), PACKED_SCHEMA)


def split_packed(packed):
    """(sequences DataFrame, stats DataFrame) from the packer's output."""
    from pyspark.sql import functions as F

    sequences = packed.where(F.col("stat").isNull()).select("seq_id", "tokens", "source")
    stats = packed.where(F.col("stat").isNotNull()).select("stat")
    return sequences, stats


def total_stats(stat_rows: list[str], seq_len: int) -> dict:
    """Sum per-group stats and check the accounting identities."""
    keys = ("docs", "docs_complete", "docs_partial", "docs_tail", "tokens", "sequences", "tokens_dropped")
    totals = dict.fromkeys(keys, 0)
    for row in stat_rows:
        s = json.loads(row)
        for k in keys:
            totals[k] += s[k]
    totals["tokens_in_sequences"] = totals["sequences"] * seq_len
    if totals["tokens_in_sequences"] + totals["tokens_dropped"] != totals["tokens"]:
        raise AssertionError(f"token accounting broke: {totals}")
    if totals["docs_complete"] + totals["docs_partial"] + totals["docs_tail"] != totals["docs"]:
        raise AssertionError(f"document accounting broke: {totals}")
    return totals
