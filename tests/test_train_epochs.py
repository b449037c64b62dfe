"""Runs longer than one epoch: a run stopped (stop_at_step) exactly at the end
of an epoch resumes into the next epoch with the same samples and weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.distributed as dist

from tokenmill.errors import UserError
from tokenmill.train import loop
from tokenmill.train.config import CheckpointConfig, DataConfig, ModelSpec, OptimConfig, TrainConfig
from train_fixture import write_fixture
from tokenmill.train.distributed import free_port
from tokenmill.train.runlog import read_jsonl


def run_one_rank(monkeypatch, cfg: TrainConfig) -> loop.Trainer:
    """Train in this process as a 1-rank gloo group; returns the finished trainer."""
    for name, value in {
        "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
    }.items():
        monkeypatch.setenv(name, value)
    trainer = None
    try:
        trainer = loop.Trainer(cfg)
        trainer.run()
    finally:
        if trainer is not None:
            trainer.close()
        if dist.is_initialized():
            dist.destroy_process_group()
    return trainer


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    # 48 train sequences, 8 per step: an epoch is 6 steps.
    return write_fixture(tmp_path_factory.mktemp("shards"), n_train=48, n_val=8, seq_len=16)


def config(shards, run_dir, max_steps, stop_at_step=None) -> TrainConfig:
    return TrainConfig(
        stop_at_step=stop_at_step,
        optim=OptimConfig(warmup_steps=2),  # so the schedule depends on max_steps
        device="cpu",  # the exact checks mean the CPU, even where CUDA is visible
        model=ModelSpec(d_model=32, n_layers=1, n_heads=2),
        data=DataConfig(shards=str(shards), clean_stale_shm=False),
        checkpoint=CheckpointConfig(every_steps=6, keep_last=5),
        run_dir=str(run_dir), max_steps=max_steps, global_batch_size=8, micro_batch_size=4,
        log_every=1, mlflow=False, record_sample_ids=True, eval_batches=1,
    )


def test_resume_at_an_epoch_boundary_matches_an_uninterrupted_run(shards, tmp_path, monkeypatch):
    straight = run_one_rank(monkeypatch, config(shards, tmp_path / "a", max_steps=15))
    run_one_rank(monkeypatch, config(shards, tmp_path / "b", max_steps=15, stop_at_step=6))  # at the epoch end
    resumed = run_one_rank(monkeypatch, config(shards, tmp_path / "b", max_steps=15))

    events = read_jsonl(tmp_path / "b" / "events.jsonl")
    assert [(e["event"], e["step"]) for e in events if e["event"] in ("stopped", "resume", "end")] == [
        ("stopped", 6), ("resume", 6), ("end", 15)
    ]
    a, b = (read_jsonl(tmp_path / run / "samples" / "rank0.jsonl") for run in ("a", "b"))
    assert [r["step"] for r in b] == list(range(1, 16))
    assert [r["ids"] for r in a] == [r["ids"] for r in b]
    # Each epoch (6 steps x 8) covers all 48 sequences once, in a new order.
    epochs = [sorted(i for r in a[s : s + 6] for i in r["ids"]) for s in (0, 6)]
    assert epochs[0] == epochs[1] == list(range(48))
    assert [r["ids"] for r in a[:6]] != [r["ids"] for r in a[6:12]]
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(_local(p), _local(q))


def _local(param: torch.Tensor) -> torch.Tensor:
    """On one rank the local shard is the whole tensor."""
    return param.to_local() if hasattr(param, "to_local") else param


def test_resume_with_another_model_is_a_clear_error(shards, tmp_path, monkeypatch):
    run_one_rank(monkeypatch, config(shards, tmp_path, max_steps=2))
    bigger = dataclasses.replace(config(shards, tmp_path, max_steps=4), model=ModelSpec(d_model=64, n_layers=1, n_heads=2))
    with pytest.raises(UserError, match="was trained with a different model config"):
        run_one_rank(monkeypatch, bigger)
