"""Non-finite loss handling: the step is dropped before the optimizer update,
with an event; ``on_nonfinite`` chooses between stopping and skipping."""

from __future__ import annotations

import math

import pytest
import torch

from tokenmill.train import loop, objective
from tokenmill.train.config import CheckpointConfig, TrainConfig
from train_fixture import write_fixture
from tokenmill.train.runlog import read_jsonl

from tiny_train import tiny_config


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("shards"), n_train=128, n_val=16, seq_len=32)


def config(shards, run_dir, **overrides) -> TrainConfig:
    values = dict(checkpoint=CheckpointConfig(every_steps=100), max_steps=6, global_batch_size=4,
                  micro_batch_size=4, log_every=1)
    return tiny_config(shards, run_dir, **{**values, **overrides})


def poison_loss_at(monkeypatch, bad_steps: set[int]) -> None:
    """Make the loss NaN on the given (1-based) steps; one micro-batch per step here."""
    calls = {"n": 0}
    real = objective.lm_loss

    def lm_loss(logits, tokens):
        calls["n"] += 1
        loss = real(logits, tokens)
        return loss * float("nan") if calls["n"] in bad_steps else loss

    monkeypatch.setattr(objective, "lm_loss", lm_loss)


def adam_steps(trainer: loop.Trainer) -> int:
    """Optimizer updates applied so far (AdamW keeps a per-parameter step count)."""
    counts = {int(s["step"]) for s in trainer.optimizer.state.values()}
    assert len(counts) == 1
    return counts.pop()


def test_nonfinite_loss_stops_before_the_update(shards, tmp_path, make_trainer, monkeypatch):
    poison_loss_at(monkeypatch, {3})
    trainer = make_trainer(config(shards, tmp_path))
    with pytest.raises(loop.NonFiniteError, match="at step 3; no update was applied"):
        trainer.run()
    assert trainer.step == 2 and adam_steps(trainer) == 2
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    events = read_jsonl(tmp_path / "events.jsonl")
    assert [e["event"] for e in events] == ["start", "nonfinite", "failure"]
    assert events[1]["step"] == 3 and events[1]["action"] == "stop" and math.isnan(events[1]["loss"])


def test_nonfinite_loss_is_skipped_when_configured(shards, tmp_path, make_trainer, monkeypatch):
    poison_loss_at(monkeypatch, {3})
    trainer = make_trainer(config(shards, tmp_path, on_nonfinite="skip"))
    result = trainer.run()
    assert result["step"] == 6 and math.isfinite(result["loss"])
    assert adam_steps(trainer) == 5  # 6 steps, one without an update
    skipped = [e for e in read_jsonl(tmp_path / "events.jsonl") if e["event"] == "nonfinite"]
    assert [(e["step"], e["action"]) for e in skipped] == [(3, "skip")]


def test_too_many_skips_in_a_row_stop(shards, tmp_path, make_trainer, monkeypatch):
    poison_loss_at(monkeypatch, {2, 3, 4})
    trainer = make_trainer(config(shards, tmp_path, on_nonfinite="skip", max_consecutive_skips=3))
    with pytest.raises(loop.NonFiniteError):
        trainer.run()
    actions = [e["action"] for e in read_jsonl(tmp_path / "events.jsonl") if e["event"] == "nonfinite"]
    assert actions == ["skip", "skip", "stop"]
    assert adam_steps(trainer) == 1
