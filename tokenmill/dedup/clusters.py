"""From signatures to duplicate clusters: exact groups, LSH edges, components, keepers.

Input: one row per document (id, source, exact_key, keep columns,
n_shingles, sig). Exact groups first: only each group's best document (its
representative) is banded, so exact copies cost nothing in LSH. Near
clusters are the connected components of the verified candidate edges
between representatives. Every document then points at its cluster's
keeper: the best document under the keep rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from tokenmill.dedup import components, lsh
from tokenmill.config.dedup import DedupConfig
from tokenmill.dedup.keep import best_per_group, keep_key


@dataclass
class ClusterStats:
    candidate_edges: int = 0
    verified_edges: int = 0
    rounds: int = 0
    on_driver: bool = False  # components by a union-find on the driver (a small graph), not in rounds
    clusters_on_driver: bool = False  # the whole phase on the driver (a small batch: ``driver.assign``)
    extra: dict = field(default_factory=dict)


def assign(docs: DataFrame, cfg: DedupConfig, bands: int, rows: int,
           checkpoint_dir: str | None = None) -> tuple[DataFrame, ClusterStats]:
    """-> (id, source, cluster_id, kept, kind, jaccard, cluster_size) for every document.

    ``cluster_id`` is the keeper's id; ``kind`` says how a dropped document
    duplicates its keeper (exact|near), and for a keeper whether its
    cluster holds any near duplicate; ``jaccard`` is the estimated Jaccard
    to the keeper (1.0 for exact copies and keepers).
    """
    stats = ClusterStats()
    keyed = docs.withColumn("keep_key", keep_key(cfg))
    if cfg.exact:
        reps = best_per_group(keyed, "exact_key", out="exact_rep")
        keyed = keyed.join(reps, "exact_key")
    else:
        keyed = keyed.withColumn("exact_rep", F.col("id"))
    keyed = keyed.drop("sig").localCheckpoint(eager=False)  # read three times below
    representatives = keyed.where(F.col("id") == F.col("exact_rep"))

    rep_keeper = representatives.select(F.col("id").alias("exact_rep"), F.col("id").alias("keeper"))
    if cfg.near:
        banded = (representatives.where(F.col("n_shingles") > 0).select("id", "keep_key")
                  .join(docs.select("id", "sig"), "id"))
        candidates = lsh.bucket_edges(lsh.band_buckets(banded, cfg, bands, rows))
        if cfg.verify == "estimated":
            passed = F.col("jaccard") >= F.lit(cfg.min_jaccard - 1e-9)
            scored = lsh.pair_jaccard(candidates, banded, cfg).withColumn("passed", passed)
            scored = scored.localCheckpoint(eager=False)
            counts = scored.agg(F.count(F.lit(1)).alias("n"), F.sum(passed.cast("long")).alias("ok")).first()
            stats.candidate_edges, stats.verified_edges = counts["n"], counts["ok"] or 0
            edges = scored.where("passed").select("src", "dst")
        else:
            edges = candidates.localCheckpoint(eager=False)
            stats.candidate_edges = stats.verified_edges = edges.count()
        if stats.verified_edges == 0:  # nothing to join: skip the component rounds
            labels = edges.select(F.col("src").alias("node"), F.col("dst").alias("label"))
        elif stats.verified_edges <= cfg.driver_max_edges:
            labels, stats.on_driver = components.on_driver(edges), True
        else:
            labels, stats.rounds = components.connected_components(edges, cfg.max_rounds, checkpoint_dir)
        members = labels.join(banded.select(F.col("id").alias("node"), "keep_key"), "node")
        keepers = best_per_group(members, "label")
        near = labels.join(keepers, "label").select(F.col("node").alias("exact_rep"), "keeper")
        rep_keeper = (rep_keeper.join(near.withColumnRenamed("keeper", "near_keeper"), "exact_rep", "left")
                      .select("exact_rep", F.coalesce("near_keeper", "keeper").alias("keeper")))

    assigned = keyed.join(rep_keeper, "exact_rep").select("id", "source", "exact_key", "keeper")
    assigned = assigned.localCheckpoint(eager=False)  # read twice below: compute once
    per_cluster = assigned.groupBy("keeper").agg(
        F.count(F.lit(1)).alias("cluster_size"),
        F.max(F.when(F.col("id") == F.col("keeper"), F.col("exact_key"))).alias("keeper_exact_key"),
        (F.min("exact_key") != F.max("exact_key")).alias("has_near"))
    kept = F.col("id") == F.col("keeper")
    assigned = (assigned.join(per_cluster, "keeper")
                .select("id", "source", F.col("keeper").alias("cluster_id"), kept.alias("kept"),
                        F.when(F.col("cluster_size") == 1, None)
                        .when(kept, F.when(F.col("has_near"), "near").otherwise("exact"))
                        .when(F.col("exact_key") == F.col("keeper_exact_key"), "exact")
                        .otherwise("near").alias("kind"),
                        "cluster_size"))
    # Estimated Jaccard to the keeper: only near duplicates need signatures.
    near_rows = assigned.where(F.col("kind") == "near").where(~F.col("kept"))
    sigs = docs.select("id", "sig")
    scored_near = lsh.pair_jaccard(near_rows, sigs, cfg, a="id", b="cluster_id")
    others = assigned.where((F.col("kind") != "near") | F.col("kept")).withColumn("jaccard", F.lit(1.0))
    return others.unionByName(scored_near.select(*others.columns)), stats
