"""Trainer throughput on CPU.

1. tokens/s of the FSDP trainer (``tokenmill train --nproc 2``, gloo, one
   thread per rank) against a plain single-process PyTorch loop (same model,
   same global batch, AdamW; the better of one and two threads): target
   ratio >= 0.8.
2. Loader throughput (StreamingDataLoader over the same shards, one rank)
   against the tokens one training step consumes: must be far above it.

    python bench/bench_train.py [--steps 12] [--out /tmp/bench_train]

GPU MFU is not measured here (no GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from tokenmill.train.config import ModelConfig
from tokenmill.train.model import GPT, lm_loss

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "tests"))  # train_fixture: test scaffolding
MODEL = {"d_model": 256, "n_layers": 4, "n_heads": 8}
SEQ_LEN = 256
GLOBAL_BATCH = 16
MICRO_BATCH = 8


def plain_loop(vocab_size: int, steps: int, warmup: int, threads: int) -> float:
    """tokens/s of a textbook single-process loop on random tokens (no data loading)."""
    torch.set_num_threads(threads)
    model = GPT(ModelConfig(**MODEL, vocab_size=vocab_size, seq_len=SEQ_LEN))
    model.init_weights(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, vocab_size, (GLOBAL_BATCH, SEQ_LEN))
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        loss = lm_loss(model(tokens), tokens)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * GLOBAL_BATCH * SEQ_LEN / (time.perf_counter() - start)


def fsdp_trainer(shards: Path, out: Path, steps: int, warmup: int) -> float:
    """tokens/s of the real trainer on 2 ranks, from its metrics log (warmup excluded)."""
    run_dir = out / "fsdp_run"
    config = out / "fsdp.yaml"
    config.write_text(yaml.safe_dump({
        "run_dir": str(run_dir), "max_steps": warmup + steps, "global_batch_size": GLOBAL_BATCH,
        "micro_batch_size": MICRO_BATCH, "model": MODEL, "log_every": 1, "mlflow": False,
        "data": {"shards": str(shards), "clean_stale_shm": False},
        "checkpoint": {"every_steps": 0, "autoresume": False}, "eval_batches": 1,
        "optim": {"warmup_steps": 2},
    }))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    subprocess.run(
        [sys.executable, "-m", "tokenmill.cli", "train", "--config", str(config), "--nproc", "2"],
        cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL,
    )
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # Each row's tokens_per_s covers one step: harmonic mean over the timed steps.
    timed = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r and r["step"] > warmup]
    return len(timed) / sum(1 / t for t in timed)


def loader_throughput(shards: Path, batches: int) -> float:
    """tokens/s the StreamingDataLoader delivers to one rank, no training."""
    from tokenmill.train import data
    from tokenmill.train.config import DataConfig

    info = data.read_dataset_info(str(shards), shards / "cache")
    loader = data.build_loader(info, DataConfig(), shards / "cache", "train", MICRO_BATCH, shuffle=True)
    it = iter(loader)
    next(it)  # first batch pays for opening shards
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * MICRO_BATCH * SEQ_LEN / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default="/tmp/bench_train")
    args = parser.parse_args()
    out = Path(args.out)
    shards = out / "shards"
    if not (shards / "dataset.json").exists():
        from train_fixture import write_fixture

        write_fixture(shards, n_train=2048, n_val=64, seq_len=SEQ_LEN, size_limit=1 << 20)
    vocab = json.loads((shards / "dataset.json").read_text())["vocab_size"]

    fsdp = fsdp_trainer(shards, out, args.steps, args.warmup)
    # The fairest plain baseline on 2 cores: the better of 1 and 2 threads.
    plain_by_threads = {t: plain_loop(vocab, args.steps, args.warmup, t) for t in (1, 2)}
    plain = max(plain_by_threads.values())
    loader = loader_throughput(shards, batches=200)
    results = {
        "model": {**MODEL, "seq_len": SEQ_LEN, "vocab_size": vocab},
        "global_batch": GLOBAL_BATCH,
        "plain_1proc_1thread_tok_s": round(plain_by_threads[1]),
        "plain_1proc_2threads_tok_s": round(plain_by_threads[2]),
        "fsdp_2proc_gloo_tok_s": round(fsdp),
        "fsdp_over_best_plain": round(fsdp / plain, 3),
        "loader_1rank_tok_s": round(loader),
        "loader_over_step_consumption_per_rank": round(loader / (fsdp / 2), 1),
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
