"""``tokenmill preflight --train-config FILE``: the checklist before a costly run.

Each item passes, warns, fails or is skipped, with one line saying why:

1. config      the trainer YAML loads and the batch divides over the ranks
2. shards      dataset.json, every split's index.json and shard files (present,
               the size the index says), sample counts, and decoded samples
               (seq_len tokens, ids below the vocabulary, unique seq_ids)
3. base model  with init_from: the Hugging Face folder is readable and supported,
               its tokenizer is the shards' tokenizer, vocabulary and context fit,
               every tensor is there with the right shape
4. tokenizer   tokenizer.json matches dataset.json (sha256, vocabulary, EOS),
               and the model's vocab_size / seq_len match the shards
5. data        enough sequences for a step and an eval; epochs the run will take
6. memory      memory per rank for the model, micro-batch and ranks, against the GPU's
7. checkpoints the checkpoint folder is writable, renames work, and the disk
               has room for keep_last + 1 checkpoints of this model
8. dry save    a sharded checkpoint is saved and loaded back bit-exact with the
               trainer's own code, on the real checkpoint filesystem
9. estimate    tokens, FLOPs, GPU-hours, wall time and cost (tokenmill plan),
               and the checkpoint interval against the expected failure rate
10. gpus       GPUs and NCCL visible where expected (--expect-gpus)

The exit status is 1 when any item fails, so a job can stop before training.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from typing import Callable, Literal, Optional

from tokenmill import preflight_shards, units
from tokenmill.errors import UserError
from tokenmill.train.checkpoint_probe import CHECKPOINT_BYTES_PER_PARAM, dry_checkpoint, probe_dir

Status = Literal["pass", "warn", "fail", "skip"]


@dataclass
class Check:
    name: str
    status: Status
    detail: str


@dataclass(frozen=True)
class Options:
    nproc: int = 1
    expect_gpus: int = 0
    gpu: Optional[str] = None
    mfu: float = 0.4
    usd_per_gpu_hour: Optional[float] = None
    min_free_gb: Optional[float] = None
    dry_checkpoint: bool = True

    def __post_init__(self):
        """The flags, checked before any item runs (a bad one is a UserError, not a failed item)."""
        from tokenmill.gpus import GPUS

        if self.nproc < 1:
            raise UserError(f"--nproc must be >= 1, got {self.nproc}")
        if self.expect_gpus < 0:
            raise UserError(f"--expect-gpus: must be >= 0, got {self.expect_gpus}")
        if self.gpu is not None and self.gpu not in GPUS:
            raise UserError(f"--gpu: unknown GPU {self.gpu!r}; choose one of {', '.join(GPUS)}")
        if not (0 < self.mfu <= 1):
            raise UserError(f"--mfu: must be a number > 0 and at most 1, got {self.mfu}")
        if self.usd_per_gpu_hour is not None and not (0 < self.usd_per_gpu_hour < math.inf):
            raise UserError(f"--usd-per-gpu-hour: must be a number > 0, got {self.usd_per_gpu_hour}")
        if self.min_free_gb is not None and not (0 <= self.min_free_gb < math.inf):
            raise UserError(f"--min-free-gb: must be >= 0, got {self.min_free_gb}")


class Preflight:
    """Runs the checks in order; later checks reuse what earlier ones learned."""

    def __init__(self, cfg, options: Options):
        self.cfg = cfg
        self.options = options
        self.info = None  # ShardsInfo, once dataset.json was read
        self.model_cfg = None  # ModelConfig, once the shards' vocab/seq_len are known
        self.checks: list[Check] = []

    def run(self) -> list[Check]:
        steps: list[tuple[str, Callable[[], tuple[Status, str]]]] = [
            ("config", self.check_config),
            ("shards", self.check_shards),
            ("base model", self.check_base_model),
            ("tokenizer", self.check_tokenizer),
            ("data", self.check_data),
            ("memory", self.check_memory),
            ("checkpoints", self.check_checkpoint_dir),
            ("dry save", self.check_dry_checkpoint),
            ("estimate", self.check_estimate),
            ("gpus", self.check_gpus),
        ]
        for name, step in steps:
            try:
                status, detail = step()
            except UserError as exc:
                status, detail = "fail", str(exc)
            except Exception as exc:  # an unexpected error is a failed item, not a crash
                status, detail = "fail", f"{type(exc).__name__}: {exc}"
            self.checks.append(Check(name, status, detail))
        return self.checks

    # --- 1. config -------------------------------------------------------------------

    def check_config(self) -> tuple[Status, str]:
        cfg, nproc = self.cfg, self.options.nproc
        accum = cfg.grad_accum(nproc)
        return "pass", (
            f"{cfg.max_steps:,} steps x {cfg.global_batch_size} sequences; {nproc} rank(s) x "
            f"micro-batch {cfg.micro_batch_size} x {accum} accumulation step(s)"
        )

    # --- 2. shards -------------------------------------------------------------------

    def check_shards(self) -> tuple[Status, str]:
        from tokenmill.train import data

        if not self.cfg.data.shards:
            return "fail", "no shards given: set data.shards in the config or pass --shards DIR"
        cache = self.cfg.run.cache(self.cfg.data.cache_dir)
        self.info = info = data.read_dataset_info(self.cfg.data.shards, cache)
        if data.is_remote(info.root):
            return "warn", (f"dataset.json read from {info.root}; shard files are remote and were not "
                            f"checked here (run preflight where the shards are mounted to check them)")
        return preflight_shards.check_shard_files(info)

    # --- 4. tokenizer vs shards vs model ---------------------------------------------

    def check_tokenizer(self) -> tuple[Status, str]:
        from tokenmill.train import data

        if self.info is None:
            return "skip", "needs readable shards"
        # The model first: a mismatch here is what breaks training.
        if self.cfg.init_from:
            if self.model_cfg is None:
                return "skip", "needs a usable base model"
        else:
            self.model_cfg = data.resolve_model(self.cfg.model, self.info)
        return preflight_shards.check_tokenizer(self.info, self.model_cfg)

    # --- 5. enough data -----------------------------------------------------------------

    def check_data(self) -> tuple[Status, str]:
        if self.info is None:
            return "skip", "needs readable shards"
        return preflight_shards.check_data(self.cfg, self.info, self.options.nproc)

    # --- 7. checkpoint location ---------------------------------------------------------

    def _params(self) -> Optional[int]:
        if self.model_cfg is None:
            return None
        from tokenmill.train.model import count_params

        return count_params(self.model_cfg)

    def check_checkpoint_dir(self) -> tuple[Status, str]:
        """Writes, fsyncs and renames a file in a temporary folder next to where the
        checkpoints go (in the nearest folder that exists), then removes that folder:
        preflight creates none of the run's folders."""
        root = self.cfg.run.checkpoints
        try:
            with probe_dir(root) as probe:
                with open(probe / "probe.tmp", "wb") as f:
                    f.write(b"x" * 4096)
                    f.flush()
                    os.fsync(f.fileno())
                os.rename(probe / "probe.tmp", probe / "probe")  # checkpoints are renamed into place
                free = shutil.disk_usage(probe).free
        except OSError as exc:
            return "fail", f"cannot write checkpoints under {root}: {exc.strerror or exc}"
        params = self._params()
        keep = self.cfg.checkpoint.keep_last
        if params is None:
            need = (self.options.min_free_gb or 0) * 1e9
            what = "model size unknown (needs the shards)"
        else:
            need = params * CHECKPOINT_BYTES_PER_PARAM * (keep + 1)
            if self.options.min_free_gb is not None:
                need = max(need, self.options.min_free_gb * 1e9)
            what = f"{keep} kept + 1 being written x {units.gb(params * CHECKPOINT_BYTES_PER_PARAM)} ({params:,} params)"
        if free < need:
            return "fail", f"{root}: {units.gb(free)} free, need {units.gb(need)} for {what}"
        from tokenmill.train import checkpoint

        latest = checkpoint.latest_checkpoint(root) if root.is_dir() else None
        resume = ""
        if latest is not None and self.cfg.checkpoint.autoresume:
            resume = f"; will resume from {latest.name}"
        return "pass", f"{root} writable, {units.gb(free)} free, need {units.gb(need)} for {what}{resume}"

    # --- 8. dry checkpoint save + load --------------------------------------------------

    def check_dry_checkpoint(self) -> tuple[Status, str]:
        if not self.options.dry_checkpoint:
            return "skip", "--no-dry-checkpoint"
        if self.model_cfg is None:
            return "skip", "needs the model config (readable shards)"
        import torch.distributed as dist

        if dist.is_initialized():
            return "skip", "a process group is already running in this process"
        with probe_dir(self.cfg.run.checkpoints) as root:
            return dry_checkpoint(self.model_cfg, root, self._params() or 0)

    # --- 3. base model and 6. memory -------------------------------------------------------

    def check_base_model(self) -> tuple[Status, str]:
        if not self.cfg.init_from:
            return "skip", "no init_from: the model starts from random weights"
        if self.info is None:
            return "skip", "needs readable shards"
        from tokenmill.train import base_model

        base, self.model_cfg = base_model.resolve(self.cfg, self.info)
        return "pass", (f"{base.family} ({base.model_cfg.n_layers} layers, {self._params():,} parameters, "
                        f"{base.dtype}) in {len(set(base.ckpt.files.values()))} file(s); its tokenizer is "
                        f"the shards'; vocab {base.model_cfg.vocab_size:,}, context "
                        f"{base.model_cfg.context_len or 'unlimited'} >= seq_len {self.info.seq_len}")

    def check_memory(self) -> tuple[Status, str]:
        if self.model_cfg is None:
            return "skip", "needs the model config"
        from tokenmill.gpus import GPUS
        from tokenmill.train import memory

        cfg, params = self.cfg, self._params()
        trainable = memory.trainable_params(self.model_cfg)
        gpu = self.options.gpu or visible_gpu_kind()
        bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and gpu is not None)
        est = memory.estimate(self.model_cfg, params, trainable, self.options.nproc, cfg.micro_batch_size, bf16,
                              cfg.activation_checkpointing)
        detail = (f"~{est.describe()} at micro-batch {cfg.micro_batch_size} x {self.model_cfg.seq_len} tokens; "
                  f"{cfg.method}: {trainable:,} of {params:,} parameters train")
        if self.model_cfg.lora is not None:
            full = memory.estimate(self.model_cfg, params, params, self.options.nproc, cfg.micro_batch_size,
                                   bf16, cfg.activation_checkpointing)
            detail += f" (full fine-tuning: {memory.gb(full.total)} per rank)"
        if gpu is None or gpu not in GPUS:
            return "pass", detail + "; no GPU kind to compare with (--gpu)"
        have = GPUS[gpu].memory_gb * 1e9
        detail += f"; {gpu} has {memory.gb(have)}"
        if est.total > have:
            return "fail", detail + ": lower micro_batch_size, turn on activation_checkpointing, or add ranks"
        if est.total > 0.9 * have:
            return "warn", detail + ": little headroom"
        return "pass", detail

    # --- 9. time and cost -------------------------------------------------------------

    def check_estimate(self) -> tuple[Status, str]:
        if self.model_cfg is None:
            return "skip", "needs the model config (readable shards)"
        from tokenmill.plan import run_estimate
        from tokenmill.train.model import flops_per_token

        cfg, opts = self.cfg, self.options
        e = run_estimate(self._params(), flops_per_token(self.model_cfg),
                         cfg.max_steps * cfg.global_batch_size * self.model_cfg.seq_len,
                         opts.gpu or visible_gpu_kind(), opts.nproc, opts.mfu, opts.usd_per_gpu_hour)
        wall_h, young_h = e.wall_hours, e.checkpoint_interval_hours
        assumed = " (assumed: pass --gpu)" if e.gpu_assumed else ""
        detail = (f"{e.tokens:,.0f} tokens, {e.flops:.3g} FLOPs; on {opts.nproc} x {e.gpu}{assumed} at MFU "
                  f"{opts.mfu:.2f}: {e.gpu_hours:,.3g} GPU-hours, wall {units.hours(wall_h)}, "
                  f"{units.usd(e.cost_usd)} at ${e.usd_per_gpu_hour:g}/GPU-hour; "
                  f"expected failures {e.expected_failures:.2g}")
        every = cfg.checkpoint
        interval_h = math.inf
        if every.every_steps:
            interval_h = wall_h * every.every_steps / cfg.max_steps
        if every.every_minutes:
            interval_h = min(interval_h, every.every_minutes / 60)
        if wall_h > young_h and interval_h > 2 * young_h:
            shown = "never" if math.isinf(interval_h) else f"every {units.hours(interval_h)}"
            return "warn", detail + (f"; checkpoints {shown}, but the interval that minimizes lost work "
                                     f"is {units.hours(young_h)} (set checkpoint.every_minutes)")
        return "pass", detail

    # --- 10. GPUs and NCCL ------------------------------------------------------------

    def check_gpus(self) -> tuple[Status, str]:
        import torch
        import torch.distributed as dist

        want = self.options.expect_gpus
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            if want > 0:
                return "fail", (f"expected {want} GPU(s), none visible (torch {torch.__version__}, "
                                f"CUDA build {torch.version.cuda or 'none'}); use a GPU runtime")
            return "pass", f"no GPU expected or visible: {self.options.nproc} CPU rank(s) with gloo"
        names = sorted({torch.cuda.get_device_name(i) for i in range(n)})
        if n < want:
            return "fail", f"expected {want} GPU(s), {n} visible ({', '.join(names)})"
        if not dist.is_nccl_available():
            return "fail", f"{n} GPU(s) visible but this torch build has no NCCL"
        version = ".".join(str(v) for v in torch.cuda.nccl.version())
        detail = f"{n} x {', '.join(names)}; NCCL {version}"
        if self.cfg.precision in ("auto", "bf16") and not torch.cuda.is_bf16_supported():
            return "warn", detail + "; bf16 is not supported on this GPU (set precision: fp32)"
        if self.options.nproc > n:
            return "warn", detail + (f"; --nproc {self.options.nproc} > GPUs here: fine across nodes "
                                     f"(--spark), otherwise ranks would share a GPU")
        return "pass", detail


def visible_gpu_kind() -> Optional[str]:
    """The table name of the first visible GPU (h100, a10g, ...); None without CUDA or for an unknown card."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        name = torch.cuda.get_device_name(0)
    except Exception:
        return None
    from tokenmill.gpus import gpu_for_device

    return gpu_for_device(name)


# --- command line -----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-config", required=True, metavar="FILE", help="trainer YAML (as for tokenmill train)")
    parser.add_argument("--shards", help="shards dir or URI (overrides data.shards)")
    parser.add_argument("--run-dir", help="where checkpoints go (overrides run_dir)")
    parser.add_argument("--max-steps", type=int, help="overrides max_steps")
    parser.add_argument("--init-from", help="Hugging Face checkpoint folder to start from (overrides init_from)")
    parser.add_argument("--nproc", type=int, default=None,
                        help="training ranks in all (default: GPUs visible here, or 1)")
    parser.add_argument("--expect-gpus", type=int, default=0, metavar="N",
                        help="fail unless at least N GPUs and NCCL are visible on this machine")
    parser.add_argument("--gpu", help="GPU kind for the estimate (default: the visible one, else h100)")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilization for the estimate")
    parser.add_argument("--usd-per-gpu-hour", type=float, help="price for the estimate (default: plan's list price)")
    parser.add_argument("--min-free-gb", type=float, help="require at least this much free checkpoint space")
    parser.add_argument("--no-dry-checkpoint", action="store_true", help="skip the dry checkpoint save + load")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")


MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}


def load_train_config(train_config: str, shards: Optional[str] = None, run_dir: Optional[str] = None,
                      max_steps: Optional[int] = None, init_from: Optional[str] = None):
    """The trainer config with the flags applied; UserError when it does not load."""
    from tokenmill.config import replace
    from tokenmill.train.config import load_config

    return replace(load_config(train_config), {"data.shards": shards, "run_dir": run_dir, "max_steps": max_steps,
                                               "init_from": init_from})


def run_checks(train_config: str, shards: Optional[str] = None, run_dir: Optional[str] = None,
               max_steps: Optional[int] = None, options: Options = Options(),
               init_from: Optional[str] = None) -> list[Check]:
    """The checklist as data (for notebooks and jobs). A config that does not load is one failed item."""
    try:
        cfg = load_train_config(train_config, shards, run_dir, max_steps, init_from)
    except UserError as exc:
        return [Check("config", "fail", str(exc))]
    return Preflight(cfg, options).run()


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"  {MARK[c.status]}  {c.name:<{width}}  {c.detail}" for c in checks]
    counts = {s: sum(c.status == s for c in checks) for s in MARK}
    verdict = "NOT READY" if counts["fail"] else "ready"
    lines.append(f"preflight: {verdict}: {counts['pass']} passed, {counts['warn']} warning(s), "
                 f"{counts['fail']} failed, {counts['skip']} skipped")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    nproc = args.nproc
    if nproc is None:
        import torch

        nproc = max(1, torch.cuda.device_count())
    options = Options(nproc=nproc, expect_gpus=args.expect_gpus, gpu=args.gpu, mfu=args.mfu,
                      usd_per_gpu_hour=args.usd_per_gpu_hour, min_free_gb=args.min_free_gb,
                      dry_checkpoint=not args.no_dry_checkpoint)
    # Bad flags and a config that does not load are one line and exit 2, as in every command.
    cfg = load_train_config(args.train_config, args.shards, args.run_dir, args.max_steps, args.init_from)
    checks = Preflight(cfg, options).run()
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        print(f"preflight: {args.train_config}")
        print(render(checks))
    return 1 if any(c.status == "fail" for c in checks) else 0
