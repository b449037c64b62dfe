"""Config of the tokenize stage: tokenizer and packing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tokenmill.typed_config import require

AUTO = "auto"
DEFAULT_EOS = "<|endoftext|>"


@dataclass(frozen=True)
class TokenizeConfig:
    # A tokenizer.json, or a model folder holding one (a Hugging Face checkpoint:
    # its tokenizer_config.json names EOS and BOS). Local or /Volumes path.
    # None: train a byte-level BPE on the table.
    tokenizer: str | None = None
    # Training a tokenizer: target vocabulary, special tokens, sample size and seed.
    # The sample is at most train_docs documents and about train_bytes of text
    # (0: no byte limit), picked at random by a seeded hash of the id. Training
    # time grows with the bytes; 32 MB cost 0.7% in bytes per token against the
    # whole 240 MB of a source-code corpus, and trained in a sixth of the time.
    vocab_size: int = 8192
    special_tokens: tuple[str, ...] = ("<|endoftext|>",)
    min_frequency: int = 2
    train_docs: int = 20000
    train_bytes: int = 32_000_000
    train_seed: int = 0
    # Appended to every document; must be a special token of the tokenizer.
    # "auto": a model folder's EOS (tokenizer_config.json, else
    # generation_config.json), else <|endoftext|>.
    eos_token: str = "auto"
    # Prepended to every document when set. "auto": a model folder's BOS when
    # its tokenizer adds one itself (Llama's <|begin_of_text|>), else none.
    bos_token: str | None = "auto"
    # Tokens per packed sequence, whatever the kind of data (one setting, the one
    # a base model's context is checked against). Text fills each exactly (no
    # padding); a variant that packs whole examples pads, and each must fit one.
    seq_len: int = 2048
    # Documents are hashed into this many packing groups (fixed, so the packed
    # sequences do not depend on how Spark partitions the input). Each group's
    # leftover tail (< seq_len tokens) is dropped and counted.
    pack_groups: int = 8
    # Input table: "auto" reads deduped when it exists, else clean.
    input_table: Literal["auto", "deduped", "clean", "documents"] = "auto"

    def __post_init__(self):
        require(self.seq_len >= 2, "seq_len", f"must be at least 2, got {self.seq_len}")
        require(self.pack_groups >= 1, "pack_groups", f"must be at least 1, got {self.pack_groups}")
        require(self.vocab_size >= 260, "vocab_size",
                f"must be at least 260 (256 bytes + special tokens), got {self.vocab_size}")
        require(self.train_docs >= 1, "train_docs", f"must be at least 1, got {self.train_docs}")
        require(self.train_bytes >= 0, "train_bytes", f"must be 0 (no limit) or more, got {self.train_bytes}")
        require(self.min_frequency >= 1, "min_frequency", f"must be at least 1, got {self.min_frequency}")
        specials = set(self.special_tokens)
        if self.tokenizer is None:
            require(self.eos_token in specials | {AUTO}, "eos_token",
                    f"{self.eos_token!r} must be one of special_tokens {list(self.special_tokens)}")
            require(self.bos_token in specials | {None, AUTO}, "bos_token",
                    f"{self.bos_token!r} must be one of special_tokens {list(self.special_tokens)}")
