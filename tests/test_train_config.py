"""Trainer config: presets load, bad values and shard mismatches fail clearly
before any rank starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tokenmill.cli import main
from tokenmill.config import from_dict
from tokenmill.errors import ConfigError, UserError
from tokenmill.train import data
from tokenmill.train.checkpoint import complete_checkpoints, latest_checkpoint, prune
from tokenmill.train.config import ModelSpec, TrainConfig, load_config
from tokenmill.train.optim import lr_factor

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRESETS = sorted(CONFIGS.glob("train_*.yaml")) + sorted(CONFIGS.glob("cpt_*b.yaml"))
CPT_PRESETS = sorted(CONFIGS.glob("cpt_*.yaml"))


def test_the_preset_lists_are_not_empty():
    # An empty list would leave the parametrized preset tests below with nothing to check.
    stems = [p.stem for p in PRESETS]
    assert any(s.startswith("train_") for s in stems) and any(s.startswith("cpt_") for s in stems)
    assert "cpt_data" in [p.stem for p in CPT_PRESETS] and len(CPT_PRESETS) > 1


def manifest_dir(tmp_path: Path, **fields) -> Path:
    manifest = {
        "format": "tokenmill-mds-v1", "column": "tokens", "dtype": "uint16", "seq_len": 64,
        "vocab_size": 512, "eos_id": 0, "bos_id": None, "tokenizer_sha256": "x",
        "splits": {"train": {"sequences": 8, "tokens": 512, "shards": 1}, "val": {"sequences": 8, "tokens": 512, "shards": 1}},
    }
    manifest.update(fields)
    (tmp_path / "dataset.json").write_text(json.dumps(manifest))
    return tmp_path


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_presets_load(path):
    cfg = load_config(path)
    assert cfg.model.vocab_size is None and cfg.model.seq_len is None  # from the shards
    assert cfg.global_batch_size % cfg.micro_batch_size == 0


@pytest.mark.parametrize("path", [p for p in CPT_PRESETS if p.stem != "cpt_data"], ids=lambda p: p.stem)
def test_continued_pretraining_presets(path):
    """Base-model runs: only attention in the model section, a fine-tuning learning rate, export at the end."""
    from tokenmill.train.base_model import check_spec_is_default

    cfg = load_config(path)
    check_spec_is_default(cfg.model)  # the architecture comes from the checkpoint
    assert cfg.model.attention.doc_mask and cfg.export_hf
    assert cfg.optim.lr <= 1e-3 and cfg.optim.warmup_steps < cfg.max_steps


def test_continued_pretraining_data_config():
    from tokenmill.config import load_run_config

    cfg = load_run_config(CONFIGS / "cpt_data.yaml", {"tokenize.tokenizer": "/models/llama"})
    assert cfg.tokenize.eos_token == "auto" and cfg.tokenize.bos_token == "auto" and cfg.tokenize.seq_len == 8192


def test_unknown_and_bad_fields_name_the_field():
    with pytest.raises(ConfigError, match=r"^optim\.lrr: unknown field"):
        from_dict(TrainConfig, {"optim": {"lrr": 1}})
    with pytest.raises(ConfigError, match=r"^model\.norm: must be one of"):
        from_dict(TrainConfig, {"model": {"norm": "batchnorm"}})
    with pytest.raises(ConfigError, match=r"^max_steps: must be >= 1"):
        from_dict(TrainConfig, {"max_steps": 0})


def test_global_batch_must_split_over_ranks():
    cfg = TrainConfig(global_batch_size=12, micro_batch_size=4)
    assert cfg.grad_accum(1) == 3
    with pytest.raises(ConfigError, match="global_batch_size: must be a multiple of micro_batch_size x ranks = 4 x 2"):
        cfg.grad_accum(2)


def test_model_takes_vocab_and_seq_len_from_the_shards(tmp_path):
    info = data.read_dataset_info(str(manifest_dir(tmp_path)), tmp_path / "cache")
    model = data.resolve_model(ModelSpec(d_model=32, n_heads=4), info)
    assert (model.vocab_size, model.seq_len) == (512, 64)


@pytest.mark.parametrize("field, value", [("vocab_size", 50304), ("seq_len", 2048)])
def test_model_mismatch_with_shards_is_a_clear_error(tmp_path, field, value):
    info = data.read_dataset_info(str(manifest_dir(tmp_path)), tmp_path / "cache")
    with pytest.raises(UserError, match=rf"model\.{field} is {value} but the shards at .* have {field}"):
        data.resolve_model(ModelSpec(**{field: value}), info)


def test_wrong_manifest_format_is_rejected(tmp_path):
    with pytest.raises(UserError, match="format must be 'tokenmill-mds-v1'"):
        data.read_dataset_info(str(manifest_dir(tmp_path, format="other")), tmp_path / "cache")
    with pytest.raises(UserError, match="no dataset.json"):
        data.read_dataset_info(str(tmp_path / "missing"), tmp_path / "cache")


def test_cli_reports_mismatch_in_one_line_before_starting_ranks(tmp_path, capsys):
    (tmp_path / "shards").mkdir()
    shards = manifest_dir(tmp_path / "shards")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": {"seq_len": 128}, "run_dir": str(tmp_path / "run")}))
    code = main(["train", "--config", str(config), "--shards", str(shards), "--nproc", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "model.seq_len is 128 but the shards" in err
    assert not (tmp_path / "run" / "config.yaml").exists()  # no rank was started


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    f = [lr_factor(s, warmup=10, max_steps=110, min_ratio=0.1) for s in range(111)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[60] == pytest.approx(0.55) and f[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[9:], f[10:]))


def _fake_checkpoint(root: Path, name: str, metadata=True, state=True) -> Path:
    path = root / name
    path.mkdir(parents=True)
    if metadata:
        (path / ".metadata").write_bytes(b"x")
    if state:
        (path / "trainer_state.pt").write_bytes(b"x")
    return path


def test_half_written_checkpoints_are_never_picked(tmp_path):
    good = _fake_checkpoint(tmp_path, "step_00000010")
    _fake_checkpoint(tmp_path, "step_00000020.tmp")  # being written when the job died
    _fake_checkpoint(tmp_path, "step_00000030", metadata=False)  # DCP never finished
    _fake_checkpoint(tmp_path, "step_00000040", state=False)  # trainer state missing
    assert latest_checkpoint(tmp_path) == good
    assert latest_checkpoint(tmp_path / "none") is None


def test_prune_keeps_the_last_k(tmp_path):
    for step in (5, 10, 15, 20):
        _fake_checkpoint(tmp_path, f"step_{step:08d}")
    _fake_checkpoint(tmp_path, "step_00000025.tmp")
    prune(tmp_path, keep_last=2)
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["step_00000015", "step_00000020"]
    assert not (tmp_path / "step_00000025.tmp").exists()


def test_train_split_smaller_than_a_global_batch_is_rejected(tmp_path):
    info = data.read_dataset_info(str(manifest_dir(tmp_path)), tmp_path / "cache")  # 8 train sequences
    data.check_split_sizes(info, global_batch_size=8)
    with pytest.raises(UserError, match=r"has 8 sequences, fewer than global_batch_size \(16\)"):
        data.check_split_sizes(info, global_batch_size=16)


@pytest.mark.parametrize(
    "location, remote",
    [("s3://bucket/shards", True), ("dbfs:/Volumes/c/s/v/shards", True), ("gs://b/x", True),
     ("/Volumes/c/s/v/shards", False), ("build/demo/out/shards", False), ("file:///tmp/shards", False)],
)
def test_remote_shard_locations_are_recognized(location, remote):
    assert data.is_remote(location) is remote


def test_train_flags_override_the_config(tmp_path):
    import argparse

    from tokenmill.train.launch import add_arguments, build_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--config", str(CONFIGS / "cpt_tiny.yaml"), "--init-from", "/m", "--method", "lora",
                              "--set", "lora.rank=32", "--set", "lora.targets=[all]", "--max-steps", "7"])
    cfg = build_config(args)
    assert (cfg.init_from, cfg.method, cfg.lora.rank, cfg.lora.targets, cfg.max_steps) == ("/m", "lora", 32, ("all",), 7)
    with pytest.raises(ConfigError, match="^lora.rank: must be > 0"):
        build_config(parser.parse_args(["--config", str(CONFIGS / "cpt_tiny.yaml"), "--set", "lora.rank=0"]))
