"""The etl stage: raw inputs -> tables/documents -> tables/clean (+ tables/rejects).

ingest reads every input into one schema (bad rows become rejects with a
reason), clean+PII runs as one Arrow pass over the documents table. The
stage's manifest record counts every raw row: rows_in = rows read,
rows_out = rows in ``clean``, dropped = ingest and clean rejects by reason;
``extra`` splits the counts into ingest and clean, and holds PII by type.
"""

from __future__ import annotations

import time

from tokenmill import pipeline
from tokenmill import spark as session
from tokenmill.etl.clean import CLEAN_COLUMNS, clean_and_redact, redact_samples
from tokenmill.etl.ingest import ingest, input_bytes, plan_input
from tokenmill.facts import EtlFacts
from tokenmill.manifest import StageRecord
from tokenmill.progress import SparkProgress, human_bytes

STAGE = "etl"
PARTITION_CHARS = 16_000_000


def _partitions(spark, n_chars: int, configured: int) -> int:
    if configured:
        return configured
    return max(session.parallelism(spark), -(-n_chars // PARTITION_CHARS))


def filled_partitions(df) -> int:
    """Partitions holding rows (a DataFrame query: Spark Connect has no RDD to ask)."""
    from pyspark.sql import functions as F

    return df.select(F.spark_partition_id().alias("p")).distinct().count()


def run(ctx: pipeline.StageContext) -> StageRecord:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    spark, cfg = ctx.spark, ctx.cfg.etl
    specs = ctx.cfg.inputs
    started = time.time()
    for spec in specs:  # a missing input fails here, as one line, before any work
        plan_input(spec, cfg)
    inputs = {spec.path: ctx.signature(spec.path) for spec in specs}

    with SparkProgress(spark, "etl: ingest", input_bytes(specs)):
        raw = ingest(spark, specs, cfg).persist(StorageLevel.MEMORY_AND_DISK)
        docs = raw.where(F.col("reason").isNull()).select("id", "source", "text", "meta", "n_chars")
        v_documents = ctx.write(docs, "documents")
        ingest_counts = {r["reason"]: (r["n"], r["bytes"] or 0) for r in raw.groupBy("reason").agg(
            F.count("*").alias("n"), F.sum(F.octet_length("text")).alias("bytes")).collect()}
    n_raw = sum(n for n, _ in ingest_counts.values())
    n_docs, text_bytes = ingest_counts.get(None, (0, 0))

    # Clean straight from the cached raw rows (same rows as documents): no re-read.
    # Spread them over the cores when ingest made too few partitions (one big file).
    documents = raw.where(F.col("reason").isNull())
    parts = filled_partitions(documents)
    wanted = _partitions(spark, int(text_bytes), cfg.partitions)
    if parts < session.parallelism(spark) or cfg.partitions:
        documents, parts = documents.repartition(wanted), wanted
    with SparkProgress(spark, "etl: clean + PII", text_bytes):
        out = clean_and_redact(documents, cfg).persist(StorageLevel.MEMORY_AND_DISK)
        v_clean = ctx.write(out.where(F.col("reason").isNull()).select(*CLEAN_COLUMNS), "clean")
        by_verdict = out.groupBy("reason", "preset").agg(F.count("*").alias("n")).collect()
        clean_counts, presets = {}, {}
        for r in by_verdict:
            clean_counts[r["reason"]] = clean_counts.get(r["reason"], 0) + r["n"]
            presets[r["preset"]] = presets.get(r["preset"], 0) + r["n"]
        pii = {r["key"]: int(r["n"]) for r in out.select(F.explode("pii")).groupBy("key").agg(
            F.sum("value").alias("n")).collect()}
        ingest_rejects = redact_samples(raw.where(F.col("reason").isNotNull()), cfg)
        clean_rejects = out.where(F.col("reason").isNotNull()).select("id", "source", "reason", "sample")
        rejects = ingest_rejects.unionByName(clean_rejects).withColumn("stage", F.lit(STAGE))
        v_rejects = ctx.write_rejects(rejects, STAGE)
    raw.unpersist()
    out.unpersist()

    ingest_dropped = {k: n for k, (n, _) in ingest_counts.items() if k is not None}
    clean_dropped = {k: n for k, n in clean_counts.items() if k is not None}
    n_clean = clean_counts.get(None, 0)
    if sum(clean_counts.values()) != n_docs:
        raise AssertionError(f"clean saw {sum(clean_counts.values())} rows, documents has {n_docs}")
    dropped = dict(ingest_dropped)
    for k, n in clean_dropped.items():
        dropped[k] = dropped.get(k, 0) + n
    wall = time.time() - started
    return StageRecord(
        stage=STAGE, rows_in=n_raw, rows_out=n_clean, dropped=dropped,
        inputs=inputs,
        outputs={name: ctx.signature(name) for name in ("documents", "clean", "rejects")},
        extra=EtlFacts(
            ingest={"rows_in": n_raw, "rows_out": n_docs, "dropped": ingest_dropped},
            clean={"rows_in": n_docs, "rows_out": n_clean, "dropped": clean_dropped},
            pii=dict(sorted(pii.items())),
            presets=dict(sorted(presets.items())),
            text_bytes=int(text_bytes),
            mb_per_s=round(text_bytes / 1e6 / max(wall, 1e-9), 3),
            partitions=parts,
            versions={"documents": v_documents, "clean": v_clean, "rejects": v_rejects},
        ).to_extra(),
    )


def summary_lines(rec: StageRecord) -> list[str]:
    x = EtlFacts.from_extra(rec.extra)
    lines = [
        f"ingest    {x.ingest['rows_in']:>12,} rows read, {x.ingest['rows_out']:,} documents",
        f"clean     {x.clean['rows_in']:>12,} documents, {x.clean['rows_out']:,} kept",
        "presets   " + ", ".join(f"{n:,} {name}" for name, n in x.presets.items()) if x.presets else "presets   none",
        f"text      {human_bytes(x.text_bytes):>12} at {x.mb_per_s:.2f} MB/s",
    ]
    pii = x.pii
    lines.append(f"PII       {sum(pii.values()):>12,} replaced" + ("" if pii else " (none found)"))
    for entity, n in sorted(pii.items(), key=lambda kv: -kv[1]):
        lines.append(f"    {entity:<30} {n:>10,}")
    return lines


STAGE_SPEC = pipeline.StageSpec(
    name=STAGE,
    inputs=(),
    outputs=("documents", "clean", pipeline.REJECTS),
    run=run,
    summary=summary_lines,
    settings=lambda cfg: {"inputs": cfg.inputs, "etl": cfg.etl},  # what it reads: the inputs too
    raw_inputs=True,
)
add_arguments, main = STAGE_SPEC.add_arguments, STAGE_SPEC.main  # the `tokenmill etl` command
