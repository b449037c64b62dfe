"""Config of the tokenize stage: tokenizer and packing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenizeConfig:
    seq_len: int = 2048
