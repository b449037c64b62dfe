"""No row left for tokenize (or the chat shards): one line naming the stage that kept
none and its drops by reason, never "cannot train a tokenizer on an empty table"."""

from __future__ import annotations

import json

import pytest

from tokenmill.config import RunConfig, from_dict
from tokenmill.errors import UserError
from tokenmill.manifest import Manifest, StageRecord
from tokenmill.pipeline import run_stages

REJECTS = "tables/rejects lists each row with its reason (or see `tokenmill report`)"


def test_text_rows_all_rejected(spark, tmp_path):
    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"id": "a", "text": "hi"}\n{"id": "b", "text": "yo"}\n{oops\n')
    cfg = from_dict(RunConfig, {"inputs": [{"path": str(raw)}], "output": str(tmp_path / "out"),
                                "etl": {"pii": {"enabled": False}}})
    with pytest.raises(UserError) as caught:
        run_stages(spark, cfg, ["etl", "tokenize"])
    assert str(caught.value) == (
        f"no documents left to tokenize: etl kept 0 of 3 rows (too_short: 2, malformed_json: 1); {REJECTS}")
    assert not (tmp_path / "out" / "tokenizer.json").exists()


def test_chat_rows_without_messages(spark, tmp_path):
    from chat_tokenizers import LLAMA3, bpe, model_dir

    raw = tmp_path / "raw.jsonl"
    raw.write_text("".join(json.dumps(r) + "\n" for r in ({"id": "a", "text": 5}, {"id": "b", "messages": None})))
    model = model_dir(tmp_path / "model", bpe(), {"chat_template": LLAMA3, "bos_token": "<|begin_of_text|>",
                                                  "eos_token": "<|eot_id|>"})
    cfg = from_dict(RunConfig, {"inputs": [{"path": str(raw)}], "output": str(tmp_path / "out"),
                                "etl": {"pii": {"enabled": False}}, "tokenize": {"tokenizer": str(model), "seq_len": 64},
                                "chat": {}})
    with pytest.raises(UserError) as caught:
        run_stages(spark, cfg, ["etl", "tokenize"])
    assert str(caught.value) == f"no examples left to tokenize: etl kept 0 of 2 rows (no_messages: 2); {REJECTS}"


def _manifest(tmp_path, *records: StageRecord) -> Manifest:
    m = Manifest(tmp_path / "manifest.json")
    for rec in records:
        m.stages[rec.stage] = rec
    return m


def test_the_first_stage_that_kept_nothing_is_named(tmp_path):
    from tokenmill.tokenize.job import nothing_left

    chat_tokenize = StageRecord("tokenize", 5, 0, {"longer_than_seq_len": 4, "template_error": 1},
                                extra={"rows_unit": "examples"})
    m = _manifest(tmp_path, StageRecord("etl", 5, 5), StageRecord("dedup", 5, 5), chat_tokenize)
    assert str(nothing_left(m, "shards", "examples", "shard", "sequences")) == (
        "no examples left to shard: tokenize kept 0 of 5 examples (longer_than_seq_len: 4, template_error: 1); "
        f"{REJECTS}")
    # An earlier tokenize record (a rerun's) is not what the rerun found empty.
    assert "etl kept 0 of 2 rows (too_short: 2)" in str(nothing_left(
        _manifest(tmp_path, StageRecord("etl", 2, 0, {"too_short": 2}), StageRecord("dedup", 0, 0), chat_tokenize),
        "tokenize", "documents", "tokenize", "deduped"))


def test_an_empty_input_and_a_table_without_records(tmp_path):
    from tokenmill.tokenize.job import nothing_left

    m = _manifest(tmp_path, StageRecord("etl", 0, 0), StageRecord("dedup", 0, 0))
    assert str(nothing_left(m, "tokenize", "documents", "tokenize", "deduped")) == (
        "no documents left to tokenize: etl read 0 rows; check that --input names files (or a table) that hold rows")
    assert str(nothing_left(_manifest(tmp_path), "tokenize", "documents", "tokenize", "clean")) == (
        "no documents left to tokenize: tables/clean has no rows; rerun the stages before tokenize on an input "
        "that holds rows")
