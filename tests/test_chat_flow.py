"""The data side end to end: records -> validate -> clean + PII -> template + mask -> pack -> shards."""

from __future__ import annotations

import json
from collections import Counter

from chat_tokenizers import LLAMA3, bpe

from tokenmill.chat import mask, validate
from tokenmill.config.chat import ChatConfig
from tokenmill.chat.hygiene import clean_messages
from tokenmill.chat.pack import pack_examples, packing_stats
from tokenmill.chat.shards import SftShardSpec, write_shards
from tokenmill.chat.template import from_config
from tokenmill.config.etl import EtlConfig, PiiConfig


def test_every_row_is_accounted_for_from_records_to_shards(spark, tmp_path):
    cfg, seq_len = ChatConfig(), 64
    tok = bpe()
    tpl = from_config({"chat_template": LLAMA3, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})
    good = [{"messages": [{"role": "user", "content": f"Hello {i}, mail me at jo{i}@example.com"},
                          {"role": "assistant", "content": "Thanks, goodbye."}]} for i in range(12)]
    rows = good + [
        {"messages": [{"role": "user", "content": "hi"}]},  # no assistant turn
        {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "\x00"}]},  # emptied
        {"messages": [{"role": "user", "content": "The river " * 30}, {"role": "assistant", "content": "ok"}]},
    ]
    records = spark.createDataFrame([(f"r{i:02d}", "tickets", json.dumps(r)) for i, r in enumerate(rows)],
                                    "id string, source string, record string")

    # Each step's output is cached, as a stage writes its table before the next step reads it.
    examples, rejects_v = validate.split_rejects(validate.validate(records, cfg).cache(), "etl")
    cleaned = clean_messages(examples, EtlConfig(pii=PiiConfig(entities=("EMAIL_ADDRESS",)))).cache()
    clean_ok = cleaned.where("reason is null").select("id", "source", "messages")
    encoded_all = mask.encode_examples(clean_ok, tok.to_str(), tpl, cfg, seq_len).cache()
    encoded, rejects_m = mask.split_encoded(encoded_all, "tokenize")
    windows = pack_examples(encoded, seq_len, pad_id=tok.token_to_id("<|eot_id|>"), groups=2).cache()

    reasons = Counter(r.reason for r in rejects_v.collect())
    reasons += Counter(r.reason for r in cleaned.where("reason is not null").collect())
    reasons += Counter(r.reason for r in rejects_m.collect())
    assert reasons == {validate.NO_ASSISTANT_TURN: 1, validate.EMPTY_CONTENT: 1, mask.TOO_LONG: 1}
    kept = encoded.collect()
    assert len(kept) + sum(reasons.values()) == len(rows)
    assert all("<EMAIL>" in tok.decode(r.tokens) for r in kept)
    stats = packing_stats(windows, seq_len)
    assert (stats.examples, stats.targets) == (12, sum(r.n_targets for r in kept))

    spec = SftShardSpec(seq_len=seq_len, dtype="uint16", vocab_size=tok.get_vocab_size(), eos_id=tok.token_to_id(
        "<|eot_id|>"), bos_id=tok.token_to_id("<|begin_of_text|>"), pad_id=tok.token_to_id("<|eot_id|>"),
        tokenizer_sha256="0" * 64, template_sha256=tpl.sha256, val_fraction=0.0, compression="zstd")
    dataset = write_shards(windows, spec, str(tmp_path / "sft"))
    assert dataset["splits"]["train"]["examples"] == 12 and dataset["splits"]["val"]["sequences"] == 0
    assert dataset["splits"]["train"]["target_tokens"] == stats.targets
    assert dataset["template_sha256"] == tpl.sha256
