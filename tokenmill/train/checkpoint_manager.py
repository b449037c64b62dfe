"""Where a run starts, and what its checkpoints hold.

The start policy, in one place: a run's latest complete checkpoint wins
(a restart after a crash continues the run instead of starting again);
without one, the weights come from the base model (``init_from``), else
from a seeded random initialisation. A LoRA run's checkpoints hold only the
adapters, so the base is read again on resume and must be the one the run
started from (same sha256); a full run's checkpoint holds every weight. A
checkpoint damaged after it was complete is skipped for the one before it.

    start      fresh               resume
    scratch    init_weights        checkpoint
    base       base weights        checkpoint
    LoRA       base + adapters     base + checkpoint's adapters
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tokenmill.errors import UserError
from tokenmill.train import base_model, checkpoint
from tokenmill.train.base_model import BaseModel
from tokenmill.train.config import TrainConfig
from tokenmill.train.distributed import Dist, broadcast_from_rank0
from tokenmill.train.model import ModelConfig
from tokenmill.train.runlog import RunLog
from tokenmill.typed_config import to_dict


def base_fingerprint(base: Optional[BaseModel], lora: bool, d: Dist) -> Optional[str]:
    """LoRA checkpoints name their base by content: rank 0 hashes it once, every rank gets it."""
    if not lora:
        return None
    return broadcast_from_rank0(base_model.weights_sha256(base.ckpt) if d.is_main else None)


@dataclass(frozen=True)
class Resumed:
    """What a checkpoint gives back besides the weights and optimizer state."""

    step: int
    tokens: int


class CheckpointManager:
    """Starts the model and optimizer (fresh or from a checkpoint) and saves them at step boundaries."""

    def __init__(self, cfg: TrainConfig, model_cfg: ModelConfig, base: Optional[BaseModel],
                 base_sha256: Optional[str], root: Path, d: Dist, log: RunLog):
        self.cfg = cfg
        self.model_cfg = model_cfg
        self.base = base
        self.base_sha256 = base_sha256
        self.lora = model_cfg.lora is not None
        self.root = root
        self.d = d
        self.log = log

    def start(self, model, optimizer, scheduler, loader) -> Optional[Resumed]:
        """Fill the model (and, on resume, the optimizer, schedule and loader); None: a fresh start."""
        latest, skipped = checkpoint.resumable_checkpoint(self.root) if self.cfg.checkpoint.autoresume else (None, [])
        for path, problem in skipped:  # damaged after it was complete: resume from the one before
            self.log.event("checkpoint_skipped", checkpoint=str(path), reason=problem)
        if latest is not None:
            self._check_same_run(latest, checkpoint.read_trainer_state(latest))
        if self.base and (latest is None or self.lora):
            self._load_base(model, "init_from" if latest is None else "base_reloaded")
        if latest is None:
            if not self.base:
                model.init_weights(self.cfg.seed)
            elif self.lora:
                model.init_adapters(self.cfg.seed)
            return None
        state = checkpoint.load(latest, model, optimizer, trainable_only=self.lora)
        scheduler.load_state_dict(state["scheduler"])
        loader.load_state_dict(state["loader"])
        self.log.event(
            "resume", step=state["step"], checkpoint=str(latest), saved_world_size=state["world_size"],
            world_size=self.d.world_size,
        )
        return Resumed(state["step"], state["tokens"])

    def _check_same_run(self, latest: Path, saved: dict) -> None:
        if saved["model_config"] != to_dict(self.model_cfg):
            raise UserError(
                f"checkpoint {latest} was trained with a different model config; "
                f"use a new run_dir or restore the model section"
            )
        want = (saved.get("base") or {}).get("sha256")
        if self.lora and want and want != self.base_sha256:
            raise UserError(
                f"the base model at {self.base.root} (sha256 {self.base_sha256[:12]}) is not the one the "
                f"adapters in {latest} were trained on ({want[:12]}): pass that base model, or use a new run_dir"
            )

    def _load_base(self, model, event: str) -> None:
        from tokenmill.train.hf_io import load_into

        started = time.monotonic()
        load_into(model, self.base.ckpt, self.base.family)
        self.log.event(event, path=str(self.base.root), family=self.base.family,
                       seconds=round(time.monotonic() - started, 3))

    def save(self, step: int, tokens: int, model, optimizer, scheduler, loader, eos_id: int,
             bos_id: Optional[int]) -> Path:
        """A checkpoint of this step: the weights (a LoRA run's adapters), optimizer, schedule,
        loader position and what a resume or an export needs to know about the run."""
        started = time.monotonic()
        state = {
            "step": step,
            "tokens": tokens,
            "scheduler": scheduler.state_dict(),
            "loader": loader.state_dict(),
            "model_config": to_dict(self.model_cfg),
            "config": to_dict(self.cfg),
            "world_size": self.d.world_size,
            "eos_id": eos_id,
            "bos_id": bos_id,
            # Export writes the base model's config and tokenizer back (from <run_dir>/base).
            "method": self.cfg.method,
            "base": {"init_from": str(self.base.root), "family": self.base.family, "dtype": self.base.dtype,
                     "sha256": self.base_sha256} if self.base else None,
        }
        path = checkpoint.save(self.root, step, model, optimizer, state,
                               self.cfg.checkpoint.keep_last, trainable_only=self.lora)
        self.log.event("checkpoint", step=step, path=str(path), seconds=round(time.monotonic() - started, 3))
        return path

