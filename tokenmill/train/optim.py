"""The optimizer and its learning-rate schedule.

AdamW over the trainable parameters (all of them, or a LoRA run's adapters),
with no weight decay on 1-D weights; the rate warms up linearly and then
follows a cosine down to ``min_lr_ratio`` of its peak at ``max_steps``.
"""

from __future__ import annotations

import math
from functools import partial

import torch

from tokenmill.train.config import OptimConfig


def lr_factor(step: int, warmup: int, max_steps: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to min_ratio at max_steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig, fused: bool) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on norm weights and biases (1-D)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.dim() >= 2]
    no_decay = [p for p in trainable if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused or None)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``lr_factor`` of the optimizer's rate at every step."""
    factor = partial(lr_factor, warmup=cfg.warmup_steps, max_steps=max_steps, min_ratio=cfg.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
