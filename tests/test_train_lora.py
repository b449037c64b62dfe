"""LoRA: adapters on a frozen base model, under FSDP2, with PEFT and merged exports.

Base models are tiny transformers-made checkpoints; peft and transformers
are the independent references for the exported adapter and merged model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tokenmill.train.config import AttentionConfig, LoraConfig, ModelConfig
from train_fixture import write_hf_model
from tokenmill.train.runlog import read_jsonl
from tokenmill.typed_config import ConfigError
from test_train_runs import events, kill_mid_run, run_train

from ranks import spawn_ranks

LORA = LoraConfig(rank=4, alpha=8.0, targets=("all",))


def lora_model(path, lora: LoraConfig = LORA, seq_len: int = 32, seed: int = 0, random_b: bool = True):
    """A base model from a Hugging Face folder with adapters; B random so that they matter."""
    from tokenmill.train.hf_adapter import family_of, model_config_from_hf
    from tokenmill.train.hf_io import load_into, open_checkpoint
    from tokenmill.train.model import GPT

    ckpt = open_checkpoint(path)
    cfg = dataclasses.replace(model_config_from_hf(ckpt.config, seq_len, AttentionConfig()), lora=lora)
    model = GPT(cfg)
    load_into(model, ckpt, family_of(ckpt.config))
    model.init_adapters(seed)
    if random_b:
        gen = torch.Generator().manual_seed(seed + 7)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("lora_b"):
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def batch(vocab: int = 256) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 24), generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("bases")
    return {f: write_hf_model(root / f, f, vocab_size=256) for f in ("llama", "qwen2", "mpt")}


def test_lora_starts_as_the_base_model(bases):
    from tokenmill.train.base_model import load_pretrained

    base, _ = load_pretrained(bases["qwen2"], seq_len=32)
    adapted = lora_model(bases["qwen2"], random_b=False)
    # Per layer, rank 4 x (in + out): q 64+64, k and v 64+32, o 64+64, gate and up 64+128, down 128+64.
    assert sum(p.numel() for n, p in adapted.named_parameters() if "lora" in n) == 2 * 4 * (128 + 96 * 2 + 128 + 192 * 3)
    with torch.no_grad():
        assert torch.equal(adapted(batch()), base(batch()))  # B = 0: exactly the base model


@pytest.mark.parametrize("family", ["llama", "qwen2", "mpt"])
def test_peft_export_opens_in_peft_with_the_same_logits(bases, family, tmp_path):
    """MPT keeps q, k, v in one Wqkv tensor: its adapters are exported stacked."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tokenmill.train.lora_export import write_peft

    lora = LoraConfig(rank=4, alpha=8.0, targets=("q", "v", "up") if family != "mpt" else ("q", "k", "v", "down"))
    ours = lora_model(bases[family], lora)
    adapters = {n: p.detach() for n, p in ours.named_parameters() if "lora" in n}
    out = write_peft(tmp_path / "adapter", ours.cfg, family, adapters, bases[family], torch.float32)
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(bases[family]), out).eval()
    with torch.no_grad():
        torch.testing.assert_close(peft_model(batch()).logits, ours(batch()), rtol=1e-5, atol=1e-5)
    if family == "mpt":
        assert json.loads((out / "adapter_config.json").read_text())["rank_pattern"] == {"Wqkv": 12}


def test_lora_config_errors(bases):
    with pytest.raises(ConfigError, match="rank: must be > 0"):
        LoraConfig(rank=0)
    with pytest.raises(ConfigError, match="'qkv' is not a projection"):
        LoraConfig(targets=("qkv",))
    with pytest.raises(ConfigError, match="'gate' names no layer of this model"):
        lora_model(bases["mpt"], LoraConfig(targets=("gate",)))


# --- FSDP2: 2 ranks give the adapters the gradients of 1 process -------------------------------


def lora_grads_worker(rank: int, world: int, path: str, out: str) -> None:
    from tokenmill.train.parallelize import build_model
    from tokenmill.train.hf_adapter import family_of
    from tokenmill.train.hf_io import load_into, open_checkpoint
    from tokenmill.train.model import lm_loss

    from torch.distributed.tensor import distribute_tensor

    from tokenmill.train.hf_io import clean_name

    reference = lora_model(path)  # the same adapters on every rank, to copy in
    full = dict(reference.named_parameters())
    ckpt = open_checkpoint(path)
    results = {}
    for ac in (False, True):  # activation checkpointing wraps each block
        model = build_model(reference.cfg, torch.device("cpu"), activation_checkpointing=ac)
        load_into(model, ckpt, family_of(ckpt.config))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora" in name:
                    p.copy_(distribute_tensor(full[clean_name(name)].detach(), p.device_mesh, p.placements))
        tokens = batch().repeat(2, 1)  # 4 rows: 2 per rank
        mine = tokens.chunk(world)[rank]
        lm_loss(model(mine), mine).backward()
        grads = {clean_name(n): p.grad.full_tensor() for n, p in model.named_parameters() if p.grad is not None}
        frozen_grads = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]
        results[ac] = {"grads": grads, "frozen_grads": frozen_grads}
    if rank == 0:
        torch.save(results, out)


def test_two_ranks_give_adapters_the_single_process_gradients(bases, tmp_path):
    from tokenmill.train.model import lm_loss

    out = str(tmp_path / "grads.pt")
    spawn_ranks(lora_grads_worker, str(bases["llama"]), out)
    results = torch.load(out)
    reference = lora_model(bases["llama"]).train()
    reference.freeze_base()
    tokens = batch().repeat(2, 1)
    lm_loss(reference(tokens), tokens).backward()
    want = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
    assert all(n.endswith(("lora_a", "lora_b")) for n in want)
    for ac, got in results.items():
        assert got["frozen_grads"] == [] and sorted(got["grads"]) == sorted(want)
        for name in want:
            assert want[name].abs().max() > 0, name
            torch.testing.assert_close(got["grads"][name], want[name], rtol=1e-5, atol=1e-7, msg=f"ac={ac} {name}")


# --- the trainer: a LoRA run, its checkpoints, exports, kill and resume --------------------------


STEPS = 6


@pytest.fixture(scope="module")
def setup(llama_with_shards):
    return llama_with_shards


def lora_config(tmp: Path, shards: Path, base: Path) -> Path:
    config = {
        "device": "cpu", "seed": 5, "max_steps": STEPS, "global_batch_size": 8, "micro_batch_size": 4,
        "method": "lora", "lora": {"rank": 4, "alpha": 16.0, "targets": ["attention", "up"]},
        "optim": {"lr": 1e-2, "warmup_steps": 1}, "checkpoint": {"every_steps": 2, "keep_last": 10},
        "eval_batches": 1, "log_every": 1, "mlflow": False, "record_sample_ids": True, "export_hf": True,
        "run_dir": str(tmp / "run"), "init_from": str(base), "data": {"shards": str(shards), "clean_stale_shm": False},
    }
    path = tmp / "lora.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def lora_run(setup, tmp_path_factory) -> Path:
    shards, base = setup
    tmp = tmp_path_factory.mktemp("lora_run")
    run_train(lora_config(tmp, shards, base), nproc=2)
    return tmp / "run"


def adapters_of(run_dir: Path) -> dict[str, torch.Tensor]:
    from tokenmill.train.checkpoint import complete_checkpoints, read_trainer_state
    from tokenmill.train.lora_export import read_adapters
    from tokenmill.typed_config import from_dict

    last = complete_checkpoints(run_dir / "checkpoints")[-1]
    return read_adapters(last, from_dict(ModelConfig, read_trainer_state(last)["model_config"]))


def test_lora_run_trains_only_the_adapters(lora_run):
    import torch.distributed.checkpoint as dcp

    from tokenmill.train.checkpoint import complete_checkpoints
    from tokenmill.train.export import load_from_checkpoint

    (start,) = events(lora_run, "start")
    assert start["method"] == "lora" and 0 < start["trainable_params"] < 20_000
    losses = [r["loss"] for r in read_jsonl(lora_run / "metrics.jsonl") if "loss" in r]
    assert losses[-1] < losses[0]
    # The checkpoint holds the adapters and their optimizer state, nothing of the base.
    last = complete_checkpoints(lora_run / "checkpoints")[-1]
    keys = dcp.FileSystemReader(str(last)).read_metadata().state_dict_metadata
    model_keys = {k for k in keys if k.startswith("model.")}
    assert model_keys and all(k.endswith(("lora_a", "lora_b")) for k in model_keys)
    assert all("lora" in k for k in keys if k.startswith("optim.state."))
    # The adapters moved (the base weights: test_lora_training_leaves_the_base_weights_untouched).
    model, _ = load_from_checkpoint(lora_run)
    assert model.blocks["0"].attn.q.lora_b.abs().max() > 0
    assert not hasattr(model.blocks["0"].mlp.down, "lora_a")  # not a target


# tokenmill's parameter names -> the Llama checkpoint's (embeddings tied: no lm_head).
HF_NAMES = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
            "norm_attn.weight": "input_layernorm.weight", "norm_mlp.weight": "post_attention_layernorm.weight",
            **{f"attn.{p}.weight": f"self_attn.{p}_proj.weight" for p in "qkvo"},
            **{f"mlp.{p}.weight": f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")}}


def hf_name(name: str) -> str:
    if name in HF_NAMES:
        return HF_NAMES[name]
    _, layer, rest = name.split(".", 2)  # blocks.<i>.<rest>
    return f"model.layers.{layer}.{HF_NAMES[rest]}"


def test_lora_training_leaves_the_base_weights_untouched(setup, tmp_path, make_trainer):
    """A live trainer's base parameters after run() are the checkpoint's tensors, byte for byte."""
    from tokenmill.train.config import load_config

    shards, base = setup
    path = lora_config(tmp_path, shards, base)
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "max_steps": 3, "export_hf": False}))
    trainer = make_trainer(load_config(path))
    assert trainer.run()["step"] == 3
    hf = load_file(str(base / "model.safetensors"))
    params = {n: p.full_tensor() if hasattr(p, "full_tensor") else p for n, p in trainer.model.named_parameters()}
    frozen = {n: p for n, p in params.items() if "lora_" not in n}
    assert sorted(hf_name(n) for n in frozen) == sorted(hf)  # every base tensor, compared below
    for name, p in frozen.items():
        assert torch.equal(p.detach().cpu(), hf[hf_name(name)]), name
    assert all(p.abs().max() > 0 for n, p in params.items() if n.endswith("lora_b"))  # training happened


def test_lora_exports_match_tokenmill(lora_run, setup, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tokenmill.cli import main
    from tokenmill.train.export import load_from_checkpoint

    _, base = setup
    ours, _ = load_from_checkpoint(lora_run)
    tokens = batch(400)
    with torch.no_grad():
        want = ours(tokens)
        merged = AutoModelForCausalLM.from_pretrained(lora_run / "hf").eval()  # written by export_hf
        torch.testing.assert_close(merged(tokens).logits, want, rtol=1e-5, atol=1e-5)
        peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), lora_run / "adapter")
        torch.testing.assert_close(peft_model.eval()(tokens).logits, want, rtol=1e-5, atol=1e-5)
    assert main(["export", "--checkpoint", str(lora_run), "--out", str(tmp_path / "x")]) == 2
    assert main(["export", "--checkpoint", str(lora_run), "--out", str(tmp_path / "p"), "--format", "peft"]) == 0
    assert (tmp_path / "p" / "adapter_model.safetensors").read_bytes() == \
        (lora_run / "adapter" / "adapter_model.safetensors").read_bytes()


def test_sigkill_and_resume_give_the_same_adapters(setup, lora_run, tmp_path):
    shards, base = setup
    config = lora_config(tmp_path, shards, base)
    run_dir = tmp_path / "run"
    kill_mid_run(config, run_dir, nproc=2, after_step=3)

    run_train(config, nproc=2)

    assert len(events(run_dir, "resume")) == 1 and len(events(run_dir, "base_reloaded")) == 1
    ours, ref = adapters_of(run_dir), adapters_of(lora_run)
    assert ours.keys() == ref.keys()
    for name in ref:
        assert torch.equal(ours[name], ref[name]), name


def test_resume_on_a_changed_base_model_is_refused(setup, lora_run, tmp_path, capsys):
    import shutil

    from tokenmill.cli import main

    shards, base = setup
    changed = tmp_path / "base"
    shutil.copytree(base, changed)
    weights = load_file(str(changed / "model.safetensors"))
    weights["model.norm.weight"] = weights["model.norm.weight"] * 2
    from safetensors.torch import save_file

    save_file(weights, str(changed / "model.safetensors"), metadata={"format": "pt"})
    run_dir = tmp_path / "run"
    shutil.copytree(lora_run / "checkpoints", run_dir / "checkpoints")
    config = lora_config(tmp_path, shards, changed)
    config_data = yaml.safe_load(config.read_text())
    config_data["max_steps"] = STEPS + 2
    config.write_text(yaml.safe_dump(config_data))
    assert main(["train", "--config", str(config), "--nproc", "1"]) == 2  # before any rank starts
    err = capsys.readouterr().err.strip()
    assert "is not the one the adapters in" in err and len(err.splitlines()) == 1


def test_lora_needs_a_base_model(setup, tmp_path, capsys):
    from tokenmill.cli import main

    shards, _ = setup
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "method": "lora", "mlflow": False}))
    assert main(["train", "--config", str(path), "--shards", str(shards)]) == 2
    assert "lora trains adapters on a base model: set init_from" in capsys.readouterr().err
