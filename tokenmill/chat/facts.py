"""What the chat stages record, as typed values (``tokenmill.facts`` for the base stages).

Each class names the variant (``VARIANT = "chat"``), so its records carry
that tag and a reader finds them with ``find(manifest)``: the data card and
``tokenmill finetune`` show examples, targets and packing for a chat run,
sequences and tokens for a plain one, without reading any string of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenmill.facts import EtlFacts, ShardFolderFacts, StageFacts

NAME = "chat"  # the variant: the run config section that asks for it


@dataclass(frozen=True, kw_only=True)
class ChatEtlFacts(EtlFacts):
    """The etl facts of a chat run: the base figures (ingest, clean, PII), so readers of those
    read both kinds of run, plus the row kind and the validation step."""

    VARIANT = NAME

    task: str  # chat or instruction
    validate: dict[str, Any]  # rows_in, rows_out, dropped by reason: records checked as conversations


@dataclass(frozen=True)
class ChatTokenizeFacts(StageFacts):
    """What tokenize recorded for a chat / instruction run."""

    STAGE = "tokenize"
    VARIANT = NAME

    task: str  # chat or instruction
    input_table: str
    template_name: str  # tokenizer (the model's own), chatml, or none (instruction rows)
    template_sha256: str | None  # None for instruction rows
    tokenizer_sha256: str
    tokenizer_source: str
    vocab_size: int
    dtype: str
    eos_id: int
    bos_id: int | None
    pad_id: int
    seq_len: int
    pack_groups: int
    examples: int
    windows: int
    tokens: int  # example tokens (not padding)
    target_tokens: int
    pad_tokens: int
    truncated_examples: int  # earliest turns dropped to fit (too_long: truncate)
    lengths: dict[str, float]  # tokens per example: min, p50, p90, p99, max, mean
    packing: dict[str, Any]  # PackingStats.report(): packed vs one example per window
    rows_unit: str = "examples"


@dataclass(frozen=True, kw_only=True)
class ChatShardsFacts(ShardFolderFacts):
    """What the shards stage recorded for a chat run: where, and dataset.json (tokenmill-mds-sft-v1),
    whose splits hold sequences, examples, target and pad tokens, tokens, shards and bytes."""

    VARIANT = NAME

    # As in S/dataset.json, past the fields every format has.
    columns: dict[str, str]  # MDS column -> encoding
    pad_id: int
    template_sha256: str | None  # None for instruction rows
    # The stage's own figures.
    seed: int
    compression: str
    lineage: dict[str, Any]
    rows_unit: str = "sequences"
