"""What a run reports: progress lines, JSONL events and metrics, MLflow, loss plot."""

from __future__ import annotations

import pytest

from tokenmill.train import loop
from tokenmill.train.config import CheckpointConfig
from train_fixture import write_fixture
from tokenmill.train.runlog import read_jsonl

from tiny_train import tiny_config


def test_run_reports_progress_events_metrics_and_mlflow(tmp_path, one_rank, monkeypatch, capsys):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'mlruns'}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    shards = write_fixture(tmp_path / "shards", n_train=64, n_val=16, seq_len=16)
    run_dir = tmp_path / "run"
    cfg = tiny_config(shards, run_dir, checkpoint=CheckpointConfig(every_steps=3), max_steps=6,
                      global_batch_size=4, micro_batch_size=2, log_every=2, eval_every=3, mlflow=True)
    loop.train(cfg)

    out = capsys.readouterr().out
    assert "step 4/6 | loss " in out and "tok/s | MFU n/a | ETA " in out
    names = [e["event"] for e in read_jsonl(run_dir / "events.jsonl")]
    assert names == ["start", "eval", "checkpoint", "checkpoint", "eval", "end"]
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics if "loss" in m] == [2, 4, 6]
    assert [m["step"] for m in metrics if "val_loss" in m] == [3, 6]
    assert (run_dir / "loss.png").stat().st_size > 1000
    assert (run_dir / "tokenizer.json").exists()

    client = mlflow.tracking.MlflowClient()
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == [2, 4, 6]  # global step
    assert client.get_run(run_id).data.params["max_steps"] == "6"


def test_checkpoints_by_time(tmp_path, one_rank, monkeypatch):
    monkeypatch.setenv(loop.STEP_DELAY_ENV, "0.02")  # every step takes longer than 6 ms
    shards = write_fixture(tmp_path / "shards", n_train=32, n_val=8, seq_len=16)
    run_dir = tmp_path / "run"
    cfg = tiny_config(shards, run_dir,
                      # Every 6 ms of wall time: due after every step; only the last 2 kept.
                      checkpoint=CheckpointConfig(every_minutes=1e-4, keep_last=2),
                      max_steps=4, global_batch_size=4, micro_batch_size=4)
    loop.train(cfg)
    saved = [e["step"] for e in read_jsonl(run_dir / "events.jsonl") if e["event"] == "checkpoint"]
    assert saved == [1, 2, 3, 4]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000003", "step_00000004"]
