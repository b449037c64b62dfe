"""The etl stage of a chat / instruction run (a run config with a ``chat:`` section).

    ingest whole rows as records -> tables/documents (text = the row as JSON)
    -> duplicate ids, validate, clean + PII per message -> tables/clean
    (id, source, messages, text for dedup, n_chars, n_words, quality)

dedup then runs unchanged (it compares ``text`` and keeps every other
column). Every dropped row is a reject with its reason in tables/rejects,
and the record keeps kept + dropped == in, split by step in ``ChatEtlFacts``.
"""

from __future__ import annotations

from dataclasses import replace

from tokenmill.chat import validate
from tokenmill.chat.facts import ChatEtlFacts
from tokenmill.chat.hygiene import assemble_messages, clean_message_rows, explode_messages
from tokenmill.etl import job as base
from tokenmill.manifest import StageRecord
from tokenmill.progress import SparkProgress, human_bytes

STAGE = "etl"
DUPLICATE_ID = "duplicate_id"  # a second row with an id already taken (ids name examples)


def reason_counts(df) -> dict:
    """Rows by ``reason`` (None: kept), in one Spark job."""
    return {r["reason"]: r["n"] for r in df.groupBy("reason").count().withColumnRenamed("count", "n").collect()}


def dropped_only(counts: dict) -> dict:
    """``reason_counts`` without the kept rows."""
    return {k: n for k, n in counts.items() if k is not None}


def validate_unique(records, chat):
    """records -> validated rows (chat/validate.py VALIDATED_SCHEMA), one per record.

    Ids name examples (cleaning regroups messages by id): of rows sharing an
    id, the smallest record text is validated, the others are duplicate_id.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rank = F.row_number().over(Window.partitionBy("id").orderBy("record", "source"))
    ranked = records.withColumn("_rank", rank)
    dup = ranked.where(F.col("_rank") > 1).select(
        "id", "source", F.lit(None).cast(validate.MESSAGES_SCHEMA).alias("messages"),
        F.lit(DUPLICATE_ID).alias("reason"), F.substring("record", 1, validate.SAMPLE_CHARS).alias("sample"))
    return validate.validate(ranked.where(F.col("_rank") == 1), chat).unionByName(dup)


def clean_table(assembled, chat):
    """Assembled conversations that survived cleaning -> the clean table's columns."""
    from pyspark.sql import functions as F

    ok = validate.with_dedup_text(assembled.where(F.col("reason").isNull()).select("id", "source", "messages"), chat)
    return ok.select("id", "source", "messages", "text", F.length("text").cast("int").alias("n_chars"),
                     F.size(F.split(F.trim("text"), r"\s+")).cast("int").alias("n_words"),
                     F.lit(None).cast("double").alias("quality"))


def run(ctx) -> StageRecord:
    """Records -> documents -> validated, cleaned conversations in clean (+ rejects)."""
    import time

    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from tokenmill.etl.clean import redact_samples
    from tokenmill.etl.ingest import ingest, input_bytes, plan_input

    spark, cfg, chat = ctx.spark, ctx.cfg.etl, ctx.cfg.chat
    started = time.time()
    for spec in ctx.cfg.inputs:  # a missing input fails here, as one line, before any work
        plan_input(spec, cfg, whole_rows=True)
    inputs = {spec.path: ctx.signature(spec.path) for spec in ctx.cfg.inputs}

    with SparkProgress(spark, "etl: ingest records", input_bytes(ctx.cfg.inputs)):
        raw = ingest(spark, ctx.cfg.inputs, cfg, whole_rows=True).persist(StorageLevel.MEMORY_AND_DISK)
        v_documents = ctx.write(raw.where(F.col("reason").isNull()).select("id", "source", "text", "meta", "n_chars"),
                                "documents")
        ingest_counts = {r["reason"]: (r["n"], r["bytes"] or 0) for r in raw.groupBy("reason").agg(
            F.count("*").alias("n"), F.sum(F.octet_length("text")).alias("bytes")).collect()}
    records = ctx.read("documents").select("id", "source", F.col("text").alias("record"))
    if cfg.partitions:
        records = records.repartition(cfg.partitions)

    with SparkProgress(spark, "etl: validate + clean + PII"):
        validated = validate_unique(records, chat).persist(StorageLevel.MEMORY_AND_DISK)
        examples, invalid = validate.split_rejects(validated, STAGE)
        messages = clean_message_rows(explode_messages(examples), cfg, chat.quality_filters)
        messages = messages.persist(StorageLevel.MEMORY_AND_DISK)
        assembled = assemble_messages(messages).persist(StorageLevel.MEMORY_AND_DISK)
        v_clean = ctx.write(clean_table(assembled, chat), "clean")
        raw_rejects = (raw.where(F.col("reason").isNotNull()).select("id", "source", "reason", "sample")
                       .unionByName(invalid.select("id", "source", "reason", "sample")))
        unclean = assembled.where(F.col("reason").isNotNull()).select("id", "source", "reason", "sample")
        rejects = redact_samples(raw_rejects, cfg).unionByName(unclean).withColumn("stage", F.lit(STAGE))
        v_rejects = ctx.write_rejects(rejects, STAGE)
        validate_counts = reason_counts(validated)
        clean_counts = reason_counts(assembled)
        pii = {r["key"]: int(r["n"]) for r in messages.select(F.explode("pii")).groupBy("key").agg(
            F.sum("value").alias("n")).collect()}
    for df in (raw, validated, messages, assembled):
        df.unpersist()

    n_raw = sum(n for n, _ in ingest_counts.values())
    n_records, text_bytes = ingest_counts.get(None, (0, 0))
    ingest_dropped = {k: n for k, (n, _) in ingest_counts.items() if k is not None}
    n_clean = clean_counts.get(None, 0)
    checked = dropped_only(validate_counts)
    if sum(validate_counts.values()) != n_records or sum(clean_counts.values()) != validate_counts.get(None, 0):
        raise AssertionError(f"etl lost rows: {n_records} records, validated {validate_counts}, "
                             f"cleaned {clean_counts}")
    dropped: dict = {}
    for part in (ingest_dropped, checked, dropped_only(clean_counts)):
        for k, n in part.items():
            dropped[k] = dropped.get(k, 0) + n
    wall = time.time() - started
    facts = ChatEtlFacts(
        ingest={"rows_in": n_raw, "rows_out": n_records, "dropped": ingest_dropped},
        clean={"rows_in": n_records, "rows_out": n_clean, "dropped": {**checked, **dropped_only(clean_counts)}},
        pii=dict(sorted(pii.items())), text_bytes=int(text_bytes),
        mb_per_s=round(text_bytes / 1e6 / max(wall, 1e-9), 3), partitions=cfg.partitions,
        versions={"documents": v_documents, "clean": v_clean, "rejects": v_rejects}, task=chat.task,
        validate={"rows_in": n_records, "rows_out": validate_counts.get(None, 0), "dropped": checked})
    return StageRecord(
        stage=STAGE, rows_in=n_raw, rows_out=n_clean, dropped=dropped, inputs=inputs,
        outputs={name: ctx.signature(name) for name in ("documents", "clean", "rejects")},
        extra=facts.to_extra())


def summary_lines(rec: StageRecord) -> list[str]:
    x = ChatEtlFacts.from_extra(rec.extra)
    lines = [f"records   {x.ingest['rows_in']:>12,} rows read ({x.task}), {x.ingest['rows_out']:,} parsed",
             f"valid     {x.validate['rows_out']:>12,} examples, {x.clean['rows_out']:,} kept after cleaning",
             f"text      {human_bytes(x.text_bytes):>12} at {x.mb_per_s:.3g} MB/s"]
    lines.append(f"PII       {sum(x.pii.values()):>12,} replaced" + ("" if x.pii else " (none found)"))
    return lines


def settings(cfg) -> dict:
    """What of the run config this stage reads: the base etl's, and the chat fields etl uses
    (a change of the loss mask or the length reruns tokenize, not the cleaning)."""
    return {"inputs": cfg.inputs, "etl": cfg.etl, "chat": cfg.chat.etl_part()}


# The base stage's contract (the raw inputs, the tables it writes), done the chat way.
STAGE_SPEC = replace(base.STAGE_SPEC, run=run, summary=summary_lines, settings=settings)
