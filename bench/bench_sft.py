"""Trainer tokens/s: the masked-loss (SFT) path vs the pretraining path, same model, same tokens.

Makes SFT shards (ChatML conversations, packed and masked by the chat
stage's own functions: tests/train_fixture.py write_sft_fixture), then
pretraining shards holding exactly the same windows' tokens (same
tokenizer, vocab, seq_len and token count; no loss mask, no doc_ids). Then
``tokenmill train --nproc 2`` (gloo, CPU) runs the same model from scratch
on each:

- pretrain: causal attention over the whole window, loss on every token;
- pretrain + doc_mask: the same, with ``model.attention.doc_mask: true``
  (documents split at EOS attend only to themselves), to tell the cost of
  the document mask from the cost of the masked loss;
- sft: the document mask from the shards' doc_ids and the cross-entropy
  over target tokens only, normalised over the global batch.

tokens/s is the harmonic mean over the timed steps (after ``--warmup``)
from each run's metrics.jsonl; every step has global_batch x seq_len
tokens, padding included, in all runs. Goal: sft within 5% of pretrain.

    python -m bench.bench_sft [--workdir /tmp/bench_sft] [--d-model 256 --layers 4] [--seq-len 512] [--json]
    python -m bench.bench_sft --d-model 64 --layers 2 --seq-len 128 --steps 3 --warmup 1   # smoke size
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from bench.cpu_runs import parser_with_run_flags, run_settings, timed_tokens_per_s, train_two_ranks

sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))  # train_fixture: test scaffolding
AVG_EXAMPLE_TOKENS = 20  # the fixture's conversations, roughly: sizes the number made


def make_sft_shards(args) -> Path:
    from train_fixture import write_sft_fixture

    shards = Path(args.workdir) / f"sft_{args.seq_len}"
    if not (shards / "dataset.json").is_file():
        windows = args.batch * (args.warmup + args.steps + 2)
        n_train = windows * args.seq_len // AVG_EXAMPLE_TOKENS
        write_sft_fixture(shards, n_train=n_train, n_val=max(16, n_train // 50), seq_len=args.seq_len,
                          size_limit=1 << 22)
    return shards


def read_windows(shards: Path, split: str) -> np.ndarray:
    """Every window's tokens of a split, in order, through the trainer's own reader."""
    from tokenmill.train import data
    from tokenmill.train.config import DataConfig

    cache = shards / "cache"
    info = data.read_dataset_info(str(shards), cache)
    n = int(info.splits[split]["sequences"])
    loader = data.build_loader(info, DataConfig(clean_stale_shm=False), cache, split, n, shuffle=False,
                               drop_last=False)
    return next(iter(loader)).tokens.numpy()


def make_pretrain_shards(sft: Path, workdir: Path) -> Path:
    """The SFT windows' tokens as pretraining shards (format tokenmill-mds-v1)."""
    from train_fixture import write_split

    out = workdir / f"{sft.name}_as_pretrain"
    from tokenmill.shards.dataset_info import FILE, TEXT_FORMAT, DatasetInfo

    if (out / FILE).is_file():
        return out
    meta = DatasetInfo.read(sft)
    out.mkdir(parents=True)
    shutil.copyfile(sft / "tokenizer.json", out / "tokenizer.json")
    splits, first = {}, 0
    for name in ("train", "val"):
        rows = read_windows(sft, name)
        shards = write_split(out / name, rows, first, meta.dtype, 1 << 22)
        splits[name] = {"sequences": len(rows), "tokens": int(rows.size), "shards": shards}
        first += len(rows)
    DatasetInfo(format=TEXT_FORMAT, dtype=meta.dtype, seq_len=meta.seq_len, vocab_size=meta.vocab_size,
                eos_id=meta.eos_id, bos_id=meta.bos_id, tokenizer_sha256=meta.tokenizer_sha256,
                splits=splits).write(out)
    return out


def run(args, name: str, shards: Path, doc_mask: bool) -> dict:
    work = Path(args.workdir)
    run_dir = work / f"run_{name}"
    shutil.rmtree(run_dir, ignore_errors=True)
    train_two_ranks(work / f"{name}.yaml", run_settings(
        args, run_dir, shards, seed=1,
        model={"d_model": args.d_model, "n_layers": args.layers, "n_heads": max(1, args.d_model // 64),
               "position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "attention": {"doc_mask": doc_mask}}))
    return {"path": name, "tokens_per_s": timed_tokens_per_s(run_dir, args.warmup), "timed_steps": args.steps,
            "tokens_per_step": args.batch * args.seq_len}


def main() -> None:
    parser = parser_with_run_flags(__doc__, "/tmp/bench_sft", d_model=256, layers=4, seq_len=512, steps=10)
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    sft = make_sft_shards(args)
    pretrain = make_pretrain_shards(sft, Path(args.workdir))
    results = [run(args, "pretrain", pretrain, False), run(args, "pretrain_doc_mask", pretrain, True),
               run(args, "sft", sft, True)]
    if args.json:
        print(json.dumps(results, indent=2))
    base = results[0]["tokens_per_s"]
    print(f"model d{args.d_model} x {args.layers} layers (rope, swiglu), seq {args.seq_len}, "
          f"global batch {args.batch}, 2 gloo ranks, {args.steps} timed steps")
    print(f"{'path':<20}{'tokens/s':>10}{'vs pretrain':>13}")
    for r in results:
        print(f"{r['path']:<20}{r['tokens_per_s']:>10.0f}{r['tokens_per_s'] / base:>13.3f}")


if __name__ == "__main__":
    main()
