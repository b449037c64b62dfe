"""`tokenmill train --spark` launches the ranks through TorchDistributor (local mode)."""

from __future__ import annotations

import yaml

from tokenmill.cli import main
from train_fixture import write_fixture
from tokenmill.train.runlog import read_jsonl


def test_train_through_torch_distributor(spark, tmp_path, capsys):
    assert spark.sparkContext.master.startswith("local")
    shards = write_fixture(tmp_path / "shards", n_train=64, n_val=16, seq_len=16)
    run_dir = tmp_path / "run"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "run_dir": str(run_dir), "device": "cpu", "max_steps": 4, "global_batch_size": 4, "micro_batch_size": 2,
        "model": {"d_model": 32, "n_layers": 1, "n_heads": 2},
        "data": {"shards": str(shards), "clean_stale_shm": False},
        "checkpoint": {"every_steps": 2}, "log_every": 2, "mlflow": False,
    }))
    assert main(["train", "--config", str(config), "--spark", "--nproc", "2"]) == 0
    assert "[train] done: {'step': 4" in capsys.readouterr().out  # rank 0's summary came back
    events = read_jsonl(run_dir / "events.jsonl")
    assert events[0]["event"] == "start" and events[0]["world_size"] == 2
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2, 4]
