"""Config of chat / instruction fine-tuning data: fields, template, loss mask, length."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tokenmill.typed_config import require


@dataclass(frozen=True)
class ChatConfig:
    # chat: rows hold a list of messages; instruction: rows hold a prompt and a response.
    task: Literal["chat", "instruction"] = "chat"
    # Field names in the input rows.
    messages_field: str = "messages"
    role_field: str = "role"
    content_field: str = "content"
    prompt_field: str = "prompt"
    # The response field; rows without it use completion_field instead.
    response_field: str = "response"
    completion_field: str = "completion"
    # Which tokens are training targets: every assistant turn, the last one, or all tokens.
    train_on: Literal["assistant", "last", "all"] = "assistant"
    # An example longer than seq_len tokens: reject it, or drop its earliest
    # user/assistant pairs (the system message stays) until it fits.
    too_long: Literal["reject", "truncate"] = "reject"
    # Tokens per packed window; every example must fit in one.
    seq_len: int = 2048
    # auto: the tokenizer's own chat_template, else the built-in ChatML; chatml: always ChatML.
    template: Literal["auto", "chatml"] = "auto"
    # Web-prose quality rules (Gopher, bad words) on each message; off for conversations.
    quality_filters: bool = False
    # Include system messages in the text that dedup compares (a shared system
    # prompt would make unrelated conversations look alike).
    dedup_system: bool = False
    # Examples are hashed by id into this many packing groups (fixed, so the
    # windows do not depend on Spark's partitioning).
    pack_groups: int = 8

    # What the etl stage reads of this config (the rest is tokenize's): a change
    # of the loss mask or the length reruns tokenize, not the cleaning.
    ETL_FIELDS = ("task", "messages_field", "role_field", "content_field", "prompt_field", "response_field",
                  "completion_field", "quality_filters", "dedup_system")

    def etl_part(self) -> dict:
        return {name: getattr(self, name) for name in self.ETL_FIELDS}

    def __post_init__(self):
        for name in ("messages_field", "role_field", "content_field", "prompt_field", "response_field",
                     "completion_field"):
            require(bool(getattr(self, name)), name, "must name a field of the input rows")
        require(self.seq_len >= 2, "seq_len", f"must be at least 2, got {self.seq_len}")
        require(self.pack_groups >= 1, "pack_groups", f"must be at least 1, got {self.pack_groups}")
        require(not (self.task == "instruction" and self.too_long == "truncate"), "too_long",
                "instruction rows have no turns to drop; use too_long: reject")
