"""The pipeline stages of a chat / instruction run (a run config with a ``chat:`` section).

The stage commands stay the same (``tokenmill etl`` ...); each stage's
``run`` hands over to these functions when ``cfg.chat`` is set:

    etl       ingest whole rows as records -> tables/documents (text = the row as JSON)
              -> duplicate ids, validate, clean + PII per message -> tables/clean
              (id, source, messages, text for dedup, n_chars, n_words, quality)
    dedup     unchanged: it compares ``text`` and keeps every other column
    tokenize  template + loss mask (chat/mask.py) -> bin-packed windows -> tables/sequences
    shards    tokenmill-mds-sft-v1 (chat/shards.py), swapped in as the shards stage does

Every dropped row is a reject with its reason in tables/rejects, and each
record keeps kept + dropped == in.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tokenmill import locations, tables
from tokenmill.chat import mask, validate
from tokenmill.chat.hygiene import assemble_messages, clean_message_rows, explode_messages
from tokenmill.chat.pack import pack_examples, packing_stats
from tokenmill.chat.shards import SftShardSpec, write_shards
from tokenmill.chat.template import ChatTemplate, load_template
from tokenmill.errors import UserError
from tokenmill.facts import ChatTokenizeFacts, EtlFacts
from tokenmill.manifest import StageRecord
from tokenmill.progress import SparkProgress, human_bytes, log
from tokenmill.shards.dataset_info import SFT_FORMAT

DUPLICATE_ID = "duplicate_id"  # a second row with an id already taken (ids name examples)
CLEAN_COLUMNS = ["id", "source", "messages", "text", "n_chars", "n_words", "quality"]
TEMPLATE_CONFIG = "tokenizer_config.json"
KIND = "chat"  # extra["kind"] of this module's records


def _reason_counts(df) -> dict:
    return {r["reason"]: r["n"] for r in df.groupBy("reason").count().withColumnRenamed("count", "n").collect()}


def _dropped(counts: dict) -> dict:
    return {k: n for k, n in counts.items() if k is not None}


# --- etl ------------------------------------------------------------------------------


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


def run_etl(ctx) -> StageRecord:
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
        examples, invalid = validate.split_rejects(validated, "etl")
        messages = clean_message_rows(explode_messages(examples), cfg, chat.quality_filters)
        messages = messages.persist(StorageLevel.MEMORY_AND_DISK)
        assembled = assemble_messages(messages).persist(StorageLevel.MEMORY_AND_DISK)
        v_clean = ctx.write(clean_table(assembled, chat), "clean")
        raw_rejects = (raw.where(F.col("reason").isNotNull()).select("id", "source", "reason", "sample")
                       .unionByName(invalid.select("id", "source", "reason", "sample")))
        unclean = assembled.where(F.col("reason").isNotNull()).select("id", "source", "reason", "sample")
        rejects = redact_samples(raw_rejects, cfg).unionByName(unclean).withColumn("stage", F.lit("etl"))
        v_rejects = ctx.write_rejects(rejects, "etl")
        validate_counts = _reason_counts(validated)
        clean_counts = _reason_counts(assembled)
        pii = {r["key"]: int(r["n"]) for r in messages.select(F.explode("pii")).groupBy("key").agg(
            F.sum("value").alias("n")).collect()}
    for df in (raw, validated, messages, assembled):
        df.unpersist()

    n_raw = sum(n for n, _ in ingest_counts.values())
    n_records, text_bytes = ingest_counts.get(None, (0, 0))
    ingest_dropped = {k: n for k, (n, _) in ingest_counts.items() if k is not None}
    n_clean = clean_counts.get(None, 0)
    checked = _dropped(validate_counts)
    if sum(validate_counts.values()) != n_records or sum(clean_counts.values()) != validate_counts.get(None, 0):
        raise AssertionError(f"etl lost rows: {n_records} records, validated {validate_counts}, "
                             f"cleaned {clean_counts}")
    dropped: dict = {}
    for part in (ingest_dropped, checked, _dropped(clean_counts)):
        for k, n in part.items():
            dropped[k] = dropped.get(k, 0) + n
    wall = time.time() - started
    facts = EtlFacts(
        ingest={"rows_in": n_raw, "rows_out": n_records, "dropped": ingest_dropped},
        clean={"rows_in": n_records, "rows_out": n_clean, "dropped": {**checked, **_dropped(clean_counts)}},
        pii=dict(sorted(pii.items())), text_bytes=int(text_bytes),
        mb_per_s=round(text_bytes / 1e6 / max(wall, 1e-9), 3), partitions=cfg.partitions,
        versions={"documents": v_documents, "clean": v_clean, "rejects": v_rejects})
    return StageRecord(
        stage="etl", rows_in=n_raw, rows_out=n_clean, dropped=dropped, inputs=inputs,
        outputs={name: ctx.signature(name) for name in ("documents", "clean", "rejects")},
        extra={**facts.to_extra(), "kind": KIND, "task": chat.task,
               "validate": {"rows_in": n_records, "rows_out": validate_counts.get(None, 0), "dropped": checked}})


def etl_summary(rec: StageRecord) -> list[str]:
    x = rec.extra
    lines = [f"records   {x['ingest']['rows_in']:>12,} rows read ({x['task']}), {x['ingest']['rows_out']:,} parsed",
             f"valid     {x['validate']['rows_out']:>12,} examples, {x['clean']['rows_out']:,} kept after cleaning",
             f"text      {human_bytes(x['text_bytes']):>12} at {x['mb_per_s']:.3g} MB/s"]
    pii = x.get("pii") or {}
    lines.append(f"PII       {sum(pii.values()):>12,} replaced" + ("" if pii else " (none found)"))
    return lines


# --- tokenize -------------------------------------------------------------------------


def model_folder(ctx) -> Path:
    """The folder holding tokenizer.json and tokenizer_config.json (tokenize.tokenizer)."""
    source = ctx.cfg.tokenize.tokenizer
    if not source:
        raise UserError("a chat run needs tokenize.tokenizer: the model folder holding tokenizer.json and "
                        "tokenizer_config.json (its chat template and special tokens)")
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    if not (folder / TEMPLATE_CONFIG).is_file():
        raise UserError(f"tokenize.tokenizer: {folder} has no {TEMPLATE_CONFIG}; a chat run needs it for the "
                        "chat template and the EOS token")
    return folder


def instruction_template(template: ChatTemplate) -> ChatTemplate:
    """Instruction rows use no template, only its special tokens (EOS, BOS, pad)."""
    return ChatTemplate("", "none", template.tokens)


def length_stats(examples) -> dict:
    """min / p50 / p90 / p99 / max tokens per example (exact percentiles), and the mean."""
    from pyspark.sql import functions as F

    row = examples.agg(F.min("n_tokens"), F.expr("percentile(n_tokens, array(0.5, 0.9, 0.99))"), F.max("n_tokens"),
                       F.avg("n_tokens")).first()
    if row[0] is None:
        return {}
    p50, p90, p99 = (round(float(p), 1) for p in row[1])
    return {"min": int(row[0]), "p50": p50, "p90": p90, "p99": p99, "max": int(row[2]), "mean": round(float(row[3]), 1)}


def run_tokenize(ctx) -> StageRecord:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from tokenmill.tokenize import tokenizer as toks
    from tokenmill.tokenize.job import input_table, nothing_left

    chat = ctx.cfg.chat
    name = input_table(ctx)
    if tables.row_count(ctx.spark, ctx.location(name)) == 0:
        raise nothing_left(ctx.manifest, "tokenize", "examples", "tokenize", name)
    folder = model_folder(ctx)
    source = toks.tokenizer_file(ctx.cfg.tokenize.tokenizer)
    toks.load(source)  # a broken tokenizer.json is one line, here
    out = locations.local_dir(ctx.out)
    shutil.copyfile(source, out / "tokenizer.json")
    shutil.copyfile(folder / TEMPLATE_CONFIG, out / TEMPLATE_CONFIG)
    template = load_template(out / TEMPLATE_CONFIG, chat.template)
    if chat.task == "instruction":
        template = instruction_template(template)
    tokenizer_json = (out / "tokenizer.json").read_text(encoding="utf-8")
    special = mask.worker_encoder(tokenizer_json, template, chat).special  # template/tokenizer mismatch: one line
    log(f"[tokenize] {chat.task} rows, template {template.name}, eos {special.eos_id}, pad {special.pad_id}")

    with SparkProgress(ctx.spark, "tokenize: template + mask + pack"):
        encoded = mask.encode_examples(ctx.read(name), tokenizer_json, template, chat).persist(
            StorageLevel.MEMORY_AND_DISK)
        kept, rejects = mask.split_encoded(encoded, "tokenize")
        ctx.write(pack_examples(kept, chat.seq_len, special.pad_id, chat.pack_groups), "sequences")
        ctx.write_rejects(rejects, "tokenize")
        counts = _reason_counts(encoded)
        lengths = length_stats(kept)
        truncated = encoded.where(F.col("reason").isNull() & (F.col("dropped_pairs") > 0)).count()
    encoded.unpersist()
    stats = packing_stats(ctx.read("sequences"), chat.seq_len)
    if stats.examples != counts.get(None, 0):
        raise AssertionError(f"packed {stats.examples} examples, {counts.get(None, 0)} were encoded")
    info = toks.describe(out / "tokenizer.json", ctx.cfg.tokenize)
    facts = ChatTokenizeFacts(
        task=chat.task, input_table=name, template_name=template.name,
        template_sha256=None if chat.task == "instruction" else template.sha256,
        tokenizer_sha256=info.sha256, tokenizer_source=str(ctx.cfg.tokenize.tokenizer), vocab_size=info.vocab_size,
        dtype=info.dtype, eos_id=special.eos_id, bos_id=special.bos_id, pad_id=special.pad_id, seq_len=chat.seq_len,
        pack_groups=chat.pack_groups, examples=stats.examples, windows=stats.windows, tokens=stats.tokens,
        target_tokens=stats.targets, pad_tokens=stats.pad_tokens, truncated_examples=truncated, lengths=lengths,
        packing=stats.report())
    return StageRecord(
        stage="tokenize", rows_in=sum(counts.values()), rows_out=counts.get(None, 0), dropped=_dropped(counts),
        inputs={name: ctx.signature(name), str(source): ctx.signature(str(source)),
                str(folder / TEMPLATE_CONFIG): ctx.signature(str(folder / TEMPLATE_CONFIG))},
        outputs={"sequences": ctx.signature("sequences")},
        extra={**facts.to_extra(), "kind": KIND, "rows_unit": "examples"})


def packing_line(packing: dict) -> str:
    packed, single = packing["packed"], packing["one_per_window"]
    return (f"{packing['windows']:,} windows: {100 * packed['token_share']:.1f}% tokens, "
            f"{100 * packed['target_share']:.1f}% targets (one example per window: "
            f"{100 * single['token_share']:.1f}% / {100 * single['target_share']:.1f}%)")


def lengths_line(lengths: dict) -> str:
    if not lengths:
        return "no examples"
    return "  ".join(f"{k} {lengths[k]:g}" for k in ("min", "p50", "p90", "p99", "max"))


def tokenize_summary(rec: StageRecord) -> list[str]:
    x = rec.extra
    lines = [f"template   {x['template_name']} ({x['task']} rows), tokenizer {x['tokenizer_sha256'][:12]}, "
             f"vocab {x['vocab_size']:,}",
             f"examples   {x['examples']:>12,} kept, {rec.rows_dropped:,} rejected"
             + (f", {x['truncated_examples']:,} truncated" if x["truncated_examples"] else ""),
             f"tokens     {lengths_line(x['lengths'])} per example",
             f"targets    {x['target_tokens']:>12,} of {x['tokens']:,} tokens",
             f"packing    {packing_line(x['packing'])}"]
    return lines


# --- shards ---------------------------------------------------------------------------


def run_shards(ctx) -> StageRecord:
    import numpy as np

    from tokenmill.shards import output
    from tokenmill.shards.shuffle import SPLITS, auto_parts
    from tokenmill.tokenize.job import made_tokenizer, nothing_left

    cfg = ctx.cfg.shards
    facts = ChatTokenizeFacts.of(ctx.manifest)
    out = locations.local_dir(ctx.out)
    tokenizer_file = made_tokenizer(ctx, facts.tokenizer_sha256)
    n = tables.row_count(ctx.spark, ctx.location("sequences"))
    if n == 0:
        raise nothing_left(ctx.manifest, "shards", "examples", "shard", "sequences")
    final, remote = output.shard_locations(ctx)
    output.clear_stale(final)
    bytes_per_window = facts.seq_len * (np.dtype(facts.dtype).itemsize + 3)  # tokens, mask, doc ids
    template = None if facts.template_sha256 is None else load_template(out / TEMPLATE_CONFIG, ctx.cfg.chat.template)
    spec = SftShardSpec(
        seq_len=facts.seq_len, dtype=facts.dtype, vocab_size=facts.vocab_size, eos_id=facts.eos_id,
        bos_id=facts.bos_id, pad_id=facts.pad_id, tokenizer_sha256=facts.tokenizer_sha256,
        template_sha256=facts.template_sha256, seed=cfg.seed, val_fraction=cfg.val_fraction,
        train_parts=cfg.partitions or auto_parts(n, bytes_per_window, 1),
        compression=None if cfg.compression == "none" else cfg.compression, size_limit=cfg.size_limit)
    with output.staged(final) as staging, SparkProgress(ctx.spark, "shards", total_bytes=n * bytes_per_window):
        dataset = write_shards(ctx.read("sequences"), spec, str(staging), remote,
                               tokenizer_file.read_text(encoding="utf-8"), template)
    rows_out = sum(dataset["splits"][s]["sequences"] for s in SPLITS)
    log(f"[shards] {rows_out:,} windows ({SFT_FORMAT}) in {final}" + (f" and {remote}" if remote else ""))
    return StageRecord(
        stage="shards", rows_in=n, rows_out=rows_out, inputs={"sequences": ctx.signature("sequences")},
        outputs=output.output_signature(ctx, final),
        extra={**dataset, "kind": KIND, "rows_unit": "sequences", "location": str(final), "remote": remote,
               "seed": cfg.seed, "compression": cfg.compression,
               "lineage": {"sequences": ctx.signature("sequences"), **ctx.manifest.stages["tokenize"].inputs}})


def shards_summary(rec: StageRecord) -> list[str]:
    x = rec.extra
    lines = [f"shards     {x['location']}" + (f" -> {x['remote']}" if x.get("remote") else ""),
             f"format     {x['format']}, tokens {x['dtype']} x {x['seq_len']}, vocab {x['vocab_size']:,}"]
    for split, s in x["splits"].items():
        lines.append(f"{split:<6}     {s['sequences']:>10,} windows  {s['examples']:>10,} examples  "
                     f"{s['target_tokens']:>12,} target tokens  {s['pad_tokens']:>10,} pad")
    return lines
