"""Resume when the newest checkpoint looks complete but is damaged: fall back to
the previous good one and say so in the run log."""

from __future__ import annotations

import shutil

import pytest
from test_train_epochs import run_one_rank

from tokenmill.train import checkpoint
from tokenmill.train.config import CheckpointConfig, DataConfig, ModelSpec, TrainConfig
from train_fixture import write_fixture
from tokenmill.train.runlog import read_jsonl


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("shards"), n_train=32, n_val=8, seq_len=16)


def run(monkeypatch, cfg: TrainConfig) -> int:
    """Train in this process as one gloo rank; the step it ended at."""
    return run_one_rank(monkeypatch, cfg).step


def config(shards, run_dir, stop_at_step=None) -> TrainConfig:
    return TrainConfig(
        model=ModelSpec(d_model=32, n_layers=1, n_heads=2),
        data=DataConfig(shards=str(shards), clean_stale_shm=False),
        checkpoint=CheckpointConfig(every_steps=2, keep_last=3),
        run_dir=str(run_dir), max_steps=6, stop_at_step=stop_at_step, global_batch_size=4, micro_batch_size=2,
        log_every=1, mlflow=False, eval_batches=1,
    )


@pytest.fixture(scope="module")
def stopped_at_4(shards, tmp_path_factory):
    """A run stopped at step 4 with complete checkpoints at steps 2 and 4; each test damages a copy."""
    run_dir = tmp_path_factory.mktemp("stopped_at_4")
    with pytest.MonkeyPatch.context() as mp:
        run(mp, config(shards, run_dir, stop_at_step=4))
    return run_dir


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("damaged", ["__0_0.distcp", "trainer_state.pt", "rng_rank0.pt"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(shards, stopped_at_4, tmp_path, monkeypatch, capsys,
                                                                  damaged):
    shutil.copytree(stopped_at_4, tmp_path, dirs_exist_ok=True)
    capsys.readouterr()  # below, only what the resumed run prints
    root = tmp_path / "checkpoints"
    assert [p.name for p in checkpoint.complete_checkpoints(root)] == ["step_00000002", "step_00000004"]
    truncate(root / "step_00000004" / damaged)

    assert run(monkeypatch, config(shards, tmp_path)) == 6
    events = read_jsonl(tmp_path / "events.jsonl")
    (skipped,) = [e for e in events if e["event"] == "checkpoint_skipped"]
    assert skipped["checkpoint"].endswith("step_00000004") and damaged in skipped["reason"]
    (resume,) = [e for e in events if e["event"] == "resume"]
    assert resume["step"] == 2
    assert "checkpoint_skipped" in capsys.readouterr().out
    # step 4 was trained and saved again, whole this time
    assert checkpoint.readable_problem(root / "step_00000004") is None


def test_no_readable_checkpoint_starts_over(shards, tmp_path, monkeypatch):
    run(monkeypatch, config(shards, tmp_path, stop_at_step=2))
    truncate(tmp_path / "checkpoints" / "step_00000002" / "trainer_state.pt")
    assert run(monkeypatch, config(shards, tmp_path)) == 6
    events = [e["event"] for e in read_jsonl(tmp_path / "events.jsonl")]
    assert events.count("checkpoint_skipped") == 1 and "resume" not in events
