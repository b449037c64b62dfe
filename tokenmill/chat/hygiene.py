"""Cleaning and PII redaction on each message's content; roles and structure untouched.

``explode_messages`` turns examples into one row per message in the etl
documents shape (id, source, text, meta), with the message's turn and role
in ``meta``, so ``tokenmill.etl.clean.clean_and_redact`` runs on them as it
runs on documents. ``assemble_messages`` puts the cleaned messages back
together; a conversation with a dropped message is rejected with that
message's reason (the earliest turn's). ``clean_messages`` does all three:
with ``quality_filters`` off (the default for conversations) it skips the
web-prose rules and calls only the etl normalizer (keeping each message's
line structure) and PII redactor.

Shapes:

    examples        id, source, messages array<struct<role, content>>
    message rows    id, source, text, meta ({"role": ..., "turn": n})
    cleaned rows    CLEAN_SCHEMA of etl/clean.py (text, reason, sample, pii, ...)
    assembled       id, source, messages, reason, sample
"""

from __future__ import annotations

from tokenmill.chat.validate import EMPTY_CONTENT, MESSAGES_SCHEMA
from tokenmill.etl.clean import CLEAN_SCHEMA, CleanRow, clean_and_redact, cleaner, normalize
from tokenmill.config.etl import EtlConfig

_TURN_SCHEMA = "struct<role:string,turn:int>"
# Messages are normalized like code: indentation and line breaks stay (answers hold
# code blocks and markdown); trailing spaces and runs of blank lines go.
MESSAGE_PRESET = "code"


def explode_messages(examples):
    """examples -> message rows (id, source, text, meta): one per message, in turn order."""
    from pyspark.sql import functions as F

    exploded = examples.select("id", "source", F.posexplode("messages").alias("turn", "m"))
    meta = F.to_json(F.struct(F.col("m.role").alias("role"), F.col("turn").alias("turn")))
    return exploded.select("id", "source", F.col("m.content").alias("text"), meta.alias("meta"))


def _clean_one(text: str | None, c, fix_text: bool) -> tuple:
    """(text, reason, sample, pii pairs) of one message."""
    fixed = normalize(text or "", MESSAGE_PRESET, fix_text)
    if not fixed:
        return None, EMPTY_CONTENT, "", None
    redacted, counts = c.redactor.redact(fixed)
    return redacted, None, None, list(counts.items()) or None


def _normalize_and_redact(cfg: EtlConfig):
    """A mapInArrow function: normalize + redact each text (no quality rules)."""

    def run(batches):
        import pyarrow as pa

        c = cleaner(cfg)
        for batch in batches:
            rows = [_clean_one(text, c, cfg.fix_text) for text in batch.column("text").to_pylist()]
            texts, reasons, samples, pii = (list(col) for col in zip(*rows)) if rows else ([], [], [], [])
            n = len(texts)
            yield pa.RecordBatch.from_arrays(
                [batch.column("id"), batch.column("source"), pa.array(texts, pa.string()), batch.column("meta"),
                 pa.array([len(t or "") for t in texts], pa.int32()), pa.nulls(n, pa.int32()),
                 pa.nulls(n, pa.float64()), pa.array(reasons, pa.string()), pa.array(samples, pa.string()),
                 pa.array(pii, pa.map_(pa.string(), pa.int32())), pa.nulls(n, pa.string())],
                names=list(CleanRow._fields))

    return run


def clean_message_rows(rows, cfg: EtlConfig, quality_filters: bool = False):
    """message rows -> cleaned rows (CLEAN_SCHEMA), one per message."""
    rows = rows.select("id", "source", "text", "meta")
    if quality_filters:
        return clean_and_redact(rows, cfg)
    return rows.mapInArrow(_normalize_and_redact(cfg), CLEAN_SCHEMA)


def assemble_messages(cleaned):
    """cleaned rows -> assembled (id, source, messages, reason, sample), one per conversation."""
    from pyspark.sql import functions as F

    turn = F.from_json("meta", _TURN_SCHEMA)
    msgs = cleaned.select("id", "source", turn["turn"].alias("turn"), turn["role"].alias("role"),
                          "text", "reason", "sample")
    grouped = msgs.groupBy("id", "source").agg(
        F.array_sort(F.collect_list(F.struct("turn", "role", "text"))).alias("turns"),
        F.min_by(F.struct("reason", "sample"), F.when(F.col("reason").isNotNull(), F.col("turn"))).alias("bad"),
    )
    # min_by ignores rows whose ordering value is null: "bad" is the earliest dropped message.
    messages = F.transform("turns", lambda t: F.struct(t["role"].alias("role"), t["text"].alias("content")))
    reason = F.col("bad.reason")
    return grouped.select(
        "id", "source",
        F.when(reason.isNull(), messages).cast(MESSAGES_SCHEMA).alias("messages"),
        reason.alias("reason"), F.col("bad.sample").alias("sample"),
    )


def clean_messages(examples, cfg: EtlConfig, quality_filters: bool = False):
    """examples -> assembled: every message cleaned and PII-redacted, bad conversations with a reason."""
    return assemble_messages(clean_message_rows(explode_messages(examples), cfg, quality_filters))
