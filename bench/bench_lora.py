"""Full fine-tuning vs LoRA on CPU: peak memory per rank and tokens/s, same model and batch.

Makes a random Llama checkpoint (default ~125M-shaped: hidden 768, 12 layers,
12 heads, 4 kv heads, intermediate 2048, vocab 32000, untied) with the
fixture tokenizer in it, and small shards; then runs ``tokenmill train
--nproc 2`` (gloo) from it twice, ``--method full`` and ``--method lora``
(rank 16 on every linear layer), and reads each run's log: tokens/s (harmonic
mean over the timed steps), peak memory of rank 0 (VmHWM), trainable
parameters, checkpoint size.

    python bench/bench_lora.py [--workdir /tmp/bench_lora] [--steps 8] [--hidden 768 --layers 12] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def make_inputs(args) -> tuple[Path, Path]:
    from tokenmill.train.fixture import write_fixture, write_hf_model

    work = Path(args.workdir)
    shards = work / f"shards_{args.seq_len}"
    if not (shards / "dataset.json").is_file():
        write_fixture(shards, n_train=256, n_val=16, seq_len=args.seq_len, size_limit=1 << 20)
    model = work / f"llama_h{args.hidden}_l{args.layers}"
    if not (model / "config.json").is_file():
        heads = args.hidden // 64
        write_hf_model(model, "llama", vocab_size=32000, tokenizer_dir=shards, hidden_size=args.hidden,
                       num_hidden_layers=args.layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 3),
                       intermediate_size=int(args.hidden * 8 / 3 // 64 * 64), max_position_embeddings=2048,
                       rope_scaling=None, tie_word_embeddings=False)
    return shards, model


def run(args, shards: Path, model: Path, method: str) -> dict:
    run_dir = Path(args.workdir) / f"run_{method}"
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    config = Path(args.workdir) / f"{method}.yaml"
    config.write_text(yaml.safe_dump({
        "device": "cpu", "run_dir": str(run_dir), "init_from": str(model), "method": method,
        "lora": {"rank": 16, "alpha": 32.0, "targets": ["all"]}, "max_steps": args.warmup + args.steps,
        "global_batch_size": args.batch, "micro_batch_size": args.batch // 2, "log_every": 1, "mlflow": False,
        "eval_batches": 1, "optim": {"lr": 1e-4, "warmup_steps": 1},
        "checkpoint": {"every_steps": 0, "autoresume": False},
        "data": {"shards": str(shards), "clean_stale_shm": False},
    }))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env.setdefault("OMP_NUM_THREADS", "1")
    subprocess.run([sys.executable, "-m", "tokenmill.cli", "train", "--config", str(config), "--nproc", "2"],
                   cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timed = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r and r["step"] > args.warmup]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["event"] == "start")
    end = next(e for e in events if e["event"] == "end")
    ckpt = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    return {
        "method": method, "tokens_per_s": len(timed) / sum(1 / t for t in timed),
        "peak_memory_gb": end["peak_memory_gb"], "trainable_params": start["trainable_params"],
        "checkpoint_mb": sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file()) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/bench_lora")
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8, help="global batch (sequences), 2 ranks")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    shards, model = make_inputs(args)
    results = [run(args, shards, model, m) for m in ("full", "lora")]
    if args.json:
        print(json.dumps(results, indent=2))
    full, lora = results
    print(f"model h{args.hidden} x {args.layers} layers, seq {args.seq_len}, global batch {args.batch}, 2 gloo ranks")
    print(f"{'method':<8}{'tokens/s':>10}{'peak GB/rank':>14}{'trainable':>14}{'ckpt MB':>10}")
    for r in results:
        print(f"{r['method']:<8}{r['tokens_per_s']:>10.0f}{r['peak_memory_gb']:>14.2f}{r['trainable_params']:>14,}"
              f"{r['checkpoint_mb']:>10.1f}")
    print(f"lora / full: memory {lora['peak_memory_gb'] / full['peak_memory_gb']:.2f}, "
          f"tokens/s {lora['tokens_per_s'] / full['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
