"""What the CPU training benchmarks share: their flags, a 2-rank run, its tokens/s."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def parser_with_run_flags(doc: str, workdir: str, d_model: int, layers: int, seq_len: int,
                          steps: int) -> argparse.ArgumentParser:
    """A parser with the flags every CPU training benchmark has (model size, run length)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--workdir", default=workdir)
    parser.add_argument("--d-model", type=int, default=d_model, help="hidden size")
    parser.add_argument("--layers", type=int, default=layers)
    parser.add_argument("--seq-len", type=int, default=seq_len)
    parser.add_argument("--batch", type=int, default=8, help="global batch (sequences), 2 ranks")
    parser.add_argument("--steps", type=int, default=steps, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="steps before timing starts")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    return parser


def run_settings(args, run_dir: Path, shards: Path, **fields) -> dict:
    """A short timed run's trainer config: no checkpoints, no MLflow, tokens/s every step; plus ``fields``."""
    return {
        "device": "cpu", "run_dir": str(run_dir), "max_steps": args.warmup + args.steps,
        "global_batch_size": args.batch, "micro_batch_size": args.batch // 2, "log_every": 1, "mlflow": False,
        "eval_batches": 1, "optim": {"lr": 1e-4, "warmup_steps": 1},
        "checkpoint": {"every_steps": 0, "autoresume": False},
        "data": {"shards": str(shards), "clean_stale_shm": False}, **fields,
    }


def train_two_ranks(config: Path, settings: dict) -> Path:
    """Write the trainer config, run `tokenmill train --nproc 2` (gloo) on it; the run dir."""
    config.write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env.setdefault("OMP_NUM_THREADS", "1")
    subprocess.run([sys.executable, "-m", "tokenmill.cli", "train", "--config", str(config), "--nproc", "2"],
                   cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return Path(settings["run_dir"])


def timed_tokens_per_s(run_dir: Path, warmup: int) -> float:
    """Harmonic mean of tokens/s over the steps after the warm-up (metrics.jsonl)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timed = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r and r["step"] > warmup]
    return len(timed) / sum(1 / t for t in timed)
