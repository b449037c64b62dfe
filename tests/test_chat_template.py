"""Chat templates: loading from tokenizer_config.json and rendering as transformers does."""

from __future__ import annotations

import hashlib
import json

import jinja2
import pytest
from chat_tokenizers import CHATML, LLAMA3, bpe, hf_tokenizer

from tokenmill.chat import template as t
from tokenmill.chat.validate import Message
from tokenmill.errors import UserError

CONV = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "Thanks <b>&</b> \u00e9t\u00e9!"},
    {"role": "assistant", "content": "  Goodbye!  "},
]
LLAMA_CFG = {"chat_template": LLAMA3, "eos_token": "<|eot_id|>",
             "bos_token": {"content": "<|begin_of_text|>", "lstrip": False, "special": True}}
CHATML_CFG = {"chat_template": CHATML, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}


def test_special_tokens_as_strings_or_content_dicts():
    tpl = t.from_config(LLAMA_CFG)
    assert (tpl.name, tpl.bos_token, tpl.eos_token, tpl.pad_token) == ("tokenizer", "<|begin_of_text|>",
                                                                       "<|eot_id|>", None)
    assert t.from_config(CHATML_CFG).tokens == (("eos_token", "<|im_end|>"), ("pad_token", "<|endoftext|>"))
    with pytest.raises(UserError, match="must be a string or an object"):
        t.from_config({"eos_token": 5})


def test_llama3_render_matches_transformers_text_and_ids():
    tok = bpe()
    hf = hf_tokenizer(tok, LLAMA_CFG)
    tpl = t.from_config(LLAMA_CFG)
    for conv, gen in ((CONV, False), (CONV[:4], True), (CONV[1:3], False)):
        text = t.render(tpl, conv, add_generation_prompt=gen)
        assert text == hf.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
        assert tok.encode(text, add_special_tokens=False).ids == hf.apply_chat_template(
            conv, tokenize=True, add_generation_prompt=gen)
    assert t.render(tpl, CONV[1:3]) == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                                        "What is the capital of France?<|eot_id|>"
                                        "<|start_header_id|>assistant<|end_header_id|>\n\nParis.<|eot_id|>")


def test_chatml_render_matches_transformers_and_takes_message_objects():
    tok = bpe()
    hf = hf_tokenizer(tok, CHATML_CFG)
    tpl = t.from_config(CHATML_CFG)
    for conv, gen in ((CONV, False), (CONV[1:4], True)):
        assert t.render(tpl, conv, gen) == hf.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen)
    msgs = [Message(m["role"], m["content"]) for m in CONV[1:3]]
    assert t.render(tpl, msgs) == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                                   "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                                   "<|im_start|>assistant\nParis.<|im_end|>\n")


def test_builtin_chatml_when_the_tokenizer_has_none():
    tpl = t.from_config({"eos_token": "<|im_end|>"})
    assert (tpl.name, tpl.source) == ("chatml", t.CHATML)
    assert t.render(tpl, CONV[1:3], add_generation_prompt=False) == (
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\nParis.<|im_end|>\n")
    assert t.render(tpl, CONV[1:2], add_generation_prompt=True).endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert t.from_config(LLAMA_CFG, choice="chatml").name == "chatml"


def test_tojson_raise_exception_and_generation_tags_like_transformers():
    src = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
           "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] | tojson }}{% endgeneration %}"
           "{% else %}{{ m['content'] | tojson(indent=1) }}{% endif %}{% endfor %}")
    cfg = {"chat_template": src, "eos_token": "<|endoftext|>"}
    tpl = t.from_config(cfg)
    hf = hf_tokenizer(bpe(), cfg)
    assert t.render(tpl, CONV[3:5]) == hf.apply_chat_template(CONV[3:5], tokenize=False)
    assert t.render(tpl, CONV[3:5]) == '"Thanks <b>&</b> \u00e9t\u00e9!""  Goodbye!  "'
    with pytest.raises(jinja2.TemplateError, match="no system role"):
        t.render(tpl, CONV)


def test_the_sandbox_refuses_unsafe_templates():
    tpl = t.from_config({"chat_template": "{{ messages.__class__.__mro__ }}", "eos_token": "x"})
    with pytest.raises(jinja2.exceptions.SecurityError):
        t.render(tpl, CONV)


def test_template_sources_and_hash(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(LLAMA_CFG))
    tpl = t.load_template(tmp_path)
    assert tpl.source == LLAMA3 and t.load_template(tmp_path / "tokenizer_config.json") == tpl
    assert tpl.sha256 == hashlib.sha256(LLAMA3.encode()).hexdigest()
    listed = {"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": CHATML}]}
    assert t.from_config(listed).source == CHATML
    own = tmp_path / "m"
    own.mkdir()
    (own / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
    (own / "chat_template.jinja").write_text(CHATML)
    assert (t.load_template(own).name, t.load_template(own).source) == ("tokenizer", CHATML)


def test_bad_configs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="tokenizer config not found"):
        t.load_template(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{oops")
    with pytest.raises(UserError, match="is not valid JSON"):
        t.load_template(tmp_path)
    with pytest.raises(UserError, match=r"chat template does not parse \(line 1"):
        t.from_config({"chat_template": "{% for m in messages %}"})
    with pytest.raises(UserError, match="must be a Jinja string"):
        t.from_config({"chat_template": 3})
