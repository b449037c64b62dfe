"""Full fine-tuning vs LoRA on CPU: peak memory per rank and tokens/s, same model and batch.

Makes a random Llama checkpoint (default ~125M-shaped: hidden 768, 12 layers,
12 heads, 4 kv heads, intermediate 2048, vocab 32000, untied) with the
fixture tokenizer in it, and small shards; then runs ``tokenmill train
--nproc 2`` (gloo) from it twice, ``--method full`` and ``--method lora``
(rank 16 on every linear layer), and reads each run's log: tokens/s (harmonic
mean over the timed steps), peak memory of rank 0 (VmHWM), trainable
parameters, checkpoint size.

    python -m bench.bench_lora [--workdir /tmp/bench_lora] [--steps 8] [--d-model 768 --layers 12] [--json]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.cpu_runs import parser_with_run_flags, run_settings, timed_tokens_per_s, train_two_ranks

sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))  # train_fixture: test scaffolding


def make_inputs(args) -> tuple[Path, Path]:
    from train_fixture import write_fixture, write_hf_model

    work = Path(args.workdir)
    shards = work / f"shards_{args.seq_len}"
    if not (shards / "dataset.json").is_file():
        write_fixture(shards, n_train=256, n_val=16, seq_len=args.seq_len, size_limit=1 << 20)
    model = work / f"llama_h{args.d_model}_l{args.layers}"
    if not (model / "config.json").is_file():
        heads = args.d_model // 64
        write_hf_model(model, "llama", vocab_size=32000, tokenizer_dir=shards, hidden_size=args.d_model,
                       num_hidden_layers=args.layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 3),
                       intermediate_size=int(args.d_model * 8 / 3 // 64 * 64), max_position_embeddings=2048,
                       rope_scaling=None, tie_word_embeddings=False)
    return shards, model


def run(args, shards: Path, model: Path, method: str) -> dict:
    run_dir = Path(args.workdir) / f"run_{method}"
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    train_two_ranks(Path(args.workdir) / f"{method}.yaml", run_settings(
        args, run_dir, shards, init_from=str(model), method=method,
        lora={"rank": 16, "alpha": 32.0, "targets": ["all"]}))
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["event"] == "start")
    end = next(e for e in events if e["event"] == "end")
    ckpt = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    return {
        "method": method, "tokens_per_s": timed_tokens_per_s(run_dir, args.warmup),
        "peak_memory_gb": end["peak_memory_gb"], "trainable_params": start["trainable_params"],
        "checkpoint_mb": sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file()) / 1e6,
    }


def main() -> None:
    parser = parser_with_run_flags(__doc__, "/tmp/bench_lora", d_model=768, layers=12, seq_len=256, steps=8)
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    shards, model = make_inputs(args)
    results = [run(args, shards, model, m) for m in ("full", "lora")]
    if args.json:
        print(json.dumps(results, indent=2))
    full, lora = results
    print(f"model h{args.d_model} x {args.layers} layers, seq {args.seq_len}, global batch {args.batch}, 2 gloo ranks")
    print(f"{'method':<8}{'tokens/s':>10}{'peak GB/rank':>14}{'trainable':>14}{'ckpt MB':>10}")
    for r in results:
        print(f"{r['method']:<8}{r['tokens_per_s']:>10.0f}{r['peak_memory_gb']:>14.2f}{r['trainable_params']:>14,}"
              f"{r['checkpoint_mb']:>10.1f}")
    print(f"lora / full: memory {lora['peak_memory_gb'] / full['peak_memory_gb']:.2f}, "
          f"tokens/s {lora['tokens_per_s'] / full['tokens_per_s']:.2f}")


if __name__ == "__main__":
    main()
