"""``tokenmill finetune``: fine-tune an open model on your own data in one command.

    tokenmill finetune --model HF_DIR --data PATH --output OUT [--task chat|instruction|continued]

A thin composition of the existing parts: the pipeline stages (etl -> dedup
-> tokenize -> shards, with a ``chat:`` section for chat and instruction
rows), preflight, the trainer started from the model's weights, and the
Hugging Face export it writes at the end. OUT holds the pipeline output
(``tables/``, ``shards/``, ``manifest.json``) and the run (``OUT/run``:
checkpoints, logs, ``hf/``). Rerunning the same command skips the stages
that are up to date and resumes training from the run's latest checkpoint.

``--dry-run`` runs the data stages only and prints what the run would
train on and what it would cost (``finetune_report.py``).
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tokenmill.errors import UserError
from tokenmill.run_dir import RunDir

TASKS = ("chat", "instruction", "continued")
CHAT_TASKS = ("chat", "instruction")  # rows of the chat variant (a chat: section); continued is plain text
STAGES = ["etl", "dedup", "tokenize", "shards"]
PRESETS = Path(__file__).resolve().parent / "presets"
DATA_PRESET = PRESETS / "finetune_data.yaml"
TRAIN_PRESET = PRESETS / "finetune_train.yaml"
EVALS_PER_RUN = 5
RUN_DIR = "run"


@dataclass(frozen=True)
class FinetuneOptions:
    """The command's flags, checked."""

    model: Path
    data: tuple[str, ...]
    output: Path
    task: str = "chat"
    epochs: Optional[float] = None
    steps: Optional[int] = None
    lr: Optional[float] = None
    seq_len: Optional[int] = None
    nproc: int = 1
    method: str = "full"
    register_to: Optional[str] = None
    dry_run: bool = False
    data_config: Path = DATA_PRESET
    train_config: Path = TRAIN_PRESET
    data_set: tuple[str, ...] = ()
    train_set: tuple[str, ...] = ()
    gpu: Optional[str] = None
    usd_per_gpu_hour: Optional[float] = None
    mfu: float = 0.4

    @property
    def run_dir(self) -> Path:
        return self.output / RUN_DIR


# --- flags ------------------------------------------------------------------------------


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text!r}") from None
        if not value > 0 or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text!r}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="HF_DIR",
                        help="Hugging Face model folder (config.json, *.safetensors, tokenizer.json, tokenizer_config.json)")
    parser.add_argument("--data", required=True, action="append", metavar="PATH",
                        help="JSONL(.gz/.zst), Parquet, Delta folder or catalog table (repeatable)")
    parser.add_argument("--output", required=True, metavar="OUT", help="folder for the data outputs and the run")
    parser.add_argument("--task", choices=TASKS, default="chat",
                        help="chat: rows of messages; instruction: prompt + response; continued: plain text")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=_positive(float), help="passes over the train split (default 1)")
    length.add_argument("--steps", type=_positive(int), help="optimizer steps")
    parser.add_argument("--lr", type=_positive(float), help="peak learning rate (default: the preset's)")
    parser.add_argument("--seq-len", type=_positive(int), help="tokens per packed window (default: the preset's)")
    parser.add_argument("--nproc", type=_positive(int), default=1, help="training ranks on this machine")
    parser.add_argument("--method", choices=["full", "lora"], default="full", help="train every weight, or LoRA adapters")
    parser.add_argument("--register-to", metavar="NAME", help="register the exported model under this name")
    parser.add_argument("--dry-run", action="store_true",
                        help="run the data stages, print counts, lengths, packing and the cost estimate; do not train")
    parser.add_argument("--data-config", metavar="FILE", help="run config replacing the data preset")
    parser.add_argument("--train-config", metavar="FILE", help="trainer config replacing the training preset")
    parser.add_argument("--data-set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a run config field, e.g. --data-set dedup.threshold=0.9 (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="train_set",
                        help="override a trainer field, e.g. --set lora.rank=32 (repeatable)")
    parser.add_argument("--gpu", help="GPU kind for the estimate (default: the visible one, else h100)")
    parser.add_argument("--usd-per-gpu-hour", type=_positive(float), help="price for the estimate")


def options_from_args(args: argparse.Namespace) -> FinetuneOptions:
    """Flags -> FinetuneOptions; a missing model or input is one line."""
    from tokenmill import tables

    model = Path(args.model)
    for name in ("config.json", "tokenizer.json"):
        if not (model / name).is_file():
            raise UserError(f"--model: {model} has no {name}; give a Hugging Face model folder")
    for path in args.data:
        if not Path(path.removeprefix("file://")).exists() and not tables.is_catalog_name(path):
            raise UserError(f"--data: {path} not found (a file, folder, Delta table or catalog.schema.table)")
    for flag, path in (("--data-config", args.data_config), ("--train-config", args.train_config)):
        if path and not Path(path).is_file():
            raise UserError(f"{flag}: {path} not found")
    if args.seq_len is not None and args.seq_len < 2:
        raise UserError(f"--seq-len: must be at least 2, got {args.seq_len}")
    if args.register_to is not None:  # '' is a mistake, not "do not register"
        check_registry_available(args.register_to)
    if args.gpu:
        from tokenmill.gpus import GPUS

        if args.gpu not in GPUS:
            raise UserError(f"--gpu: unknown GPU {args.gpu!r}; choose one of {', '.join(GPUS)}")
    return FinetuneOptions(
        model=model, data=tuple(args.data), output=Path(args.output), task=args.task, epochs=args.epochs,
        steps=args.steps, lr=args.lr, seq_len=args.seq_len, nproc=args.nproc, method=args.method,
        register_to=args.register_to, dry_run=args.dry_run,
        data_config=Path(args.data_config) if args.data_config else DATA_PRESET,
        train_config=Path(args.train_config) if args.train_config else TRAIN_PRESET,
        data_set=tuple(args.data_set), train_set=tuple(args.train_set), gpu=args.gpu,
        usd_per_gpu_hour=args.usd_per_gpu_hour)


# --- configs ----------------------------------------------------------------------------


def run_config(opts: FinetuneOptions):
    """The pipeline's run config: the data preset, the flags, then --data-set."""
    from tokenmill.config import RunConfig, from_dict, load_yaml, parse_overrides, replace

    data = load_yaml(opts.data_config)
    data.update(inputs=[{"path": p} for p in opts.data], output=str(opts.output))
    data["tokenize"] = {**(data.get("tokenize") or {}), "tokenizer": str(opts.model)}
    if opts.seq_len:
        data["tokenize"]["seq_len"] = opts.seq_len
    if opts.task in CHAT_TASKS:
        data["chat"] = {**(data.get("chat") or {}), "task": opts.task}
    else:
        data.pop("chat", None)
    return replace(from_dict(RunConfig, data), parse_overrides(list(opts.data_set)))


def steps_for(opts: FinetuneOptions, train_windows: int, global_batch: int) -> int:
    """--steps, or --epochs (default 1) over the train split's windows, rounded up."""
    if opts.steps:
        return opts.steps
    return max(1, math.ceil((opts.epochs or 1.0) * train_windows / global_batch))


def train_config(opts: FinetuneOptions, train_windows: int):
    """The trainer config: the training preset, the model, shards and run dir, the flags, then --set."""
    from tokenmill.config import parse_overrides, replace
    from tokenmill.train.config import load_config

    cfg = load_config(opts.train_config)
    steps = steps_for(opts, train_windows, cfg.global_batch_size)
    fixed = {
        "init_from": str(opts.model), "data.shards": str(opts.output / "shards"), "run_dir": str(opts.run_dir),
        "max_steps": steps, "method": opts.method, "optim.lr": opts.lr, "export_hf": True,
        "optim.warmup_steps": min(cfg.optim.warmup_steps, steps // 5),
        "eval_every": max(1, steps // EVALS_PER_RUN),
    }
    cfg = replace(replace(cfg, fixed), parse_overrides(list(opts.train_set)))
    cfg.check_method()
    return cfg


def check_before_data(opts: FinetuneOptions, run_cfg) -> None:
    """What needs no data, checked before any Spark work: the packed length against
    the model's context (its config.json only, no weights) and the trainer config
    with its flags and --set (the step count is known once the shards are)."""
    from tokenmill.train.config import AttentionConfig
    from tokenmill.train.hf_adapter import model_config_from_hf
    from tokenmill.train.hf_io import read_config

    config_path = opts.model / "config.json"
    hf = read_config(opts.model)
    context = model_config_from_hf(hf, 1, AttentionConfig(), str(config_path)).context_len
    seq_len = run_cfg.tokenize.seq_len
    named = "--seq-len" if opts.seq_len == seq_len else "tokenize.seq_len"
    window = hf.get("sliding_window") if hf.get("use_sliding_window", True) else None
    for limit, what in ((context, "context"), (window, "sliding attention window")):
        if limit and seq_len > limit:
            raise UserError(f"{named}: {seq_len} is longer than the model's {what} ({limit} tokens in "
                            f"{config_path}); pass --seq-len {limit} or less")
    train_config(opts, train_windows=1)


# --- steps of the run -------------------------------------------------------------------


def run_data_stages(run_cfg):
    from tokenmill.pipeline import make_output_dir, run_stages
    from tokenmill.spark import get_spark

    make_output_dir(run_cfg)
    return run_stages(get_spark(), run_cfg, STAGES)


def shards_info(opts: FinetuneOptions):
    from tokenmill.train import data

    return data.read_dataset_info(str(opts.output / "shards"), RunDir(opts.run_dir).cache())


def preflight(cfg, opts: FinetuneOptions) -> None:
    """The trainer's own checks, then the checklist; a failed item stops the run."""
    from tokenmill import preflight as pf
    from tokenmill.train import launch

    launch.check(cfg, opts.nproc)
    checks = pf.Preflight(cfg, pf.Options(nproc=opts.nproc, gpu=opts.gpu, usd_per_gpu_hour=opts.usd_per_gpu_hour,
                                          mfu=opts.mfu)).run()
    print(pf.render(checks), flush=True)
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        raise UserError(f"preflight failed ({failed[0].name}: {failed[0].detail})")


def hf_dir(cfg) -> Path:
    return cfg.run.export_out(cfg.export.out)


def finished_step(cfg) -> int:
    """The step of the run's latest complete checkpoint (0: none)."""
    from tokenmill.train import checkpoint

    latest = checkpoint.latest_checkpoint(cfg.run.checkpoints)
    return int(latest.name.removeprefix("step_")) if latest is not None else 0


def train(cfg, opts: FinetuneOptions) -> None:
    """Train to max_steps (resuming the run's checkpoint), unless that is done already."""
    from tokenmill.train import launch

    if finished_step(cfg) >= cfg.max_steps and (hf_dir(cfg) / "config.json").is_file():
        print(f"[train] up to date: {cfg.run_path} finished step {cfg.max_steps} and exported {hf_dir(cfg)}")
        return
    code = launch.run_torchrun(launch.write_resolved(cfg), opts.nproc, 0)
    if code != 0:
        raise UserError(f"training ranks exited with code {code} (see {cfg.run.events}); "
                        "run the same command again to resume from the latest checkpoint")
    if not (hf_dir(cfg) / "config.json").is_file():  # the run ended before its export (a crash there)
        from tokenmill.train.export import export

        export(cfg.run_path, hf_dir(cfg), cfg.export, merge=cfg.method == "lora", overwrite=True)


def check_registry_available(name: str) -> None:
    """--register-to needs a name the registry takes and MLflow: checked before any work."""
    from tokenmill.train import registry

    uri = os.environ.get("MLFLOW_TRACKING_URI", "")  # unset: the run dir's file store
    registry.check_model_name(name, registry.registry_uri(uri))
    registry.import_mlflow()
    registry.check_store(uri)


def register(name: str, model_dir: Path, cfg, opts: FinetuneOptions):
    """The last step: the run, its lineage and the export in MLflow, and a registered model version."""
    from tokenmill.train import registry

    lineage = registry.lineage_of_run(cfg.run_path, opts.output / "manifest.json")
    return registry.log_and_register(cfg.run_path, model_dir, lineage, name)


def main(args: argparse.Namespace) -> int:
    from tokenmill import finetune_report

    opts = options_from_args(args)
    run_cfg = run_config(opts)
    check_before_data(opts, run_cfg)
    manifest = run_data_stages(run_cfg)
    info = shards_info(opts)
    cfg = train_config(opts, int(info.splits["train"]["sequences"]))
    if opts.dry_run:
        print(finetune_report.dry_run(manifest, info, cfg, opts))
        return 0
    preflight(cfg, opts)
    train(cfg, opts)
    out = hf_dir(cfg)
    registration = register(opts.register_to, out, cfg, opts) if opts.register_to else None
    print(finetune_report.finished(cfg, out, opts, registration))
    return 0
