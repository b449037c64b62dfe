"""The clusters phase on the driver, for a batch small enough to collect.

``clusters.assign`` finds exact groups, LSH candidate edges, verified edges,
components and keepers in a few dozen Spark jobs. For a batch of up to a few
hundred thousand documents, scheduling those jobs costs more than the work
(10 s of the 34 s dedup stage on 300 MB of source code). ``assign`` here
collects the signatures once and applies the same rules with numpy; the
tests compare its tables with the Spark path's. What makes them agree:

* documents are numbered in id order, and Python orders strings by code
  point, as Spark orders UTF-8 bytes: "the smallest id" is the same document;
* the keep key's fields come from Spark (``keep.key_values``) and are
  compared the way Spark compares doubles (``keep.sortable``);
* band keys, the estimated Jaccard and the verify threshold use the same
  ``minhash`` functions as the Spark UDFs.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from tokenmill.dedup import components, keep, minhash
from tokenmill.dedup.clusters import ClusterStats
from tokenmill.config.dedup import DedupConfig
from tokenmill.dedup.lsh import sig_matrix

ASSIGNED_SCHEMA = T.StructType([
    T.StructField("id", T.StringType()),
    T.StructField("source", T.StringType()),
    T.StructField("cluster_id", T.StringType()),
    T.StructField("kept", T.BooleanType()),
    T.StructField("kind", T.StringType()),
    T.StructField("cluster_size", T.LongType(), nullable=False),
    T.StructField("jaccard", T.DoubleType()),
])


def assign(docs: DataFrame, cfg: DedupConfig, bands: int, rows: int) -> tuple[DataFrame, ClusterStats]:
    """Like ``clusters.assign``: (id, source, cluster_id, kept, kind, cluster_size, jaccard) per document."""
    fields = keep.key_values(cfg)
    table = docs.select("id", "source", "exact_key", "n_shingles", "sig", *fields).toArrow()
    ids = table.column("id").to_pylist()
    table = table.take(pa.array(sorted(range(len(ids)), key=ids.__getitem__), pa.int64()))
    n = table.num_rows
    stats = ClusterStats(on_driver=True, clusters_on_driver=True)
    sig = sig_matrix(table.column("sig"), cfg.num_perm) if n else np.zeros((0, cfg.num_perm), np.uint32)
    rank = keep_rank([table.column(f"k{i}").to_pylist() for i in range(len(fields))], n)
    exact_code = pc.dictionary_encode(table.column("exact_key")).combine_chunks().indices.to_numpy()
    everyone = np.arange(n)
    rep = best_in_group(exact_code, rank, everyone) if cfg.exact else everyone
    keeper_of = everyone.copy()  # a representative's keeper: itself unless near a better one
    if cfg.near:
        n_shingles = table.column("n_shingles").to_numpy()
        banded = np.flatnonzero((rep == everyone) & (n_shingles > 0))
        src, dst = candidate_edges(sig, banded, bands, rows, n)
        stats.candidate_edges = len(src)
        if cfg.verify == "estimated":
            passed = minhash.estimated_jaccard(sig[src], sig[dst]) >= cfg.min_jaccard - 1e-9
            src, dst = src[passed], dst[passed]
        stats.verified_edges = len(src)
        labels = components.union_find(zip(src.tolist(), dst.tolist()))
        if labels:
            nodes = np.fromiter(labels, np.int64, len(labels))
            label = np.fromiter(labels.values(), np.int64, len(labels))
            keeper_of[nodes] = best_in_group(label, rank, nodes)
    keeper = keeper_of[rep]
    out = _assigned(table, keeper, exact_code, sig)
    return docs.sparkSession.createDataFrame(out, ASSIGNED_SCHEMA), stats


def keep_rank(fields: list[list[float]], n: int) -> np.ndarray:
    """Each document's place in the keep order (0 = best): key fields, then id (= index)."""
    def key(i):
        return tuple(keep.sortable(f[i]) for f in fields), i

    rank = np.empty(n, np.int64)
    rank[sorted(range(n), key=key)] = np.arange(n)
    return rank


def best_in_group(group: np.ndarray, rank: np.ndarray, members: np.ndarray) -> np.ndarray:
    """For each member (a document index, ``group`` aligned with it), its group's best member."""
    if len(members) == 0:
        return members.copy()
    order = np.lexsort((rank[members], group))
    first = np.ones(len(order), dtype=bool)
    first[1:] = group[order][1:] != group[order][:-1]
    best = members[order][first][np.cumsum(first) - 1]
    out = np.empty(len(members), np.int64)
    out[order] = best
    return out


def candidate_edges(sig: np.ndarray, banded: np.ndarray, bands: int, rows: int,
                    n: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (src, dst): each document of a shared (band, bucket) to the bucket's smallest id."""
    if len(banded) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = minhash.band_keys(sig[banded], bands, rows)
    pairs = []
    for band in range(bands):
        order = np.lexsort((banded, keys[:, band]))  # by bucket, then id
        bucket, member = keys[order, band], banded[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = bucket[1:] != bucket[:-1]
        root = member[first][np.cumsum(first) - 1]
        pairs.append(member[~first] * n + root[~first])
    edges = np.unique(np.concatenate(pairs))
    return edges // n, edges % n


def _assigned(table: pa.Table, keeper: np.ndarray, exact_code: np.ndarray, sig: np.ndarray) -> pa.Table:
    """The clusters table from each document's keeper, by ``clusters.assign``'s rules."""
    n = len(keeper)
    size = np.bincount(keeper, minlength=n)[keeper]
    lowest = np.full(n, np.iinfo(np.int64).max)
    highest = np.full(n, -1)
    np.minimum.at(lowest, keeper, exact_code)
    np.maximum.at(highest, keeper, exact_code)
    has_near = (lowest != highest)[keeper]  # the cluster holds more than one exact key
    kept = keeper == np.arange(n)
    same_key = exact_code == exact_code[keeper]
    kind = np.where(kept, np.where(has_near, "near", "exact"), np.where(same_key, "exact", "near"))
    near_copy = ~kept & (kind == "near") & (size > 1)
    jaccard = np.ones(n)
    jaccard[near_copy] = minhash.estimated_jaccard(sig[near_copy], sig[keeper[near_copy]])
    ids = table.column("id")
    return pa.table({
        "id": ids,
        "source": table.column("source"),
        "cluster_id": ids.take(pa.array(keeper)),
        "kept": pa.array(kept),
        "kind": pa.array(kind.astype(object), pa.string(), mask=size == 1),
        "cluster_size": pa.array(size, pa.int64()),
        "jaccard": pa.array(jaccard),
    })
