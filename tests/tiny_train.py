"""The small trainer config that in-process training tests start from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenmill.train.config import DataConfig, ModelSpec, TrainConfig


def tiny_config(shards: Path, run_dir: Path, **overrides: Any) -> TrainConfig:
    """One block of width 32 on the CPU, reading ``shards``, no MLflow; ``overrides`` set any other field."""
    values: dict[str, Any] = dict(
        device="cpu",  # the exact checks mean the CPU, even where CUDA is visible
        model=ModelSpec(d_model=32, n_layers=1, n_heads=2),
        data=DataConfig(shards=str(shards), clean_stale_shm=False),
        run_dir=str(run_dir), mlflow=False,
    )
    values.update(overrides)
    return TrainConfig(**values)
