"""Config of chat / instruction fine-tuning data: fields, template, loss mask.

The window length and the packing groups are the tokenize section's
(``tokenize.seq_len``, ``tokenize.pack_groups``), as for plain text: one
setting whatever the data, the one the base model's context is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

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
    # An example longer than tokenize.seq_len tokens: reject it, or drop its
    # earliest user/assistant pairs (the system message stays) until it fits.
    too_long: Literal["reject", "truncate"] = "reject"
    # auto: the tokenizer's own chat_template, else the built-in ChatML; chatml: always ChatML.
    template: Literal["auto", "chatml"] = "auto"
    # Web-prose quality rules (Gopher, bad words) on each message; off for conversations.
    quality_filters: bool = False
    # Include system messages in the text that dedup compares (a shared system
    # prompt would make unrelated conversations look alike).
    dedup_system: bool = False

    # What the etl stage reads of this config (the rest is tokenize's): a change
    # of the loss mask reruns tokenize, not the cleaning.
    ETL_FIELDS: ClassVar[tuple[str, ...]] = (
        "task", "messages_field", "role_field", "content_field", "prompt_field", "response_field",
        "completion_field", "quality_filters", "dedup_system")

    # Fields that were here once -> where they are set now (a config that still
    # sets one gets an error naming the new place).
    MOVED: ClassVar[dict[str, str]] = {"seq_len": "tokenize.seq_len", "pack_groups": "tokenize.pack_groups"}

    def etl_part(self) -> dict:
        return {name: getattr(self, name) for name in self.ETL_FIELDS}

    def __post_init__(self):
        for name in ("messages_field", "role_field", "content_field", "prompt_field", "response_field",
                     "completion_field"):
            require(bool(getattr(self, name)), name, "must name a field of the input rows")
        require(not (self.task == "instruction" and self.too_long == "truncate"), "too_long",
                "instruction rows have no turns to drop; use too_long: reject")
