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
import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal, Optional

from tokenmill.errors import UserError

Status = Literal["pass", "warn", "fail", "skip"]
# Model weights (fp32) + AdamW's two moments (fp32) per parameter.
CHECKPOINT_BYTES_PER_PARAM = 12
# Above this many parameters the dry save uses a one-layer model of the same kind.
DRY_RUN_MAX_PARAMS = 20_000_000
SAMPLES_DECODED = 64


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
        cache = Path(self.cfg.data.cache_dir) if self.cfg.data.cache_dir else self.cfg.run_path / "cache"
        self.info = info = data.read_dataset_info(self.cfg.data.shards, cache)
        if data.is_remote(info.root):
            return "warn", (f"dataset.json read from {info.root}; shard files are remote and were not "
                            f"checked here (run preflight where the shards are mounted to check them)")
        from tokenmill.shards import reader as mds

        root = Path(data.local_path(info.root))
        notes = []
        for split in ("train", "val"):
            files = mds.read_index(root / split)
            problems = mds.check_files(files)
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                return "fail", f"{split}: {problems[0]}{more}; rerun `tokenmill shards`"
            expected = info.splits[split]
            samples = sum(f.samples for f in files)
            if samples != expected.get("sequences"):
                return "fail", (f"{split}: index.json lists {samples:,} samples, dataset.json says "
                                f"{expected.get('sequences'):,}; rerun `tokenmill shards`")
            if not files:
                return "fail", f"{split}: no shard files; rerun `tokenmill shards` with more data"
            problem = self._decode_samples(files, split)
            if problem:
                return "fail", problem
            notes.append(f"{split} {samples:,} sequences in {len(files)} shard(s)")
        return "pass", f"{'; '.join(notes)}; seq_len {info.seq_len}, {info.dtype}; decoded samples look right"

    def _decode_samples(self, files, split: str) -> Optional[str]:
        """Decode the first samples of the first and the last shard."""
        import numpy as np

        from tokenmill.shards import reader as mds

        info = self.info
        seen: set[int] = set()
        for f in {id(f): f for f in (files[0], files[-1])}.values():
            for i, row in enumerate(mds.decode(f, mds.shard_bytes(f))):
                if i >= SAMPLES_DECODED:
                    break
                tokens = np.asarray(row.get(info.column))
                where = f"{split} {f.path.name} sample {i}"
                if tokens.shape != (info.seq_len,):
                    return f"{where}: {tokens.shape} tokens, dataset.json says seq_len {info.seq_len}"
                if tokens.size and int(tokens.max()) >= info.vocab_size:
                    return f"{where}: token id {int(tokens.max())} >= vocab_size {info.vocab_size}"
                if "seq_id" in row:
                    if int(row["seq_id"]) in seen:
                        return f"{where}: seq_id {int(row['seq_id'])} appears twice"
                    seen.add(int(row["seq_id"]))
        return None

    # --- 3. tokenizer vs shards vs model ---------------------------------------------

    def check_tokenizer(self) -> tuple[Status, str]:
        from tokenmill.train import data

        info = self.info
        if info is None:
            return "skip", "needs readable shards"
        # The model first: a mismatch here is what breaks training.
        if self.cfg.init_from:
            if self.model_cfg is None:
                return "skip", "needs a usable base model"
        else:
            self.model_cfg = data.resolve_model(self.cfg.model, info)
        if info.eos_id >= self.model_cfg.vocab_size or info.eos_id < 0:
            return "fail", f"eos_id {info.eos_id} is outside the vocabulary (size {self.model_cfg.vocab_size})"
        limit = {"uint16": 1 << 16, "uint32": 1 << 32}.get(info.dtype)
        if limit is not None and info.vocab_size > limit:
            return "fail", f"vocab_size {info.vocab_size:,} does not fit token dtype {info.dtype}"
        path = info.tokenizer_path
        if not path.is_file():
            return "warn", (f"no tokenizer.json next to dataset.json ({path}): model and shards agree "
                            f"(vocab {info.vocab_size:,}, seq_len {info.seq_len}), but text cannot be decoded")
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        if info.tokenizer_sha256 and sha != info.tokenizer_sha256:
            return "fail", (f"{path} (sha256 {sha[:12]}) is not the tokenizer the shards were made with "
                            f"({info.tokenizer_sha256[:12]}); copy the right tokenizer.json or rebuild the shards")
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(path))
        size = tok.get_vocab_size()
        if size > info.vocab_size:
            return "fail", f"tokenizer has {size:,} tokens but the model/shards vocab_size is {info.vocab_size:,}"
        eos = tok.id_to_token(info.eos_id)
        if eos is None:
            return "fail", f"eos_id {info.eos_id} is not a token of {path}"
        special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
        if info.eos_id not in special:
            return "warn", f"EOS {eos!r} (id {info.eos_id}) is not a special token of the tokenizer"
        probe = "Pre-flight check: 42 tokens, café, naïve."
        if tok.decode(tok.encode(probe).ids) != probe:
            return "warn", "the tokenizer does not round-trip text exactly (decode(encode(x)) != x)"
        return "pass", (f"tokenizer {sha[:12]} matches; vocab {size:,} <= model {self.model_cfg.vocab_size:,}; "
                        f"EOS {eos!r} = {info.eos_id}; seq_len {self.model_cfg.seq_len}")

    # --- 4. enough data -----------------------------------------------------------------

    def check_data(self) -> tuple[Status, str]:
        info = self.info
        if info is None:
            return "skip", "needs readable shards"
        cfg, nproc = self.cfg, self.options.nproc
        train = int(info.splits["train"].get("sequences") or 0)
        val = int(info.splits["val"].get("sequences") or 0)
        if train < cfg.global_batch_size:
            return "fail", f"train has {train:,} sequences, fewer than one global batch ({cfg.global_batch_size})"
        eval_batch = cfg.micro_batch_size * nproc
        if val < eval_batch:
            return "warn", (f"val has {val:,} sequences, fewer than one eval batch ({cfg.micro_batch_size} x "
                            f"{nproc} ranks): evaluation will see no data")
        epochs = cfg.max_steps * cfg.global_batch_size / train
        detail = f"{epochs:.2f} epoch(s) over {train:,} train sequences; {val:,} val sequences"
        if epochs > 1:
            return "warn", detail + ": the run repeats data"
        return "pass", detail

    # --- 5. checkpoint location ---------------------------------------------------------

    def _params(self) -> Optional[int]:
        if self.model_cfg is None:
            return None
        from tokenmill.train.model import count_params

        return count_params(self.model_cfg)

    def check_checkpoint_dir(self) -> tuple[Status, str]:
        """Writes, fsyncs and renames a file in a temporary folder next to where the
        checkpoints go (in the nearest folder that exists), then removes that folder:
        preflight creates none of the run's folders."""
        root = self.cfg.run_path / "checkpoints"
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
            what = f"{keep} kept + 1 being written x {_gb(params * CHECKPOINT_BYTES_PER_PARAM)} ({params:,} params)"
        if free < need:
            return "fail", f"{root}: {_gb(free)} free, need {_gb(need)} for {what}"
        from tokenmill.train import checkpoint

        latest = checkpoint.latest_checkpoint(root) if root.is_dir() else None
        resume = ""
        if latest is not None and self.cfg.checkpoint.autoresume:
            resume = f"; will resume from {latest.name}"
        return "pass", f"{root} writable, {_gb(free)} free, need {_gb(need)} for {what}{resume}"

    # --- 6. dry checkpoint save + load --------------------------------------------------

    def check_dry_checkpoint(self) -> tuple[Status, str]:
        if not self.options.dry_checkpoint:
            return "skip", "--no-dry-checkpoint"
        if self.model_cfg is None:
            return "skip", "needs the model config (readable shards)"
        import torch.distributed as dist

        if dist.is_initialized():
            return "skip", "a process group is already running in this process"
        with probe_dir(self.cfg.run_path / "checkpoints") as root:
            return dry_checkpoint(self.model_cfg, root, self._params() or 0)

    # --- 7. time and cost -------------------------------------------------------------

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
        gpu = self.options.gpu or _visible_gpu_kind()
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

    def check_estimate(self) -> tuple[Status, str]:
        if self.model_cfg is None:
            return "skip", "needs the model config (readable shards)"
        try:
            from tokenmill import plan
        except ImportError:
            return "skip", "tokenmill.plan is not installed"
        from tokenmill.train.model import flops_per_token

        cfg, opts = self.cfg, self.options
        tokens = cfg.max_steps * cfg.global_batch_size * self.model_cfg.seq_len
        per_token = flops_per_token(self.model_cfg)
        gpu = opts.gpu or _visible_gpu_kind()
        assumed = "" if gpu else " (assumed: pass --gpu)"
        gpu = gpu or "h100"
        # 6 N D with N = FLOPs per token / 6: the trainer's own count, attention included.
        p = plan.plan(params=per_token / 6, tokens=tokens, gpu=gpu, mfu=opts.mfu,
                      usd_per_gpu_hour=opts.usd_per_gpu_hour, gpus=opts.nproc)
        wall_h = p["wall_days"] * 24
        young_h = p["failures"]["checkpoint_interval_hours"]
        detail = (f"{tokens:,.0f} tokens, {p['flops']:.3g} FLOPs; on {opts.nproc} x {gpu}{assumed} at MFU "
                  f"{opts.mfu:.2f}: {p['gpu_hours']:,.3g} GPU-hours, wall {_hours(wall_h)}, "
                  f"{_usd(p['cost_usd'])} at ${p['inputs']['usd_per_gpu_hour']:g}/GPU-hour; "
                  f"expected failures {p['failures']['expected_failures']:.2g}")
        every = cfg.checkpoint
        interval_h = math.inf
        if every.every_steps:
            interval_h = wall_h * every.every_steps / cfg.max_steps
        if every.every_minutes:
            interval_h = min(interval_h, every.every_minutes / 60)
        if wall_h > young_h and interval_h > 2 * young_h:
            shown = "never" if math.isinf(interval_h) else f"every {_hours(interval_h)}"
            return "warn", detail + (f"; checkpoints {shown}, but the interval that minimizes lost work "
                                     f"is {_hours(young_h)} (set checkpoint.every_minutes)")
        return "pass", detail

    # --- 8. GPUs and NCCL -------------------------------------------------------------

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


@contextlib.contextmanager
def probe_dir(target: Path):
    """A new temporary folder in the nearest existing folder on the way to ``target``
    (the same filesystem ``target`` will be on), removed afterwards with all it holds.
    Nothing else is created or removed. OSError when that folder cannot be written."""
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
    path = Path(tempfile.mkdtemp(prefix=".tokenmill-preflight-", dir=existing))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def dry_checkpoint(model_cfg, root: Path, params: int) -> tuple[Status, str]:
    """Save a sharded checkpoint with the trainer's code, load it into fresh
    objects, and compare every tensor. One process, gloo, CPU."""
    import dataclasses

    import torch
    import torch.distributed as dist

    from tokenmill.train import checkpoint
    from tokenmill.train.fsdp import build_model
    from tokenmill.train.loop import build_optimizer
    from tokenmill.train.config import OptimConfig

    reduced = params > DRY_RUN_MAX_PARAMS
    if reduced:
        width = max(model_cfg.n_heads * 8, 64 // model_cfg.n_heads * model_cfg.n_heads)
        model_cfg = dataclasses.replace(model_cfg, n_layers=1, d_model=width, d_head=None, d_ff=None,
                                        vocab_size=min(model_cfg.vocab_size, 4096))
    store_dir = Path(tempfile.mkdtemp(prefix="tokenmill-preflight-"))
    dist.init_process_group("gloo", store=dist.FileStore(str(store_dir / "store"), 1), rank=0, world_size=1)
    try:
        device = torch.device("cpu")

        def fresh():
            model = build_model(model_cfg, device)
            model.init_weights(0)
            return model, build_optimizer(model, OptimConfig(), fused=False)

        model, optim = fresh()
        tokens = torch.randint(0, model_cfg.vocab_size, (2, model_cfg.seq_len))
        from tokenmill.train.model import lm_loss

        lm_loss(model(tokens), tokens).backward()
        optim.step()  # so the optimizer has state to save
        started = time.time()
        path = checkpoint.save(root / "checkpoints", 1, model, optim, {"step": 1, "preflight": True}, keep_last=1)
        seconds = time.time() - started
        written = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        model2, optim2 = fresh()
        state = checkpoint.load(path, model2, optim2)
        if state.get("step") != 1:
            return "fail", f"trainer state read back as {state!r}"
        a, b = _full_state(model, optim), _full_state(model2, optim2)
        diff = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
        if diff or len(a) != len(b):
            return "fail", f"loaded checkpoint differs from the saved one in {diff[:3] or 'its keys'}"
    finally:
        dist.destroy_process_group()
        shutil.rmtree(store_dir, ignore_errors=True)
    rate = written / max(seconds, 1e-6)
    model_note = " (one-layer model of the same kind)" if reduced else ""
    detail = f"saved and loaded back bit-exact{model_note}: {written / 1e6:.1f} MB in {seconds:.2f} s"
    if params:
        full = params * CHECKPOINT_BYTES_PER_PARAM
        detail += f"; a full checkpoint ({_gb(full)}) at this rate takes ~{_hours(full / rate / 3600)}"
    return "pass", detail


def _full_state(model, optim) -> dict:
    """Model and optimizer tensors by name, gathered to full tensors."""
    from torch.distributed.checkpoint.state_dict import get_state_dict
    from torch.distributed.tensor import DTensor

    model_sd, optim_sd = get_state_dict(model, optim)
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)
        elif hasattr(value, "shape"):
            flat[prefix] = value.full_tensor() if isinstance(value, DTensor) else value

    walk("model", model_sd)
    walk("optim", optim_sd)
    return flat


def _visible_gpu_kind() -> Optional[str]:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        name = torch.cuda.get_device_name(0)
    except Exception:
        return None
    from tokenmill.gpus import gpu_for_device

    return gpu_for_device(name)


def _gb(n: float) -> str:
    return f"{n / 1e9:,.2f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def _usd(x: float) -> str:
    return f"${x:,.0f}" if x >= 100 else f"${x:.3g}"


def _hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:.1f} s"
    if h < 1:
        return f"{h * 60:.1f} min"
    if h < 48:
        return f"{h:.1f} h"
    return f"{h / 24:.1f} days"


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
