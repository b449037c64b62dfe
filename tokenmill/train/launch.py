"""``tokenmill train``: check the config against the shards, then start the ranks.

- Inside torchrun (multi-node, or the processes this command started): train.
- Otherwise: run torchrun's launcher (``--standalone --nproc_per_node N``)
  in this process, running this same command in each rank.
- ``--spark``: start the ranks with pyspark's TorchDistributor instead.

Config and shard problems are reported before any rank starts. With
``checkpoint.autoresume`` (the default), running the same command again
continues from the latest complete checkpoint; ``--max-restarts`` lets
torchrun do that by itself after a rank dies.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from tokenmill.typed_config import replace, to_dict
from tokenmill.errors import UserError
from tokenmill.train.config import TrainConfig, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="trainer YAML, e.g. configs/train_tiny.yaml")
    parser.add_argument("--shards", help="shards dir or URI (overrides data.shards)")
    parser.add_argument("--run-dir", help="where checkpoints and logs go (overrides run_dir)")
    parser.add_argument("--max-steps", type=int, help="overrides max_steps")
    parser.add_argument("--init-from", help="Hugging Face checkpoint folder to start from (overrides init_from)")
    parser.add_argument("--method", choices=["full", "lora"], help="full fine-tuning or LoRA adapters (overrides method)")
    parser.add_argument(
        "--stop-at-step", type=int, help="end this run at that step with a checkpoint (schedule unchanged); rerun to resume"
    )
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a config field, e.g. --set lora.rank=32 (repeatable)")
    parser.add_argument("--nproc", type=int, default=None, help="ranks on this machine (default: GPUs, or 1 on CPU)")
    parser.add_argument("--max-restarts", type=int, default=0, help="torchrun restarts after a rank fails")
    parser.add_argument("--spark", action="store_true", help="launch the ranks with pyspark's TorchDistributor")


def inside_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)


def build_config(args: argparse.Namespace) -> TrainConfig:
    cfg = load_config(args.config)
    overrides = {
        "data.shards": args.shards, "run_dir": args.run_dir, "max_steps": args.max_steps,
        "stop_at_step": args.stop_at_step, "init_from": getattr(args, "init_from", None),
        "method": getattr(args, "method", None),
    }
    from tokenmill.typed_config import parse_overrides

    return replace(replace(cfg, parse_overrides(getattr(args, "set", []) or [])), overrides)


def check(cfg: TrainConfig, nproc: int) -> None:
    """Fail fast, before any rank starts: shards readable, model matches, batch divides."""
    check_launcher(nproc, 0)
    from tokenmill.train import data

    if not cfg.data.shards:
        raise UserError("no shards given: set data.shards in the config or pass --shards DIR")
    cache = cfg.run.cache(cfg.data.cache_dir)
    info = data.read_dataset_info(cfg.data.shards, cache)
    from tokenmill.train import base_model

    base, model_cfg = base_model.resolve(cfg, info)  # with init_from: config, tokenizer, shapes, before any rank
    if model_cfg.lora is not None:
        check_lora_base(cfg, base)
    data.check_split_sizes(info, cfg.global_batch_size)
    cfg.grad_accum(nproc)


def check_launcher(nproc: int, max_restarts: int) -> None:
    """Launcher values, checked before anything divides by them."""
    if nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {nproc}")
    if max_restarts < 0:
        raise UserError(f"--max-restarts must be >= 0, got {max_restarts}")


def check_lora_base(cfg: TrainConfig, base) -> None:
    """Resuming LoRA adapters on another base model than they were trained on is refused here."""
    from tokenmill.train import base_model, checkpoint

    latest = checkpoint.latest_checkpoint(cfg.run.checkpoints) if cfg.checkpoint.autoresume else None
    if latest is None:
        return
    want = (checkpoint.read_trainer_state(latest).get("base") or {}).get("sha256")
    have = base_model.weights_sha256(base.ckpt)
    if want and want != have:
        raise UserError(
            f"the base model at {base.root} (sha256 {have[:12]}) is not the one the adapters in {latest} "
            f"were trained on ({want[:12]}): pass that base model, or use a new run_dir"
        )


def default_nproc() -> int:
    import torch

    return max(1, torch.cuda.device_count())


def write_resolved(cfg: TrainConfig) -> Path:
    """The exact config every rank reads (overrides applied) lives with the run."""
    cfg.run_path.mkdir(parents=True, exist_ok=True)
    path = cfg.run.config
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return path


def run_torchrun(config_path: Path, nproc: int, max_restarts: int) -> int:
    """torchrun's launcher in this process (one more Python would import torch
    again, 1.5 s, only to start the ranks); the ranks' exit code, 0 when all succeed."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    arguments = [
        "--standalone", f"--nproc_per_node={nproc}", f"--max-restarts={max_restarts}",
        "-m", "tokenmill.cli", "train", "--config", str(config_path),
    ]
    print("[train] torchrun " + " ".join(arguments), flush=True)
    try:
        torchrun(arguments)
    except ChildFailedError as failed:
        print(failed.format_msg(), file=sys.stderr, flush=True)
        _, first = failed.get_first_failure()
        return first.exitcode if first.exitcode > 0 else 1
    return 0


def run_spark(cfg: TrainConfig, nproc: int) -> dict:
    """Ranks as Spark tasks (or torchrun on the driver for a local master)."""
    from pyspark.ml.torch.distributor import TorchDistributor

    from tokenmill.train.loop import train_from_dict

    spark = _spark_session()
    local_mode = spark.conf.get("spark.master", "local").startswith("local")  # also on Spark Connect
    from tokenmill.train.distributed import pick_device

    use_gpu = pick_device(cfg.device) == "cuda"
    distributor = TorchDistributor(num_processes=nproc, local_mode=local_mode, use_gpu=use_gpu)
    return distributor.run(train_from_dict, to_dict(cfg))


def _spark_session():
    try:
        from tokenmill.spark import get_spark
    except ImportError:
        from pyspark.sql import SparkSession

        return SparkSession.builder.getOrCreate()
    return get_spark()


def main(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    if inside_torchrun():
        from tokenmill.train.loop import train

        train(cfg)
        return 0
    nproc = args.nproc if args.nproc is not None else default_nproc()
    check_launcher(nproc, args.max_restarts)
    check(cfg, nproc)
    if args.spark:
        result = run_spark(cfg, nproc)
        print(f"[train] done: {result}")
        return 0
    code = run_torchrun(write_resolved(cfg), nproc, args.max_restarts)
    if code != 0:
        print(
            f"tokenmill train: ranks exited with code {code}; see {cfg.run.events}. "
            f"Run the same command again to resume from the latest checkpoint.",
            file=sys.stderr,
        )
    return code
