"""``tokenmill preflight``: every item passes on good shards, and each kind of
broken input fails its own item with a message that says what to fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from test_cli_errors import one_line_error

from tokenmill import cli, preflight
from train_fixture import write_fixture

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("pf") / "shards", n_train=32, n_val=8, seq_len=16, vocab_size=300)


@pytest.fixture
def copy(shards, tmp_path):
    """A private copy of the shards, free to break."""
    target = tmp_path / "shards"
    shutil.copytree(shards, target)
    return target


def train_config(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((ROOT / "configs" / "train_tiny.yaml").read_text())
    data.update({"max_steps": 3, "eval_every": 0})
    for key, value in changes.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(capsys, config: Path, shards: Path, run_dir: Path, *flags: str) -> tuple[int, dict]:
    code = cli.main(["preflight", "--train-config", str(config), "--shards", str(shards),
                     "--run-dir", str(run_dir), "--nproc", "1", "--json", *flags])
    checks = json.loads(capsys.readouterr().out)
    return code, {c["name"]: (c["status"], c["detail"]) for c in checks}


def statuses(checks: dict) -> dict:
    return {name: status for name, (status, _) in checks.items()}


def test_good_shards_pass_every_item(shards, tmp_path, capsys):
    config = train_config(tmp_path)
    code, checks = run(capsys, config, shards, tmp_path / "run", "--gpu", "a100", "--usd-per-gpu-hour", "2")
    assert code == 0
    assert statuses(checks) == {
        "config": "pass", "shards": "pass", "base model": "skip", "tokenizer": "pass", "data": "pass",
        "memory": "pass", "checkpoints": "pass", "dry save": "pass", "estimate": "pass", "gpus": "pass",
    }
    assert checks["memory"][1].endswith("a100 has 80.0 GB")
    assert checks["shards"][1].startswith("train 32 sequences in 1 shard(s); val 8 sequences in 1 shard(s); seq_len 16")
    assert "EOS '<|endoftext|>' = 0; seq_len 16" in checks["tokenizer"][1]
    assert checks["data"][1] == "0.75 epoch(s) over 32 train sequences; 8 val sequences"
    assert checks["dry save"][1].startswith("saved and loaded back bit-exact: ")
    # 3 steps x 8 sequences x 16 tokens, on one A100 at $2/hour
    assert checks["estimate"][1].startswith("384 tokens, ")
    assert "on 1 x a100 at MFU 0.40" in checks["estimate"][1] and "at $2/GPU-hour" in checks["estimate"][1]
    # The write probe and the dry checkpoint clean up after themselves, and make no run folders.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.yaml"]
    # The same checks as text, for people.
    assert cli.main(["preflight", "--train-config", str(config), "--shards", str(shards), "--run-dir",
                     str(tmp_path / "run"), "--nproc", "1", "--no-dry-checkpoint"]) == 0
    text = capsys.readouterr().out
    assert "  SKIP  dry save     --no-dry-checkpoint" in text
    assert text.rstrip().endswith("preflight: ready: 8 passed, 0 warning(s), 0 failed, 2 skipped")


def test_missing_shard_file_fails(copy, tmp_path, capsys):
    for f in (copy / "val").glob("shard.*"):
        f.unlink()
    code, checks = run(capsys, train_config(tmp_path), copy, tmp_path / "run", "--no-dry-checkpoint")
    assert code == 1
    status, detail = checks["shards"]
    assert status == "fail" and detail.startswith(f"val: missing shard file {copy / 'val' / 'shard.00000.mds.zstd'}")
    assert not (tmp_path / "run").exists()  # a failed preflight leaves no run folder behind


def test_truncated_shard_and_wrong_counts_fail(copy, tmp_path, capsys):
    shard = copy / "train" / "shard.00000.mds.zstd"
    shard.write_bytes(shard.read_bytes()[:-10])
    code, checks = run(capsys, train_config(tmp_path), copy, tmp_path / "run", "--no-dry-checkpoint")
    assert code == 1 and checks["shards"][0] == "fail"
    assert "index.json says" in checks["shards"][1]
    # dataset.json disagreeing with the index is caught too
    shutil.rmtree(copy)
    write_fixture(copy, n_train=32, n_val=8, seq_len=16, vocab_size=300)
    info = json.loads((copy / "dataset.json").read_text())
    info["splits"]["train"]["sequences"] = 40
    (copy / "dataset.json").write_text(json.dumps(info))
    code, checks = run(capsys, train_config(tmp_path), copy, tmp_path / "run", "--no-dry-checkpoint")
    assert checks["shards"] == ("fail", "train: index.json lists 32 samples, dataset.json says 40; "
                                        "rerun `tokenmill shards`")


def test_model_tokenizer_and_shards_must_agree(copy, tmp_path, capsys):
    code, checks = run(capsys, train_config(tmp_path, **{"model.vocab_size": 512}), copy, tmp_path / "run",
                       "--no-dry-checkpoint")
    assert code == 1
    assert checks["tokenizer"][0] == "fail"
    assert checks["tokenizer"][1].startswith("model.vocab_size is 512 but the shards at")
    # Later checks that need the model say so instead of failing twice.
    assert checks["dry save"] == ("skip", "--no-dry-checkpoint")
    assert statuses(checks)["estimate"] == "skip"
    # A tokenizer file that is not the one the shards were made with.
    other = write_fixture(tmp_path / "other", n_train=8, n_val=8, seq_len=16, vocab_size=280, seed=5)
    shutil.copy(other / "tokenizer.json", copy / "tokenizer.json")
    code, checks = run(capsys, train_config(tmp_path), copy, tmp_path / "run", "--no-dry-checkpoint")
    assert code == 1 and checks["tokenizer"][0] == "fail"
    assert "is not the tokenizer the shards were made with" in checks["tokenizer"][1]
    # seq_len in the config that the shards do not have
    code, checks = run(capsys, train_config(tmp_path, **{"model.seq_len": 32}), copy, tmp_path / "run",
                       "--no-dry-checkpoint")
    assert checks["tokenizer"][1].startswith("model.seq_len is 32 but the shards at")


def test_checkpoint_location_and_room(shards, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, checks = run(capsys, train_config(tmp_path), shards, blocker / "run", "--no-dry-checkpoint")
    assert code == 1
    assert checks["checkpoints"] == ("fail", f"cannot write checkpoints under {blocker / 'run' / 'checkpoints'}: "
                                             "Not a directory")
    code, checks = run(capsys, train_config(tmp_path), shards, tmp_path / "run", "--no-dry-checkpoint",
                       "--min-free-gb", "1e9")
    assert code == 1 and checks["checkpoints"][0] == "fail"
    assert "need 1,000,000,000.00 GB" in checks["checkpoints"][1]


def test_dry_checkpoint_catches_a_bad_load(shards, tmp_path, capsys, monkeypatch):
    import torch

    from tokenmill.train import checkpoint

    real_load = checkpoint.load

    def lossy_load(path, model, optimizer):  # a storage layer that corrupts one weight
        state = real_load(path, model, optimizer)
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        return state

    monkeypatch.setattr(checkpoint, "load", lossy_load)
    code, checks = run(capsys, train_config(tmp_path), shards, tmp_path / "run")
    assert code == 1
    status, detail = checks["dry save"]
    assert status == "fail" and detail.startswith("loaded checkpoint differs from the saved one in ['model.")


def test_estimate_warns_when_checkpoints_are_too_rare(shards, tmp_path, capsys):
    config = train_config(tmp_path, **{"checkpoint.every_steps": 0})
    code, checks = run(capsys, config, shards, tmp_path / "run", "--no-dry-checkpoint", "--gpu", "a10g",
                       "--max-steps", "100000000000")
    assert code == 0  # warnings do not stop a run
    status, detail = checks["estimate"]
    assert status == "warn"
    assert "checkpoints never, but the interval that minimizes lost work is 2.6 days" in detail
    assert checks["data"][0] == "warn" and checks["data"][1].endswith("the run repeats data")


def test_gpus_expected_but_absent(shards, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, checks = run(capsys, train_config(tmp_path), shards, tmp_path / "run", "--no-dry-checkpoint",
                       "--expect-gpus", "8")
    assert code == 1
    assert checks["gpus"][0] == "fail" and checks["gpus"][1].startswith("expected 8 GPU(s), none visible")


def test_unreadable_config_is_one_failed_item(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_steps: 0\n")
    checks = preflight.run_checks(str(bad))
    assert [(c.name, c.status) for c in checks] == [("config", "fail")]
    assert "max_steps" in checks[0].detail and "must be >= 1" in checks[0].detail


@pytest.mark.parametrize("flags, message", [
    (["--nproc", "-1"], "--nproc must be >= 1, got -1"),
    (["--expect-gpus", "-1"], "--expect-gpus: must be >= 0, got -1"),
    (["--mfu", "1.5"], "--mfu: must be a number > 0 and at most 1, got 1.5"),
    (["--usd-per-gpu-hour", "-2"], "--usd-per-gpu-hour: must be a number > 0, got -2.0"),
    (["--min-free-gb", "-1"], "--min-free-gb: must be >= 0, got -1.0"),
    (["--gpu", "h1000"], "--gpu: unknown GPU 'h1000'; choose one of "),
])
def test_bad_flags_are_one_line_before_any_check(shards, tmp_path, capsys, flags, message):
    argv = ["preflight", "--train-config", str(train_config(tmp_path)), "--shards", str(shards),
            "--run-dir", str(tmp_path / "run"), *flags]
    assert one_line_error(capsys, argv).startswith(f"tokenmill preflight: error: {message}")
    assert not (tmp_path / "run").exists()


def test_a_config_that_does_not_load_is_one_line(tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    err = one_line_error(capsys, ["preflight", "--train-config", str(missing), "--run-dir", str(tmp_path / "run")])
    assert err == f"tokenmill preflight: error: config file not found: {missing}"
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_steps: 0\n")
    err = one_line_error(capsys, ["preflight", "--train-config", str(bad)])
    assert err == "tokenmill preflight: error: max_steps: must be >= 1, got 0"


def test_base_model_checks_and_memory(shards, tmp_path, capsys):
    """init_from: the base model item passes for a matching folder and fails with the reason otherwise."""
    import shutil

    from train_fixture import write_hf_model

    model = write_hf_model(tmp_path / "model", "llama", vocab_size=512, tokenizer_dir=shards)
    config = train_config(tmp_path, model={})
    code, checks = run(capsys, config, shards, tmp_path / "run", "--gpu", "a10g", "--init-from", str(model))
    assert code == 0, checks
    assert statuses(checks)["base model"] == "pass" and statuses(checks)["tokenizer"] == "pass"
    assert checks["base model"][1].startswith("llama (2 layers, ")
    assert "its tokenizer is the shards'" in checks["base model"][1]
    assert checks["memory"][1].endswith("a10g has 24.0 GB")
    assert "full: " in checks["memory"][1] and "parameters train" in checks["memory"][1]
    lora = train_config(tmp_path, model={}, method="lora", lora={"rank": 4, "targets": ["q", "v"]})
    code, checks = run(capsys, lora, shards, tmp_path / "run", "--init-from", str(model))
    assert code == 0, checks
    # rank 4 on q (64 -> 64) and v (64 -> 32) in 2 layers
    assert f"lora: {2 * 4 * (128 + 96):,} of " in checks["memory"][1] and "(full fine-tuning: " in checks["memory"][1]
    other = tmp_path / "other"
    shutil.copytree(model, other)
    (other / "tokenizer.json").write_text((other / "tokenizer.json").read_text().replace("<|endoftext|>", "<|x|>"))
    code, checks = run(capsys, train_config(tmp_path, init_from=str(other), model={}), shards, tmp_path / "run")
    assert code == 1 and statuses(checks)["base model"] == "fail"
    assert "the shards were made with another tokenizer" in checks["base model"][1]
    assert statuses(checks)["tokenizer"] == "skip"


def test_memory_estimate_follows_sharding_and_checkpointing():
    from tokenmill.train.config import ModelConfig
    from tokenmill.train.memory import estimate
    from tokenmill.train.model import count_params

    # Llama 3 8B's shape at 8,192 tokens: 16 bytes a parameter over 8 ranks.
    cfg = ModelConfig(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8, d_ff=14336, vocab_size=128256,
                      seq_len=8192, norm="rmsnorm", position="rope", mlp="swiglu", tie_embeddings=False)
    n = count_params(cfg)
    assert 8.0e9 < n < 8.1e9
    full = estimate(cfg, n, n, 8, 1, bf16=True, activation_checkpointing=True)
    assert full.weights + full.grads + full.optimizer == pytest.approx(16 * n / 8)
    assert full.logits == 8192 * 128256 * 6
    plain = estimate(cfg, n, n, 8, 1, bf16=True, activation_checkpointing=False)
    assert plain.activations > 10 * full.activations
    assert estimate(cfg, n, n, 16, 1, True, True).weights == pytest.approx(full.weights / 2)
    # Frozen parameters (LoRA's base): bf16 weights, no gradients or moments.
    lora = estimate(cfg, n, n // 100, 8, 1, bf16=True, activation_checkpointing=True)
    assert lora.optimizer == pytest.approx(full.optimizer / 100, rel=0.01) and lora.weights < full.weights / 1.9
