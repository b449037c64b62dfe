"""Validate chat and instruction rows: each failure is a reject with its own reason.

A raw row arrives as JSON text (``record``: the whole input row). A valid
row becomes a list of ``Message``: chat rows keep their messages (roles
system / user / assistant); instruction rows become two messages with the
roles ``prompt`` and ``response``, so cleaning and PII redaction treat both
kinds alike. ``check_*`` are pure functions on Python values; the Spark
transforms at the bottom apply them to DataFrames.

Spark shapes:

    records   id string, source string, record string (JSON)
    examples  id string, source string, messages array<struct<role, content>>
    rejects   id string, source string, stage string, reason string, sample string
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tokenmill.config.chat import ChatConfig

ROLES = ("system", "user", "assistant")
PROMPT, RESPONSE = "prompt", "response"  # roles of an instruction row's two messages

# Reject reasons, in the order they are checked.
MALFORMED_RECORD = "malformed_record"  # record is not a JSON object
# A missing or null field gets the "empty"/"no" reason; a value of the wrong type the "not" one.
MESSAGES_NOT_LIST = "messages_not_list"
NO_MESSAGES = "no_messages"  # missing, null or an empty list
MESSAGE_NOT_OBJECT = "message_not_object"
UNKNOWN_ROLE = "unknown_role"  # missing, null or not one of ROLES
CONTENT_NOT_STRING = "content_not_string"
EMPTY_CONTENT = "empty_content"  # missing, null, empty or only whitespace
SYSTEM_NOT_FIRST = "system_not_first"
NO_ASSISTANT_TURN = "no_assistant_turn"
NOT_ALTERNATING = "not_alternating"  # after the system message: user, assistant, user, ...
LAST_NOT_ASSISTANT = "last_not_assistant"
PROMPT_NOT_STRING = "prompt_not_string"
EMPTY_PROMPT = "empty_prompt"  # missing, null, empty or only whitespace
RESPONSE_NOT_STRING = "response_not_string"
EMPTY_RESPONSE = "empty_response"

MESSAGES_SCHEMA = "array<struct<role:string,content:string>>"
EXAMPLES_SCHEMA = f"id string, source string, messages {MESSAGES_SCHEMA}"
VALIDATED_SCHEMA = f"{EXAMPLES_SCHEMA}, reason string, sample string"
REJECT_COLUMNS = ["id", "source", "stage", "reason", "sample"]
SAMPLE_CHARS = 200
DEDUP_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class Checked:
    """A row's messages when valid (reason None), else the reason."""

    messages: tuple[Message, ...] | None
    reason: str | None


def _reject(reason: str) -> Checked:
    return Checked(None, reason)


def _is_empty(text: str) -> bool:
    return not text or text.isspace()


def check_messages(messages: Any, cfg: ChatConfig) -> Checked:
    """A chat row's ``messages`` value (None when the row has none) -> Checked."""
    if messages is None or messages == []:
        return _reject(NO_MESSAGES)
    if not isinstance(messages, list):
        return _reject(MESSAGES_NOT_LIST)
    out = []
    for m in messages:
        if not isinstance(m, dict):
            return _reject(MESSAGE_NOT_OBJECT)
        role, content = m.get(cfg.role_field), m.get(cfg.content_field)
        if role not in ROLES:
            return _reject(UNKNOWN_ROLE)
        reason = _check_text(content, CONTENT_NOT_STRING, EMPTY_CONTENT)
        if reason:
            return _reject(reason)
        out.append(Message(role, content))
    return Checked(tuple(out), check_turns([m.role for m in out]))


def check_turns(roles: list[str]) -> str | None:
    """Turn order of valid roles: [system] user assistant (user assistant)*."""
    if "system" in roles[1:]:
        return SYSTEM_NOT_FIRST
    turns = roles[1:] if roles[0] == "system" else roles
    if "assistant" not in turns:
        return NO_ASSISTANT_TURN
    if any(role != ("user" if i % 2 == 0 else "assistant") for i, role in enumerate(turns)):
        return NOT_ALTERNATING
    if turns[-1] != "assistant":
        return LAST_NOT_ASSISTANT
    return None


def _check_text(value: Any, not_string: str, empty: str) -> str | None:
    if value is None:
        return empty
    if not isinstance(value, str):
        return not_string
    return empty if _is_empty(value) else None


def check_instruction(row: dict, cfg: ChatConfig) -> Checked:
    """An instruction row -> Checked with a prompt and a response message."""
    prompt = row.get(cfg.prompt_field)
    response = row.get(cfg.response_field)
    if response is None:
        response = row.get(cfg.completion_field)
    reason = (_check_text(prompt, PROMPT_NOT_STRING, EMPTY_PROMPT)
              or _check_text(response, RESPONSE_NOT_STRING, EMPTY_RESPONSE))
    if reason:
        return _reject(reason)
    return Checked((Message(PROMPT, prompt), Message(RESPONSE, response)), None)


def check_row(row: Any, cfg: ChatConfig) -> Checked:
    """One parsed input row (a dict) -> Checked, by ``cfg.task``."""
    if not isinstance(row, dict):
        return _reject(MALFORMED_RECORD)
    if cfg.task == "instruction":
        return check_instruction(row, cfg)
    return check_messages(row.get(cfg.messages_field), cfg)


def check_record(record: str | None, cfg: ChatConfig) -> Checked:
    """A row as JSON text -> Checked."""
    try:
        row = json.loads(record) if record is not None else None
    except ValueError:
        return _reject(MALFORMED_RECORD)
    return check_row(row, cfg)


def dedup_text(messages, include_system: bool = False) -> str:
    """The conversation's text for dedup: contents in turn order, blank-line separated.

    ``messages``: Message objects or (role, content) pairs / Spark Rows.
    """
    parts = []
    for m in messages:
        role, content = (m.role, m.content) if hasattr(m, "role") else m
        if role != "system" or include_system:
            parts.append(content)
    return DEDUP_SEPARATOR.join(parts)


# --- Spark ----------------------------------------------------------------------------


def records_from_table(df, id_column: str = "id", source: str | None = None):
    """Any DataFrame -> records (id, source, record): each row as JSON text."""
    from pyspark.sql import functions as F

    label = F.col("source") if source is None and "source" in df.columns else F.lit(source or "")
    return df.select(F.col(id_column).cast("string").alias("id"), label.alias("source"),
                     F.to_json(F.struct(*[F.col(c) for c in df.columns])).alias("record"))


def _validate_batches(cfg: ChatConfig):
    def run(batches):
        import pyarrow as pa

        schema = pa.schema([
            ("id", pa.string()), ("source", pa.string()),
            ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            ("reason", pa.string()), ("sample", pa.string()),
        ])
        for batch in batches:
            records = batch.column("record").to_pylist()
            checked = [check_record(r, cfg) for r in records]
            messages = [None if c.messages is None else [{"role": m.role, "content": m.content}
                                                         for m in c.messages] for c in checked]
            samples = [None if c.reason is None else (r or "")[:SAMPLE_CHARS] for c, r in zip(checked, records)]
            yield pa.RecordBatch.from_arrays(
                [batch.column("id"), batch.column("source"), pa.array(messages, schema.field("messages").type),
                 pa.array([c.reason for c in checked], pa.string()), pa.array(samples, pa.string())],
                schema=schema)

    return run


def validate(records, cfg: ChatConfig):
    """records -> VALIDATED_SCHEMA rows, one per record (reason null: kept)."""
    return records.select("id", "source", "record").mapInArrow(_validate_batches(cfg), VALIDATED_SCHEMA)


def split_rejects(validated, stage: str):
    """validated -> (examples, rejects). Samples are raw: redact them
    (``tokenmill.etl.clean.redact_samples``) before writing rejects."""
    from pyspark.sql import functions as F

    kept = validated.where(F.col("reason").isNull()).select("id", "source", "messages")
    rejects = (validated.where(F.col("reason").isNotNull())
               .withColumn("stage", F.lit(stage)).select(*REJECT_COLUMNS))
    return kept, rejects


def with_dedup_text(examples, cfg: ChatConfig):
    """examples -> examples + ``text`` (the conversation text dedup compares)."""
    from pyspark.sql import functions as F

    include = cfg.dedup_system
    keep = F.filter("messages", lambda m: F.lit(include) | (m["role"] != F.lit("system")))
    return examples.withColumn("text", F.array_join(F.transform(keep, lambda m: m["content"]), DEDUP_SEPARATOR))
