"""Connected components of an edge DataFrame, computed in Spark.

The alternating large-star / small-star algorithm (Kiveris et al.,
"Connected Components in MapReduce and Beyond", SoCC 2014): every round is a
few joins and aggregations over the edge list, the number of rounds grows
with log(n), and nothing but two counts per round reaches the driver. Each
round's edges are checkpointed, so the query plan (lineage) stays one round
long however many rounds it takes.

It has converged when the edges form stars: every node points at exactly
one node, and that node points nowhere. The star centre is the smallest id
of the component, which becomes its label.

``on_driver`` gives the same labels for a graph small enough to collect: a
union-find in this process, back as a DataFrame.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tokenmill.progress import log


class ComponentsDidNotConverge(RuntimeError):
    pass


def orient(edges: DataFrame) -> DataFrame:
    """Undirected edges as distinct (src > dst) pairs without self loops."""
    return (edges.where(F.col("src") != F.col("dst"))
            .select(F.greatest("src", "dst").alias("src"), F.least("src", "dst").alias("dst"))
            .distinct())


def large_star(edges: DataFrame) -> DataFrame:
    """Each node links its larger neighbours to the smallest of itself and its neighbours."""
    both = edges.select(F.col("src").alias("u"), F.col("dst").alias("v")).unionByName(
        edges.select(F.col("dst").alias("u"), F.col("src").alias("v")))
    mins = both.groupBy("u").agg(F.min("v").alias("m")).select("u", F.least("u", "m").alias("m"))
    return (both.join(mins, "u").where(F.col("v") > F.col("u"))
            .select(F.col("v").alias("src"), F.col("m").alias("dst")).distinct())


def small_star(edges: DataFrame) -> DataFrame:
    """Each node links itself and its smaller neighbours to the smallest of them."""
    oriented = edges.select(F.greatest("src", "dst").alias("u"), F.least("src", "dst").alias("v"))
    mins = oriented.groupBy("u").agg(F.min("v").alias("m"))
    linked = (oriented.join(mins, "u").where(F.col("v") != F.col("m"))
              .select(F.col("v").alias("src"), F.col("m").alias("dst")))
    return linked.unionByName(mins.select(F.col("u").alias("src"), F.col("m").alias("dst"))).distinct()


def is_star_forest(edges: DataFrame) -> bool:
    """Every src has one dst, and no dst is itself a src (one Spark job)."""
    ends = edges.select(F.col("src").alias("n"), F.lit(1).alias("out"), F.lit(0).alias("inn")).unionByName(
        edges.select(F.col("dst").alias("n"), F.lit(0).alias("out"), F.lit(1).alias("inn")))
    per_node = ends.groupBy("n").agg(F.sum("out").alias("out"), F.max("inn").alias("inn"))
    bad = per_node.where((F.col("out") > 1) | ((F.col("out") == 1) & (F.col("inn") == 1)))
    return bad.limit(1).count() == 0


def connected_components(edges: DataFrame, max_rounds: int = 60,
                         checkpoint_dir: str | None = None) -> tuple[DataFrame, int]:
    """(src, dst) edges -> ((node, label) for every node on an edge, rounds).

    ``label`` is the smallest node of the component. Rounds are checkpointed
    to Parquet under ``checkpoint_dir`` when given (reliable, no executor
    memory held), else with Spark's local checkpoint.
    """
    current = _checkpoint(orient(edges), checkpoint_dir, 0)
    rounds = 0
    while True:
        if is_star_forest(current):
            break
        if rounds >= max_rounds:
            raise ComponentsDidNotConverge(
                f"connected components did not converge in {max_rounds} rounds; raise dedup.max_rounds")
        rounds += 1
        current = _checkpoint(small_star(large_star(current)), checkpoint_dir, rounds)
        log(f"[dedup] components round {rounds}")
    labels = current.select(F.col("src").alias("node"), F.col("dst").alias("label")).unionByName(
        current.select(F.col("dst").alias("node"), F.col("dst").alias("label"))).distinct()
    return labels, rounds


def _checkpoint(df: DataFrame, checkpoint_dir: str | None, round_no: int) -> DataFrame:
    if checkpoint_dir is None:
        return df.localCheckpoint(eager=True)
    path = str(Path(checkpoint_dir) / f"round-{round_no:03d}")
    df.write.mode("overwrite").parquet(path)
    if round_no >= 2:  # the round before the previous one is no longer read
        shutil.rmtree(Path(checkpoint_dir) / f"round-{round_no - 2:03d}", ignore_errors=True)
    return df.sparkSession.read.parquet(path)


def union_find(pairs) -> dict:
    """{node: smallest node of its component} for the nodes on the (a, b) pairs; self loops link nothing."""
    parent: dict = {}

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving
            x = parent[x]
        return x

    for a, b in pairs:
        if a == b:  # a self loop links nothing (and, alone, is no node of the graph)
            continue
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        ra, rb = root(a), root(b)
        if ra != rb:  # the smaller root stays the root: labels are each component's smallest node
            parent[max(ra, rb)] = min(ra, rb)
    return {node: root(node) for node in sorted(parent)}


def on_driver(edges: DataFrame) -> DataFrame:
    """(src, dst) edges -> (node, label) like ``connected_components``, by a union-find here."""
    table = edges.select("src", "dst").toArrow()
    labels = union_find(zip(table.column("src").to_pylist(), table.column("dst").to_pylist()))
    kind = table.schema.field("src").type
    return edges.sparkSession.createDataFrame(pa.table({"node": pa.array(list(labels), kind),
                                                        "label": pa.array(list(labels.values()), kind)}))
