"""Token ids and loss mask per example, from rendered prefixes (never guessed).

For each assistant turn i that is a target, the template renders the
conversation before it with the generation prompt (``before``) and the
conversation through it (``through``). Both texts must be prefixes of the
whole conversation's text, and their token ids prefixes of its ids; then
the tokens ``[len(before), len(through))`` are the turn's targets. A row
where that fails is rejected with the reason, because the template then
changes earlier tokens depending on later turns (and any mask would be a
guess). Whitespace tokens after the turn's last special token (ChatML's
newline after ``<|im_end|>``) are not targets: the model stops at the
special token.

``loss_mask[t] == 1``: token t is a target, predicted from the tokens
before it in the same example. The first token never is (nothing precedes
it). Every example ends with EOS: appended (not a target) when the
template's last token is not EOS (a target only with ``train_on: all``).

Instruction rows: [BOS] + prompt ids + response ids + EOS, each part
tokenized on its own (no template); targets: the response and EOS.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

import jinja2

from tokenmill.config.chat import ChatConfig
from tokenmill.chat.template import CHATML_TOKENS, ChatTemplate, render
from tokenmill.chat.validate import PROMPT, RESPONSE, Message
from tokenmill.errors import UserError

# Reject reasons of this step.
TEMPLATE_ERROR = "template_error"  # the template raised (e.g. a role it does not support)
TEMPLATE_NOT_PREFIX = "template_not_prefix"  # a rendered prefix is not a prefix of the whole text
TOKENS_NOT_PREFIX = "tokens_not_prefix"  # a prefix's token ids are not a prefix of the whole ids
SPECIAL_TOKEN_IN_CONTENT = "special_token_in_content"  # content would inject a control token
TOO_LONG = "longer_than_seq_len"
NO_TARGETS = "no_target_tokens"


@dataclass(frozen=True)
class TokenIds:
    eos_id: int
    bos_id: int | None
    pad_id: int
    special_ids: frozenset[int]
    special_texts: tuple[str, ...]

    def find_in(self, text: str) -> bool:
        """Whether text holds a special token's text (it would be encoded as that token)."""
        return bool(self.special_texts) and _alternation(self.special_texts).search(text) is not None


@lru_cache(maxsize=8)
def _alternation(texts: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True)))


@dataclass(frozen=True)
class Example:
    ids: tuple[int, ...]
    mask: tuple[int, ...]  # 1: a training target
    dropped_pairs: int = 0  # user/assistant pairs removed to fit seq_len


@dataclass(frozen=True)
class Encoded:
    """An example (reason None), or the reason it was rejected."""

    example: Example | None
    reason: str | None


def token_ids(tok, template: ChatTemplate) -> TokenIds:
    """The special ids an encoder needs; a template/tokenizer mismatch is a UserError."""
    specials = {i: t.content for i, t in tok.get_added_tokens_decoder().items() if t.special}

    def lookup(name: str, required: bool) -> int | None:
        text = template.token(name)
        if text is None and not required:
            return None
        tid = tok.token_to_id(text) if text is not None else None
        if tid is None:
            raise UserError(f"{name} {text!r} of tokenizer_config.json is not in the tokenizer's vocabulary; "
                            f"set {name} to one of its special tokens")
        return tid

    if template.name == "chatml":
        missing = [t for t in CHATML_TOKENS if tok.token_to_id(t) not in specials]
        if missing:
            raise UserError(f"the built-in ChatML template needs special tokens {missing} in the tokenizer; "
                            "add them, or use a tokenizer_config.json with its own chat_template")
    eos = lookup("eos_token", True)
    pad = lookup("pad_token", False)
    return TokenIds(eos, lookup("bos_token", False), eos if pad is None else pad, frozenset(specials),
                    tuple(sorted(specials.values())))


class ChatEncoder:
    """Encodes examples for one tokenizer, template, config and length (build once per worker).

    ``seq_len`` is the run's window length (``tokenize.seq_len``): an example
    must fit one window, or is rejected or truncated (``too_long``).
    """

    def __init__(self, tok, template: ChatTemplate, cfg: ChatConfig, seq_len: int):
        self.tok, self.template, self.cfg, self.seq_len = tok, template, cfg, seq_len
        self.special = token_ids(tok, template)

    def ids(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode(self, messages: tuple[Message, ...]) -> Encoded:
        """One validated example -> Encoded (ids + mask, or a reject reason)."""
        if any(self.special.find_in(m.content) for m in messages):
            return Encoded(None, SPECIAL_TOKEN_IN_CONTENT)
        if self.cfg.task == "instruction":
            return self._checked(Encoded(self.instruction(messages), None))
        try:
            return self._checked(self._fit_chat(messages))
        except jinja2.TemplateError:
            return Encoded(None, TEMPLATE_ERROR)

    def _checked(self, got: Encoded) -> Encoded:
        e = got.example
        if e is not None and len(e.ids) > self.seq_len:
            return Encoded(None, TOO_LONG)
        if e is not None and not any(e.mask):
            return Encoded(None, NO_TARGETS)  # teaches nothing
        return got

    # --- instruction rows ------------------------------------------------------------

    def instruction(self, messages) -> Example:
        parts = {m.role: m.content for m in messages}
        bos = [] if self.special.bos_id is None else [self.special.bos_id]
        head = bos + self.ids(parts[PROMPT])
        tail = self.ids(parts[RESPONSE]) + [self.special.eos_id]
        mask = [int(self.cfg.train_on == "all")] * len(head) + [1] * len(tail)
        return _example(head + tail, mask)

    # --- chat rows -------------------------------------------------------------------

    def _fit_chat(self, messages) -> Encoded:
        """Encode; when too long and too_long is truncate, drop the earliest pairs first."""
        head = 1 if messages[0].role == "system" else 0
        n_pairs = (len(messages) - head) // 2
        if self.cfg.too_long == "truncate":
            for drop in range(n_pairs):
                kept = messages[:head] + messages[head + 2 * drop:]
                if self._length(kept) <= self.seq_len:
                    return self._chat_with_drop(kept, drop)
            return Encoded(None, TOO_LONG)
        return self.chat(messages)

    def _chat_with_drop(self, messages, drop: int) -> Encoded:
        got = self.chat(messages)
        if got.example is not None:
            e = got.example
            got = Encoded(Example(e.ids, e.mask, drop), None)
        return got

    def _length(self, messages) -> int:
        ids = self.ids(render(self.template, messages))
        return len(ids) + int(not ids or ids[-1] != self.special.eos_id)

    def chat(self, messages) -> Encoded:
        text = render(self.template, messages)
        ids = self.ids(text)
        mask = [int(self.cfg.train_on == "all")] * len(ids)
        if self.cfg.train_on != "all":
            for i in self._target_turns(messages):
                span = self._turn_span(messages, i, text, ids)
                if isinstance(span, str):
                    return Encoded(None, span)
                mask[span[0]:span[1]] = [1] * (span[1] - span[0])
        if not ids or ids[-1] != self.special.eos_id:
            ids, mask = ids + [self.special.eos_id], mask + [int(self.cfg.train_on == "all")]
        return Encoded(_example(ids, mask), None)

    def _target_turns(self, messages) -> list[int]:
        turns = [i for i, m in enumerate(messages) if m.role == "assistant"]
        return turns[-1:] if self.cfg.train_on == "last" else turns

    def _turn_span(self, messages, i: int, text: str, ids: list[int]) -> tuple[int, int] | str:
        """[start, end) of assistant turn i's targets in ids, or a reject reason."""
        before = render(self.template, messages[:i], add_generation_prompt=True)
        through = render(self.template, messages[:i + 1])
        if not (text.startswith(before) and text.startswith(through)):
            return TEMPLATE_NOT_PREFIX
        ids_before, ids_through = self.ids(before), self.ids(through)
        if ids[:len(ids_before)] != ids_before or ids[:len(ids_through)] != ids_through:
            return TOKENS_NOT_PREFIX
        return len(ids_before), self._trim_end(ids_through, len(ids_before))

    def _trim_end(self, ids: list[int], start: int) -> int:
        """End of the targets: after the last special token when only whitespace follows it."""
        special = [j for j in range(start, len(ids)) if ids[j] in self.special.special_ids]
        if special and all(self.tok.decode([t]).isspace() for t in ids[special[-1] + 1:]):
            return special[-1] + 1
        return len(ids)


def _example(ids: list[int], mask: list[int]) -> Example:
    if mask:
        mask[0] = 0  # nothing to predict the first token from
    return Example(tuple(ids), tuple(mask))


_ENCODERS: dict[str, ChatEncoder] = {}


def worker_encoder(tokenizer_json: str, template: ChatTemplate, cfg: ChatConfig, seq_len: int) -> ChatEncoder:
    """This Python worker's encoder, built once per (tokenizer, template, config, length)."""
    key = hashlib.sha256(f"{tokenizer_json}\0{template!r}\0{cfg!r}\0{seq_len}".encode()).hexdigest()
    if key not in _ENCODERS:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(tokenizer_json)
        tok.no_padding()
        tok.no_truncation()
        _ENCODERS[key] = ChatEncoder(tok, template, cfg, seq_len)
    return _ENCODERS[key]


# --- Spark ----------------------------------------------------------------------------

ENCODED_SCHEMA = ("id string, source string, tokens array<int>, loss_mask array<tinyint>, n_tokens int, "
                  "n_targets int, dropped_pairs int, reason string, sample string")
SAMPLE_CHARS = 200


def _encode_batches(tokenizer_json: str, template: ChatTemplate, cfg: ChatConfig, seq_len: int):
    def run(batches):
        import pyarrow as pa

        from tokenmill.chat.validate import dedup_text

        enc = worker_encoder(tokenizer_json, template, cfg, seq_len)
        for batch in batches:
            convs = [tuple(Message(m["role"], m["content"]) for m in ms) for ms in batch.column("messages").to_pylist()]
            got = [enc.encode(c) for c in convs]
            ex = [g.example for g in got]
            yield pa.RecordBatch.from_arrays([
                batch.column("id"), batch.column("source"),
                pa.array([None if e is None else e.ids for e in ex], pa.list_(pa.int32())),
                pa.array([None if e is None else e.mask for e in ex], pa.list_(pa.int8())),
                pa.array([0 if e is None else len(e.ids) for e in ex], pa.int32()),
                pa.array([0 if e is None else sum(e.mask) for e in ex], pa.int32()),
                pa.array([0 if e is None else e.dropped_pairs for e in ex], pa.int32()),
                pa.array([g.reason for g in got], pa.string()),
                pa.array([None if g.reason is None else dedup_text(c, True)[:SAMPLE_CHARS]
                          for g, c in zip(got, convs)], pa.string()),
            ], names=["id", "source", "tokens", "loss_mask", "n_tokens", "n_targets", "dropped_pairs", "reason",
                      "sample"])

    return run


def encode_examples(examples, tokenizer_json: str, template: ChatTemplate, cfg: ChatConfig, seq_len: int):
    """examples (id, source, messages) -> ENCODED_SCHEMA rows, one per example (reason null: kept).

    ``tokenizer_json``: the tokenizer.json text (shipped to the workers with the plan).
    """
    return examples.select("id", "source", "messages").mapInArrow(
        _encode_batches(tokenizer_json, template, cfg, seq_len), ENCODED_SCHEMA)


def split_encoded(encoded, stage: str):
    """encoded -> (tokenized examples: id, source, tokens, loss_mask, n_tokens, n_targets; rejects)."""
    from pyspark.sql import functions as F

    kept = encoded.where(F.col("reason").isNull()).select(
        "id", "source", "tokens", "loss_mask", "n_tokens", "n_targets")
    rejects = (encoded.where(F.col("reason").isNotNull()).withColumn("stage", F.lit(stage))
               .select("id", "source", "stage", "reason", "sample"))
    return kept, rejects
