"""Flags and config values that need no data are checked first: one line, exit 2,
no Spark session started, no output folder made, no checkpoint loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_errors import one_line_error

from tokenmill import spark as spark_module
from tokenmill.cli import main
from train_fixture import TINY_HF

TRAIN_FIELDS = "activation_checkpointing, checkpoint, compile, data, device, eval_batches, eval_every"
OPTIM_FIELDS = "betas, eps, grad_clip, lr, min_lr_ratio, warmup_steps, weight_decay"
ETL_FIELDS = "filters, fix_text, ingest, partitions, pii, preset, reject_sample_chars"


@pytest.fixture
def no_spark(monkeypatch):
    """Starting a Spark session fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a Spark session was started")

    monkeypatch.setattr(spark_module, "get_spark", refuse)


@pytest.fixture
def model(tmp_path) -> Path:
    """A Hugging Face folder whose config.json says 256 tokens of context. It holds
    no weights: the checks before Spark read config.json only."""
    root = tmp_path / "model"
    root.mkdir()
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512, **TINY_HF["llama"]}
    (root / "config.json").write_text(json.dumps(config))
    (root / "tokenizer.json").write_text("{}")
    return root


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "chat.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n')
    return path


def finetune(model: Path, data: Path, out: Path, *flags: str) -> list[str]:
    return ["finetune", "--model", str(model), "--data", str(data), "--output", str(out), *flags]


# --- 3. --set with an unknown field or section --------------------------------------------


def test_set_names_the_unknown_field_and_the_allowed_ones(capsys, tmp_path, no_spark, model, data):
    config = tmp_path / "train.yaml"
    config.write_text(f"run_dir: {tmp_path / 'run'}\n")
    out = tmp_path / "out"
    train = ["train", "--config", str(config)]
    err = one_line_error(capsys, [*train, "--set", "foo.bar=1"])
    assert err.startswith(f"tokenmill train: error: foo: unknown field; allowed: {TRAIN_FIELDS}, ")
    err = one_line_error(capsys, [*train, "--set", "optim.foo.bar=1"])
    assert err == f"tokenmill train: error: optim.foo: unknown field; allowed: {OPTIM_FIELDS}"
    err = one_line_error(capsys, ["run", "--output", str(out), "--input", str(data), "--set", "etl.nope.x=1"])
    assert err == f"tokenmill run: error: etl.nope: unknown field; allowed: {ETL_FIELDS}"
    err = one_line_error(capsys, ["etl", "--output", str(out), "--input", str(data), "--set", "foo.bar=1"])
    assert err.startswith("tokenmill etl: error: foo: unknown field; allowed: catalog_schema, chat, dedup, etl, ")
    fits = ["--seq-len", "128"]  # the model's context is 256
    err = one_line_error(capsys, finetune(model, data, out, *fits, "--set", "optim.foo=1"))
    assert err == f"tokenmill finetune: error: optim.foo: unknown field; allowed: {OPTIM_FIELDS}"
    err = one_line_error(capsys, finetune(model, data, out, *fits, "--set", "foo.bar=1"))
    assert err.startswith(f"tokenmill finetune: error: foo: unknown field; allowed: {TRAIN_FIELDS}, ")
    err = one_line_error(capsys, finetune(model, data, out, *fits, "--data-set", "etl.nope.x=1"))
    assert err == f"tokenmill finetune: error: etl.nope: unknown field; allowed: {ETL_FIELDS}"
    assert not out.exists() and not (tmp_path / "run").exists()


# --- 4. generate's sampling flags -----------------------------------------------------------


@pytest.mark.parametrize("flags, message", [
    (["--max-new-tokens", "-5"], "--max-new-tokens: must be >= 1, got -5"),
    (["--max-new-tokens", "0"], "--max-new-tokens: must be >= 1, got 0"),
    (["--temperature", "-1"], "--temperature: must be >= 0 (0: greedy), got -1.0"),
    (["--temperature", "nan"], "--temperature: must be >= 0 (0: greedy), got nan"),
    (["--top-k", "-3"], "--top-k: must be >= 0 (0: no top-k cut), got -3"),
])
def test_generate_rejects_bad_sampling_flags_before_loading(capsys, tmp_path, monkeypatch, flags, message):
    from tokenmill.train import generate

    def refuse(path):
        raise AssertionError("a checkpoint was loaded")

    monkeypatch.setattr(generate, "load", refuse)
    err = one_line_error(capsys, ["generate", "--checkpoint", str(tmp_path), "--prompt", "hi", *flags])
    assert err == f"tokenmill generate: error: {message}"


# --- 6. finetune's --seq-len and --register-to ------------------------------------------------


def test_finetune_names_its_own_flags(capsys, tmp_path, no_spark, model, data):
    out = tmp_path / "out"
    err = one_line_error(capsys, finetune(model, data, out, "--seq-len", "1"))
    assert err == "tokenmill finetune: error: --seq-len: must be at least 2, got 1"
    err = one_line_error(capsys, finetune(model, data, out, "--register-to", ""))
    assert err == "tokenmill finetune: error: --register-to: a model name must be non-empty without '/' or ':', got ''"
    assert not out.exists()


# --- 7. checks that need no data come before Spark ---------------------------------------------


def test_finetune_seq_len_must_fit_the_models_context(capsys, tmp_path, no_spark, model, data):
    out = tmp_path / "out"
    config = model / "config.json"
    err = one_line_error(capsys, finetune(model, data, out, "--seq-len", "512"))
    assert err == (f"tokenmill finetune: error: --seq-len: 512 is longer than the model's context (256 tokens in "
                   f"{config}); pass --seq-len 256 or less")
    err = one_line_error(capsys, finetune(model, data, out))  # the data preset's 2048
    assert err == (f"tokenmill finetune: error: tokenize.seq_len: 2048 is longer than the model's context (256 tokens "
                   f"in {config}); pass --seq-len 256 or less")
    err = one_line_error(capsys, finetune(model, data, out, "--task", "continued", "--data-set",
                                          "tokenize.seq_len=300"))
    assert err.startswith("tokenmill finetune: error: tokenize.seq_len: 300 is longer than the model's context")
    assert not out.exists()


def test_run_checks_stage_order_and_inputs_before_spark(capsys, tmp_path, no_spark, data):
    out = tmp_path / "out"
    err = one_line_error(capsys, ["run", "--stages", "etl,shards", "--input", str(data), "--output", str(out)])
    assert err == (f"tokenmill run: error: --stages: shards reads the sequences table, which tokenize writes, and "
                   f"{out} has none yet: run tokenize first (add it to --stages)")
    err = one_line_error(capsys, ["tokenize", "--output", str(out)])
    assert err == (f"tokenmill tokenize: error: tokenize reads the deduped table or the clean table, which dedup "
                   f"or etl write, and {out} has neither yet: run etl first")
    missing = tmp_path / "missing.jsonl"
    err = one_line_error(capsys, ["run", "--input", str(missing), "--output", str(out)])
    assert err == (f"tokenmill run: error: input not found: {missing} (check the path, or give a catalog table "
                   f"as catalog.schema.table)")
    assert not out.exists()
    (out / "tables" / "clean").mkdir(parents=True)  # etl's output is there: dedup goes on to start Spark
    with pytest.raises(AssertionError, match="a Spark session was started"):
        main(["dedup", "--output", str(out)])
