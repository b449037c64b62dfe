"""Sharded checkpoints with torch.distributed.checkpoint (DCP).

Layout under ``<run_dir>/checkpoints``::

    step_00000120/            complete: renamed into place after everything was written
        .metadata  __0_0.distcp ...   model + optimizer, sharded (DCP)
        trainer_state.pt      step, tokens, scheduler, dataloader, config (rank 0)
        rng_rank0.pt ...      each rank's RNG state
    step_00000160.tmp/        being written (or left by a crash): never loaded

A checkpoint is written into ``.tmp`` and renamed only when every rank has
finished, so a crash mid-write leaves no directory that looks complete.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

from tokenmill.run_dir import RunDir

STEP_DIR = re.compile(r"^step_(\d{8})$")
TRAINER_STATE = "trainer_state.pt"


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:08d}"


def is_complete(path: Path) -> bool:
    return (
        STEP_DIR.match(path.name) is not None
        and (path / ".metadata").is_file()
        and (path / TRAINER_STATE).is_file()
    )


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and is_complete(p)]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(root: Path) -> Optional[Path]:
    found = complete_checkpoints(root)
    return found[-1] if found else None


def readable_problem(path: Path) -> Optional[str]:
    """Why a complete-looking checkpoint cannot be loaded (truncated or damaged files), or None.

    Every rank reads the same files and reaches the same verdict, so all ranks
    pick the same checkpoint without talking to each other.
    """
    from torch.distributed.checkpoint import FileSystemReader

    try:
        read_trainer_state(path)
    except Exception as exc:  # torch.load raises RuntimeError, EOFError, UnpicklingError, ...
        return f"{TRAINER_STATE} cannot be read ({type(exc).__name__})"
    for rng_file in sorted(path.glob("rng_rank*.pt")):
        try:
            torch.load(rng_file, weights_only=False)
        except Exception as exc:
            return f"{rng_file.name} cannot be read ({type(exc).__name__})"
    try:
        metadata = FileSystemReader(str(path)).read_metadata()
    except Exception as exc:
        return f".metadata cannot be read ({type(exc).__name__})"
    needed: dict[str, int] = {}
    for info in (metadata.storage_data or {}).values():
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
    for name, size in sorted(needed.items()):
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size < size:
            return f"{name} is truncated ({file.stat().st_size} of {size} bytes)"
    return None


def resumable_checkpoint(root: Path) -> tuple[Optional[Path], list[tuple[Path, str]]]:
    """(newest checkpoint that can be loaded, [(newer damaged checkpoint, why)])."""
    skipped = []
    for path in reversed(complete_checkpoints(root)):
        problem = readable_problem(path)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint dir, or a run dir / checkpoints dir -> its latest checkpoint."""
    from tokenmill.errors import UserError

    if is_complete(path):
        return path
    for root in (RunDir(path).checkpoints, path):
        latest = latest_checkpoint(root)
        if latest is not None:
            return latest
    raise UserError(f"no complete checkpoint at {path}: pass a run dir or a checkpoints/step_N dir")


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(root: Path, step: int, model, optimizer, trainer_state: dict, keep_last: int,
         trainable_only: bool = False) -> Path:
    """Write checkpoint ``step`` from all ranks; returns its final path.

    ``trainable_only`` (LoRA): only parameters that train, and their optimizer
    state; the frozen base is read from the base model again on resume.
    """
    rank = dist.get_rank()
    final = step_dir(root, step)
    tmp = final.with_name(final.name + ".tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    model_sd, optim_sd = _state_dicts(model, optimizer, trainable_only)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    # RNG differs per rank: one file each (DCP would keep only rank 0's value).
    torch.save(rng_state(), tmp / f"rng_rank{rank}.pt")
    dist.barrier()
    if rank == 0:
        torch.save(trainer_state, tmp / TRAINER_STATE)
        if final.exists():  # same step saved again after a resume
            shutil.rmtree(final)
        tmp.rename(final)
        prune(root, keep_last)
    dist.barrier()
    return final


def _state_dicts(model, optimizer, trainable_only: bool) -> tuple[dict, dict]:
    """Model and optimizer state dicts; with ``trainable_only``, nothing of the frozen weights.

    torch's ignore_frozen_params misses a frozen weight shared under a second
    name (the tied head): keep only the names of parameters that train.
    """
    options = StateDictOptions(ignore_frozen_params=trainable_only)
    model_sd, optim_sd = get_state_dict(model, optimizer, options=options)
    if trainable_only:
        from tokenmill.train.hf_io import clean_name

        trainable = {clean_name(n) for n, p in model.named_parameters() if p.requires_grad}
        model_sd = {k: v for k, v in model_sd.items() if k in trainable}
    return model_sd, optim_sd


def prune(root: Path, keep_last: int) -> None:
    """Keep the newest ``keep_last`` complete checkpoints; drop stale .tmp dirs."""
    for old in complete_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for tmp in root.glob("step_*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)


def read_trainer_state(path: Path) -> dict:
    return torch.load(path / TRAINER_STATE, weights_only=False)


def load(path: Path, model, optimizer, trainable_only: bool = False) -> dict:
    """Load model + optimizer (resharded to this world size) and RNG; return trainer state."""
    options = StateDictOptions(ignore_frozen_params=trainable_only, strict=not trainable_only)
    model_sd, optim_sd = _state_dicts(model, optimizer, trainable_only)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"], options=options)
    rng_file = path / f"rng_rank{dist.get_rank()}.pt"
    if rng_file.exists():  # absent when resuming on more ranks than were saved
        set_rng_state(torch.load(rng_file, weights_only=False))
    return read_trainer_state(path)


def load_model_weights(path: Path, model: torch.nn.Module, only=None) -> None:
    """Load the model weights into a plain (unsharded) model, in one process.

    ``only(name)`` picks the weights the checkpoint holds (LoRA: the adapters).
    """
    import warnings

    weights = {k: v for k, v in model.state_dict().items() if only is None or only(k)}
    state = {"model": weights}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=str(path))
    model.load_state_dict(state["model"], strict=only is None)
