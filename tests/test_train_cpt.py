"""Continued pretraining of an open model, end to end on CPU.

A tiny Llama checkpoint with a Llama-3-style tokenizer (its post-processor
puts <|begin_of_text|> in front of every text) -> tokenize + shards with the
model's own tokenizer -> 2-rank training from the base weights -> Hugging Face
export at the end -> transformers gives tokenmill's logits. A SIGKILL during
the run resumes from the run's checkpoint, not from the base model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tokenmill import tables
from tokenmill.config import RunConfig, from_dict
from tokenmill.pipeline import run_stages
from train_fixture import synthetic_documents, write_hf_model
from tokenmill.train.runlog import read_jsonl
from test_train_runs import REPO, events, final_weights, kill_mid_run, run_train

SEQ_LEN = 32
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
STEPS = 8


def llama3_style_tokenizer(docs: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[BOS, EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, 0)])
    return tok


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    tok = llama3_style_tokenizer(synthetic_documents(400, 1))
    tok.save(str(root / "tokenizer.json"))
    model = write_hf_model(root / "model", "llama", vocab_size=448, tokenizer_dir=root)
    # The base model's own tokenizer files, as Llama 3 ships them.
    (model / "tokenizer_config.json").write_text(json.dumps({"bos_token": BOS, "eos_token": EOS}))
    return model


@pytest.fixture(scope="module")
def shards(spark, base, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pipeline") / "out"
    docs = synthetic_documents(600, 2)
    rows = [(f"d{i:04d}", "synthetic", t, "{}", len(t), len(t.split()), 0.5) for i, t in enumerate(docs)]
    schema = "id string, source string, text string, meta string, n_chars int, n_words int, quality double"
    tables.write(spark.createDataFrame(rows, schema), str(out / "tables" / "clean"))
    cfg = from_dict(RunConfig, {
        "output": str(out), "tokenize": {"seq_len": SEQ_LEN, "tokenizer": str(base), "pack_groups": 2},
        "shards": {"seed": 1, "partitions": 2, "val_fraction": 0.1},
    })
    run_stages(spark, cfg, ["tokenize", "shards"])
    return out / "shards"


def test_pipeline_uses_the_models_tokenizer_bos_and_eos(shards, base):
    from tokenizers import Tokenizer

    from tokenmill.shards import reader as mds

    info = json.loads((shards / "dataset.json").read_text())
    tok = Tokenizer.from_file(str(base / "tokenizer.json"))
    assert (info["bos_id"], info["eos_id"]) == (tok.token_to_id(BOS), tok.token_to_id(EOS))
    assert (shards / "tokenizer.json").read_bytes() == (base / "tokenizer.json").read_bytes()
    files = mds.read_index(shards / "train")
    rows = [np.asarray(r["tokens"]) for r in mds.decode(files[0], mds.shard_bytes(files[0]))]
    # Every document is BOS ... EOS: each EOS inside a window is followed by BOS.
    after_eos = np.concatenate([row[1:][row[:-1] == info["eos_id"]] for row in rows])
    assert len(after_eos) > 10 and set(after_eos.tolist()) == {info["bos_id"]}


# The tiny continued-pretraining preset, made shorter and audited.
CONFIG = {
    **yaml.safe_load((REPO / "configs" / "cpt_tiny.yaml").read_text()),
    "device": "cpu", "seed": 3, "max_steps": STEPS, "checkpoint": {"every_steps": 2, "keep_last": 10},
    "eval_batches": 1, "log_every": 1, "mlflow": False, "record_sample_ids": True,
}


def write_config(tmp: Path, shards: Path, base: Path) -> Path:
    config = {**CONFIG, "run_dir": str(tmp / "run"), "init_from": str(base),
              "data": {"shards": str(shards), "clean_stale_shm": False}}
    path = tmp / "cpt.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def cpt_run(shards, base, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cpt")
    run_train(write_config(tmp, shards, base), nproc=2)
    return tmp / "run"


def test_continued_pretraining_exports_a_model_transformers_opens(cpt_run, base, shards):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tokenmill.train.attention import document_layout
    from tokenmill.train.export import load_from_checkpoint

    (start,) = events(cpt_run, "init_from")
    assert start["family"] == "llama" and start["path"] == str(base)
    losses = [r["loss"] for r in read_jsonl(cpt_run / "metrics.jsonl") if "loss" in r]
    assert len(losses) == STEPS and losses[-1] < losses[0]
    (exported,) = events(cpt_run, "export_hf")
    out = Path(exported["path"])
    assert json.loads((out / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert (out / "tokenizer.json").read_bytes() == (base / "tokenizer.json").read_bytes()
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    ours, _ = load_from_checkpoint(cpt_run)
    batch = torch.randint(0, 400, (2, SEQ_LEN), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(batch).logits, ours(batch), rtol=1e-5, atol=1e-5)
        # Training changed the weights: the base model's logits differ.
        before = AutoModelForCausalLM.from_pretrained(base).eval()(batch).logits
        assert (before - hf(batch).logits).abs().max() > 1e-3
        # A single document (no EOS inside) needs no mask: masked and plain logits agree.
        one_doc = batch.clamp(min=2)
        torch.testing.assert_close(ours(one_doc, document_layout(one_doc, 1)), ours(one_doc), rtol=1e-5, atol=1e-5)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.eos_token == EOS and tok.bos_token == BOS


def test_sigkill_resumes_from_the_run_not_from_the_base_model(shards, base, cpt_run, tmp_path):
    config = write_config(tmp_path, shards, base)
    run_dir = tmp_path / "run"
    kill_mid_run(config, run_dir, nproc=2, after_step=3)

    run_train(config, nproc=2)

    assert len(events(run_dir, "init_from")) == 1  # only the first start read the base model
    (resume,) = events(run_dir, "resume")
    assert resume["step"] >= 2
    ours, ref = final_weights(run_dir), final_weights(cpt_run)
    assert ours.keys() == ref.keys()
    for name in ref:
        assert torch.equal(ours[name], ref[name]), name
