"""Probing the checkpoint filesystem before a run: a dry save and load.

``dry_checkpoint`` is a small training harness: it builds the run's model
(or a one-layer model of the same kind when the real one is large), takes
one optimizer step, saves a sharded checkpoint with ``checkpoint.save``,
loads it into fresh objects with ``checkpoint.load`` and compares every
tensor, timing the write. ``probe_dir`` gives it (and any other probe) a
temporary folder on the filesystem the checkpoints will be on.
Heavy imports (torch) happen inside the functions.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from pathlib import Path

from tokenmill import units
from tokenmill.run_dir import RunDir

# Model weights (fp32) + AdamW's two moments (fp32) per parameter.
CHECKPOINT_BYTES_PER_PARAM = 12
# Above this many parameters the dry save uses a one-layer model of the same kind.
DRY_RUN_MAX_PARAMS = 20_000_000


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


def dry_checkpoint(model_cfg, root: Path, params: int) -> tuple[str, str]:
    """Save a sharded checkpoint with the trainer's code, load it into fresh
    objects, and compare every tensor. One process, gloo, CPU.

    (status, detail) as a pre-flight item: "pass" or "fail" and one line."""
    import dataclasses

    import torch
    import torch.distributed as dist

    from tokenmill.train import checkpoint
    from tokenmill.train.parallelize import build_model
    from tokenmill.train.optim import build_optimizer
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
        path = checkpoint.save(RunDir(root).checkpoints, 1, model, optim, {"step": 1, "preflight": True}, keep_last=1)
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
        detail += f"; a full checkpoint ({units.gb(full)}) at this rate takes ~{units.hours(full / rate / 3600)}"
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
