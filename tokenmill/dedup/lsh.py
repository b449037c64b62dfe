"""Signatures, LSH band buckets and candidate edges, as DataFrame functions.

* ``with_signatures``: one ``mapInArrow`` pass computes every document's
  MinHash signature per Arrow batch (see ``minhash``).
* ``bucket_edges``: each (band, bucket) links its members to the bucket's
  smallest id (a star), so a bucket of k documents gives k-1 edges, never
  k*(k-1)/2.
* ``pair_jaccard``: each candidate edge with the estimated Jaccard of its two
  signatures (datasketch ``MinHash.jaccard``), for the verify threshold.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from tokenmill.dedup import minhash
from tokenmill.config.dedup import DedupConfig


def lsh_params(cfg: DedupConfig) -> tuple[int, int]:
    """(bands, rows): the config's, or datasketch's optimum for the threshold."""
    if cfg.bands is not None:
        return cfg.bands, cfg.rows
    from datasketch.lsh import _optimal_param

    fp, fn = cfg.lsh_weights
    return _optimal_param(cfg.threshold, cfg.num_perm, fp, fn)


def s_curve(bands: int, rows: int, points=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)) -> dict:
    """P(two documents share a bucket | Jaccard j) = 1 - (1 - j**rows)**bands."""
    return {f"{j:.2f}": round(1 - (1 - j ** rows) ** bands, 4) for j in points}


SIGNATURE_FIELDS = [
    T.StructField("id", T.StringType()),
    T.StructField("n_shingles", T.IntegerType()),
    T.StructField("sig", T.BinaryType()),
]


def with_signatures(df: DataFrame, cfg: DedupConfig, keep: tuple[str, ...] = ()) -> DataFrame:
    """``df`` (id, text, *keep) -> (id, *keep, n_shingles, sig), sig = num_perm little-endian uint32."""
    num_perm, seed, n, kind, lower = cfg.num_perm, cfg.seed, cfg.ngram, cfg.shingle, cfg.lowercase
    passed = ["id", *keep]
    schema = T.StructType([df.schema[c] for c in passed] + SIGNATURE_FIELDS[1:])

    def batches(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in it:
            sig, counts = minhash.signatures(batch.column("text"), num_perm, seed, n, kind, lower)
            yield pa.RecordBatch.from_arrays(
                [batch.column(c) for c in passed] + [pa.array(counts, pa.int32()), _binary_rows(sig)],
                names=passed + ["n_shingles", "sig"],
            )

    return df.select("text", *passed).mapInArrow(batches, schema)


def _binary_rows(sig: np.ndarray) -> pa.Array:
    """Rows of a uint32 matrix as fixed-width binary values, zero-copy."""
    width = sig.shape[1] * 4
    data = pa.py_buffer(np.ascontiguousarray(sig, dtype="<u4").tobytes())
    offsets = pa.py_buffer((np.arange(len(sig) + 1, dtype=np.int32) * width).tobytes())
    return pa.Array.from_buffers(pa.binary(), len(sig), [None, offsets, data])


def sig_matrix(column: pa.Array, num_perm: int) -> np.ndarray:
    """Binary signature column -> (rows, num_perm) uint32 (all values have the same width)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    data, _ = minhash._buffers(column)
    return data.view("<u4").reshape(len(column), num_perm)


def band_buckets(sigs: DataFrame, cfg: DedupConfig, bands: int, rows: int) -> DataFrame:
    """(id, sig) -> (band, bucket, id): one row per document and band."""
    num_perm = cfg.num_perm
    schema = T.StructType([T.StructField("band", T.IntegerType()), T.StructField("bucket", T.LongType()),
                           T.StructField("id", T.StringType())])

    def batches(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in it:
            if batch.num_rows == 0:
                continue
            keys = minhash.band_keys(sig_matrix(batch.column("sig"), num_perm), bands, rows)
            ids = batch.column("id")
            yield pa.RecordBatch.from_arrays(
                [pa.array(np.tile(np.arange(bands, dtype=np.int32), batch.num_rows)),
                 pa.array(keys.reshape(-1)),
                 ids.take(pa.array(np.repeat(np.arange(batch.num_rows), bands)))],
                names=["band", "bucket", "id"],
            )

    return sigs.select("id", "sig").mapInArrow(batches, schema)


def bucket_edges(buckets: DataFrame) -> DataFrame:
    """(band, bucket, id) -> distinct edges (src, dst), dst the smallest id of a shared bucket."""
    roots = buckets.groupBy("band", "bucket").agg(F.min("id").alias("root"))
    return (buckets.join(roots, ["band", "bucket"])
            .where(F.col("id") != F.col("root"))
            .select(F.col("id").alias("src"), F.col("root").alias("dst"))
            .distinct())


def pair_jaccard(pairs: DataFrame, sigs: DataFrame, cfg: DedupConfig, a: str = "src", b: str = "dst") -> DataFrame:
    """Add column ``jaccard``: the estimated Jaccard of ``a``'s and ``b``'s signatures."""
    left = sigs.select(F.col("id").alias(a), F.col("sig").alias("_sig_a"))
    right = sigs.select(F.col("id").alias(b), F.col("sig").alias("_sig_b"))
    joined = pairs.join(left, a).join(right, b)
    num_perm = cfg.num_perm
    out_schema = T.StructType([f for f in joined.schema.fields if f.name not in ("_sig_a", "_sig_b")]
                              + [T.StructField("jaccard", T.DoubleType())])
    keep = [f.name for f in out_schema.fields if f.name != "jaccard"]

    def batches(it: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in it:
            if batch.num_rows == 0:
                continue
            j = minhash.estimated_jaccard(sig_matrix(batch.column("_sig_a"), num_perm),
                                          sig_matrix(batch.column("_sig_b"), num_perm))
            yield pa.RecordBatch.from_arrays([batch.column(c) for c in keep] + [pa.array(j, pa.float64())],
                                             names=keep + ["jaccard"])

    return joined.mapInArrow(batches, out_schema)

