"""The dedup stage: tables/clean -> signatures -> dup_clusters -> tables/deduped.

Phases, each ending in a table so it can be inspected and reused:

1. ``signatures``: exact key + MinHash signature of every document (with an
   earlier run's signatures table as input, only the new documents are
   hashed and the table holds both);
2. ``dup_clusters``: exact groups, LSH candidate edges, verification,
   connected components, one keeper per cluster (see ``clusters``);
3. ``deduped``: the clean documents that are kept; the others go to
   ``rejects`` as ``duplicate_exact`` / ``duplicate_near``.
"""

from __future__ import annotations

import shutil

from pyspark.sql import functions as F

from tokenmill import locations, pipeline, tables
from tokenmill.dedup import clusters, driver, lsh
from tokenmill.config.dedup import DedupConfig
from tokenmill.dedup.exact import exact_key
from tokenmill.errors import UserError
from tokenmill.facts import DedupFacts
from tokenmill.manifest import StageRecord
from tokenmill.progress import SparkProgress, log

STAGE = "dedup"
INPUT = "clean"
OUTPUT = "deduped"
CLUSTERS = "dup_clusters"
SIGNATURES = "signatures"
REASONS = {"exact": "duplicate_exact", "near": "duplicate_near"}
SIG_COLUMNS = ["id", "source", "exact_key", "quality", "n_chars", "n_words", "n_shingles", "sig", "params"]


def signatures_of(clean, cfg: DedupConfig):
    """clean rows -> signature rows (one per document)."""
    prepared = clean.select(
        "id", "text", "source",
        exact_key(F.col("text"), cfg).alias("exact_key"),
        F.col("quality").cast("double").alias("quality"),
        F.col("n_chars").cast("int").alias("n_chars"),
        F.col("n_words").cast("int").alias("n_words"),
    )
    sigs = lsh.with_signatures(prepared, cfg, keep=("source", "exact_key", "quality", "n_chars", "n_words"))
    return sigs.withColumn("params", F.lit(cfg.signature_params())).select(*SIG_COLUMNS)


def read_previous(spark, cfg: DedupConfig):
    """An earlier run's signatures table, checked to be comparable with this config."""
    location = cfg.previous_signatures
    if not tables.exists(spark, location):
        raise UserError(f"dedup.previous_signatures: no signatures table at {location} "
                        "(point it at an earlier run's OUT/tables/signatures)")
    prev = tables.read(spark, location)
    missing = [c for c in SIG_COLUMNS if c not in prev.columns]
    if missing:
        raise UserError(f"dedup.previous_signatures: {location} lacks columns {missing}; "
                        "is it a tokenmill signatures table?")
    params = [r["params"] for r in prev.select("params").distinct().limit(3).collect()]
    if params and params != [cfg.signature_params()]:
        raise UserError(f"dedup.previous_signatures: {location} was made with {params}, this run uses "
                        f"{cfg.signature_params()!r}; use the same shingles, num_perm, seed and exact "
                        "normalization, or drop previous_signatures to recompute")
    return prev, location


def check_unique_ids(clean) -> None:
    dup = clean.groupBy("id").count().where(F.col("count") > 1).limit(1).collect()
    if dup:
        raise UserError(f"tables/clean has duplicate document id {dup[0]['id']!r} ({dup[0]['count']} rows); "
                        "document ids must be unique (rerun etl)")


def run(ctx: pipeline.StageContext) -> StageRecord:
    cfg: DedupConfig = ctx.cfg.dedup
    spark = ctx.spark
    clean = ctx.read(INPUT)
    inputs = {INPUT: ctx.signature(INPUT)}
    rows_in = tables.row_count(spark, ctx.location(INPUT))
    if not cfg.enabled:
        ctx.write(clean, OUTPUT)
        # An earlier, enabled run's tables and rejects no longer describe this output.
        for name in (CLUSTERS, SIGNATURES):
            tables.drop(spark, ctx.location(name))
        no_rejects = clean.select("id", "source", F.lit(STAGE).alias("stage"), F.lit("").alias("reason"),
                                  F.lit("").alias("sample")).limit(0)
        ctx.write_rejects(no_rejects, STAGE)
        return StageRecord(STAGE, rows_in, rows_in, inputs=inputs,
                           outputs={OUTPUT: ctx.signature(OUTPUT)}, extra=DedupFacts.disabled().to_extra())
    check_unique_ids(clean)
    bands, rows = lsh.lsh_params(cfg)
    log(f"[dedup] LSH: {bands} bands x {rows} rows of {cfg.num_perm} permutations for Jaccard >= {cfg.threshold} "
        f"({cfg.shingle} {cfg.ngram}-grams, verify={cfg.verify})")

    # Phase 1: signatures (new documents only), plus an earlier run's.
    new_sigs = signatures_of(clean, cfg)
    incremental = None
    if cfg.previous_signatures:
        prev, location = read_previous(spark, cfg)
        inputs[location] = ctx.signature(location)
        earlier = prev.select(*SIG_COLUMNS).join(clean.select("id"), "id", "left_anti")
        new_sigs = new_sigs.unionByName(earlier)
        incremental = {"previous_signatures": location, "previous_documents": tables.row_count(spark, location)}
    with SparkProgress(spark, "dedup signatures"):
        ctx.write(new_sigs, SIGNATURES)
    sigs = ctx.read(SIGNATURES)

    # Phase 2: clusters.
    with SparkProgress(spark, "dedup clusters"):
        if tables.row_count(spark, ctx.location(SIGNATURES)) <= cfg.driver_max_docs:
            assigned, cstats = driver.assign(sigs, cfg, bands, rows)
            ctx.write(assigned.where(F.col("cluster_size") > 1), CLUSTERS)
        else:
            assigned, cstats = _assign_in_spark(ctx, sigs, cfg, bands, rows)
    dups = ctx.read(CLUSTERS)

    # Phase 3: kept documents and rejects of this batch.
    dropped = dups.where(~F.col("kept")).select("id", "cluster_id", "kind")
    with SparkProgress(spark, "dedup output"):
        ctx.write(clean.join(dropped.select("id"), "id", "left_anti").select(*clean.columns), OUTPUT)
        rejects = clean.join(dropped, "id").select(
            "id", "source", F.lit(STAGE).alias("stage"),
            F.when(F.col("kind") == "exact", REASONS["exact"]).otherwise(REASONS["near"]).alias("reason"),
            F.concat(F.lit("dup of "), F.col("cluster_id"), F.lit(": "),
                     F.substring(F.coalesce("text", F.lit("")), 1, cfg.sample_chars)).alias("sample"))
        ctx.write_rejects(rejects, STAGE)

    batch_dropped = dups.join(clean.select("id"), "id").where(~F.col("kept"))
    by_kind: dict = {}
    by_source: dict = {}
    for r in batch_dropped.groupBy("source", "kind").count().collect():
        by_source.setdefault(r["source"], {})[r["kind"]] = r["count"]
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + r["count"]
    histogram = {str(r["cluster_size"]): r["count"] for r in
                 dups.where(F.col("kept")).groupBy("cluster_size").count().orderBy("cluster_size").collect()}
    facts = DedupFacts(
        bands=bands, rows=rows, num_perm=cfg.num_perm, threshold=cfg.threshold,
        shingle=f"{cfg.shingle} {cfg.ngram}-grams", verify=cfg.verify,
        s_curve=lsh.s_curve(bands, rows),
        candidate_edges=cstats.candidate_edges, verified_edges=cstats.verified_edges,
        component_rounds=cstats.rounds,
        components_on_driver=cstats.on_driver,
        clusters_on_driver=cstats.clusters_on_driver,
        clusters=sum(histogram.values()),
        cluster_size_histogram=histogram,
        removed_by_source=dict(sorted(by_source.items())),
        documents_hashed=rows_in,
        incremental=incremental,
    )
    rows_out = tables.row_count(spark, ctx.location(OUTPUT))
    return StageRecord(
        STAGE, rows_in, rows_out,
        dropped={REASONS[k]: v for k, v in by_kind.items()},
        inputs=inputs,
        outputs={name: ctx.signature(name) for name in (OUTPUT, CLUSTERS, SIGNATURES)},
        extra=facts.to_extra(),
    )


def _assign_in_spark(ctx, sigs, cfg: DedupConfig, bands: int, rows: int):
    scratch = _scratch_dir(ctx)
    try:
        assigned, cstats = clusters.assign(sigs, cfg, bands, rows, scratch)
        ctx.write(assigned.where(F.col("cluster_size") > 1), CLUSTERS)
        return assigned, cstats
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _scratch_dir(ctx) -> str | None:
    """Local folder for component rounds; None (Spark local checkpoints) for remote outputs."""
    if locations.is_remote(ctx.out):
        return None
    path = locations.local_dir(ctx.out) / "_tmp" / "dedup-components"
    shutil.rmtree(path, ignore_errors=True)
    return str(path)


def summary_lines(rec: StageRecord) -> list[str]:
    x = DedupFacts.from_extra(rec.extra)
    if not x.enabled:
        return ["dedup disabled"]
    at = x.s_curve.get(f"{x.threshold:.2f}", "?")
    lines = [f"LSH {x.bands} bands x {x.rows} rows ({x.shingle}, Jaccard >= {x.threshold}, "
             f"P(candidate | J={x.threshold:.2f}) = {at})",
             f"candidate edges {x.candidate_edges:,}, verified {x.verified_edges:,}, "
             + ("clusters found on the driver" if x.clusters_on_driver else
                "components " + ("on the driver" if x.components_on_driver else f"in {x.component_rounds} rounds")),
             f"clusters {x.clusters:,}; sizes " + ", ".join(f"{k}:{v}" for k, v in x.cluster_size_histogram.items())]
    for source, kinds in x.removed_by_source.items():
        lines.append(f"  removed from {source}: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    return lines


STAGE_SPEC = pipeline.StageSpec(
    name=STAGE,
    inputs=(INPUT,),
    outputs=(OUTPUT, CLUSTERS, SIGNATURES, pipeline.REJECTS),
    run=run,
    summary=summary_lines,
)
add_arguments, main = STAGE_SPEC.add_arguments, STAGE_SPEC.main  # the `tokenmill dedup` command
