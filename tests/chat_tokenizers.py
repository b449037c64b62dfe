"""Tokenizers and model folders for the chat tests, built in-process (no hub)."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers

from tokenmill.config.tokenize import TokenizeConfig
from tokenmill.tokenize.tokenizer import train_bpe

# Llama-3-8B-Instruct's template, as published in its tokenizer_config.json.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# The common ChatML template (as in many Qwen / OpenHermes tokenizer_config.json files).
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ("<|endoftext|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
            "<|im_start|>", "<|im_end|>", "<pad>")
CORPUS = [
    "The river runs past the old mill and the village.",
    "What is the capital of France? Paris is the capital of France.",
    "You are a helpful assistant. Answer briefly and politely.",
    "Hello! How can I help you today? Thanks, goodbye.",
    "Support ticket: my order 1234 did not arrive; please check the tracking number.",
] * 20

_BPE: list[Tokenizer] = []


def bpe() -> Tokenizer:
    """A small byte-level BPE with the Llama-3 and ChatML control tokens (trained once per process)."""
    if not _BPE:
        cfg = TokenizeConfig(vocab_size=400, special_tokens=SPECIALS, min_frequency=2)
        _BPE.append(train_bpe(CORPUS, cfg))
    return Tokenizer.from_str(_BPE[0].to_str())


def model_dir(path: Path, tok: Tokenizer, config: dict) -> Path:
    """A model folder: tokenizer.json + tokenizer_config.json."""
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


def hf_tokenizer(tok: Tokenizer, config: dict):
    """transformers' view of the same tokenizer: the independent reference."""
    from transformers import PreTrainedTokenizerFast

    kwargs = {k: v["content"] if isinstance(v, dict) else v for k, v in config.items()
              if k in ("bos_token", "eos_token", "pad_token", "chat_template")}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tok.to_str()), **kwargs)


# A word-level tokenizer with ids small enough to write out by hand.
WORDS = ["<unk>", "<s>", "</s>", "<eot>", "system", "user", "assistant", "hi", "hello", "how", "fine"]


def words() -> Tokenizer:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(["<unk>", "<s>", "</s>", "<eot>"])
    return tok
