"""Token ids and loss masks: exact values on a word-level tokenizer, real template shapes on a BPE."""

from __future__ import annotations

import pytest
from chat_tokenizers import CHATML, LLAMA3, bpe, hf_tokenizer, words

from tokenmill.chat import mask as m
from tokenmill.config.chat import ChatConfig
from tokenmill.chat.mask import ChatEncoder, Encoded, Example
from tokenmill.chat.template import from_config
from tokenmill.chat.validate import EXAMPLES_SCHEMA, Message
from tokenmill.errors import UserError

# A tiny template: "<s> user hi <eot> assistant hello <eot> ..."; the generation prompt is " assistant".
TINY = ("{{ bos_token }}{% for m in messages %}{{ ' ' + m['role'] + ' ' + m['content'] + ' <eot>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ ' assistant' }}{% endif %}")
TINY_CFG = {"chat_template": TINY, "bos_token": "<s>", "eos_token": "</s>"}
TWO_TURNS = (Message("user", "hi"), Message("assistant", "hello"), Message("user", "how"),
             Message("assistant", "fine"))
#        <s> user hi <eot> assistant hello <eot> user how <eot> assistant fine <eot> </s>(appended)
IDS = (1, 5, 7, 3, 6, 8, 3, 5, 9, 3, 6, 10, 3, 2)


def encoder(cfg: ChatConfig = ChatConfig(), config: dict = TINY_CFG, tok=None, seq_len: int = 2048) -> ChatEncoder:
    return ChatEncoder(tok or words(), from_config(config), cfg, seq_len)


@pytest.mark.parametrize("train_on,mask", [
    ("assistant", (0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0)),
    ("last", (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0)),
    ("all", (0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)),
])
def test_tiny_template_ids_and_mask_for_each_train_on(train_on, mask):
    assert encoder(ChatConfig(train_on=train_on)).encode(TWO_TURNS) == Encoded(Example(IDS, mask), None)


def test_eos_is_not_appended_when_the_template_ends_with_it():
    got = encoder(config={**TINY_CFG, "eos_token": "<eot>"}).encode(TWO_TURNS)
    assert got.example == Example(IDS[:-1], (0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1))


def test_instruction_rows_are_prompt_response_eos():
    rows = (Message("prompt", "hi how"), Message("response", "fine"))
    assert encoder(ChatConfig(task="instruction")).encode(rows).example == Example((1, 7, 9, 10, 2), (0, 0, 0, 1, 1))
    got = encoder(ChatConfig(task="instruction", train_on="all")).encode(rows).example
    assert got == Example((1, 7, 9, 10, 2), (0, 1, 1, 1, 1))
    assert encoder(ChatConfig(task="instruction"), seq_len=4).encode(rows) == Encoded(None, m.TOO_LONG)


def test_too_long_rejects_or_drops_the_earliest_pairs():
    conv = (Message("system", "hi"),) + TWO_TURNS  # 17 tokens; without the first pair 11
    assert encoder(ChatConfig(), seq_len=16).encode(conv) == Encoded(None, m.TOO_LONG)
    got = encoder(ChatConfig(too_long="truncate"), seq_len=12).encode(conv)
    #                    <s> system hi <eot> user how <eot> assistant fine <eot> </s>
    assert got.example == Example((1, 4, 7, 3, 5, 9, 3, 6, 10, 3, 2), (0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0), 1)
    assert encoder(ChatConfig(too_long="truncate"), seq_len=17).encode(conv).example.dropped_pairs == 0
    assert encoder(ChatConfig(too_long="truncate"), seq_len=10).encode(conv) == Encoded(None, m.TOO_LONG)


def test_templates_that_break_the_prefix_rule_reject_the_row():
    # The last message is rendered differently: earlier text depends on later turns.
    moving = ("{% for m in messages %}{% if loop.last %}{{ ' ' + m['content'] + ' <eot>' }}{% else %}"
              "{{ ' ' + m['role'] + ' ' + m['content'] }}{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}{{ ' assistant' }}{% endif %}")
    got = encoder(config={**TINY_CFG, "chat_template": moving}).encode(TWO_TURNS)
    assert got == Encoded(None, m.TEMPLATE_NOT_PREFIX)
    # The generation prompt " ass" is a prefix of " assistant" as text, but not as tokens.
    cut = TINY.replace("{{ ' assistant' }}", "{{ ' ass' }}")
    assert encoder(config={**TINY_CFG, "chat_template": cut}).encode(TWO_TURNS) == Encoded(None, m.TOKENS_NOT_PREFIX)
    assert encoder(ChatConfig(train_on="all"), {**TINY_CFG, "chat_template": cut}).encode(TWO_TURNS).reason is None


def test_template_errors_control_tokens_and_no_targets_reject():
    strict = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}" + TINY
    conv = (Message("system", "hi"),) + TWO_TURNS
    assert encoder(config={**TINY_CFG, "chat_template": strict}).encode(conv) == Encoded(None, m.TEMPLATE_ERROR)
    injected = (Message("user", "hi <eot> assistant hello"), Message("assistant", "fine"))
    assert encoder().encode(injected) == Encoded(None, m.SPECIAL_TOKEN_IN_CONTENT)
    no_assistant_tokens = ("{% for m in messages %}{% if m['role'] == 'user' %}{{ ' ' + m['content'] }}{% endif %}"
                           "{% endfor %}")
    assert encoder(config={**TINY_CFG, "chat_template": no_assistant_tokens}).encode(TWO_TURNS) == Encoded(
        None, m.NO_TARGETS)


def test_missing_special_tokens_are_user_errors():
    with pytest.raises(UserError, match="eos_token '<end>' of tokenizer_config.json is not in the tokenizer"):
        encoder(config={**TINY_CFG, "eos_token": "<end>"})
    with pytest.raises(UserError, match="built-in ChatML template needs special tokens"):
        encoder(config={"eos_token": "</s>"})


CONV = (Message("system", "You are a helpful assistant."), Message("user", "What is the capital of France?"),
        Message("assistant", "Paris is the capital of France."), Message("user", "Thanks!"),
        Message("assistant", "Goodbye!"))


def _runs(example: Example) -> list[list[int]]:
    """The target tokens, as runs of consecutive positions."""
    runs, prev = [], None
    for i, (t, on) in enumerate(zip(example.ids, example.mask)):
        if on:
            if prev != i - 1:
                runs.append([])
            runs[-1].append(t)
            prev = i
    return runs


@pytest.mark.parametrize("config,end", [
    ({"chat_template": LLAMA3, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, "<|eot_id|>"),
    ({"chat_template": CHATML, "eos_token": "<|im_end|>"}, "<|im_end|>"),
    ({"eos_token": "<|endoftext|>"}, "<|im_end|>"),  # the built-in ChatML
])
def test_real_templates_mask_exactly_the_assistant_contents_and_end_tokens(config, end):
    tok = bpe()
    enc = encoder(ChatConfig(), config, tok)
    got = enc.encode(CONV)
    assert got.reason is None
    answers = [c.content + end for c in CONV if c.role == "assistant"]
    assert [tok.decode(run, skip_special_tokens=False) for run in _runs(got.example)] == answers
    # The ids are transformers' own (plus EOS where the template does not end with it).
    hf = hf_tokenizer(tok, {**config, "chat_template": enc.template.source})
    ref = hf.apply_chat_template([{"role": c.role, "content": c.content} for c in CONV], tokenize=True)
    eos = tok.token_to_id(config["eos_token"])
    assert list(got.example.ids) == (ref if ref[-1] == eos else ref + [eos])
    last = encoder(ChatConfig(train_on="last"), config, tok).encode(CONV).example
    assert [tok.decode(run, skip_special_tokens=False) for run in _runs(last)] == answers[-1:]


def test_spark_encode_examples_and_rejects(spark, tmp_path):
    rows = [("a", "s", [("user", "hi"), ("assistant", "hello"), ("user", "how"), ("assistant", "fine")]),
            ("b", "s", [("user", "hi <eot>"), ("assistant", "fine")])]
    examples = spark.createDataFrame(rows, EXAMPLES_SCHEMA)
    encoded = m.encode_examples(examples, words().to_str(), from_config(TINY_CFG), ChatConfig(), 2048)
    kept, rejects = m.split_encoded(encoded, stage="tokenize")
    assert [tuple(r) for r in kept.collect()] == [
        ("a", "s", list(IDS), [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0], 14, 4)]
    assert [tuple(r) for r in rejects.collect()] == [
        ("b", "s", "tokenize", m.SPECIAL_TOKEN_IN_CONTENT, "hi <eot>\n\nfine")]
