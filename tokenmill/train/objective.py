"""Training objectives: what one optimizer step's loss is, chosen once per run.

An objective does the forward and backward passes of one step's
micro-batches (returning the loss every rank agrees on) and gives the
(loss sum, weight) of a validation micro-batch; the trainer never asks
which one it has. A preference loss would be a third with the same two
methods.

Pretraining shards train on language modelling: the mean next-token loss of
every position. SFT shards train on their target tokens; the loss of one
optimizer step is

    sum of cross-entropy over every target token of the global batch
    ----------------------------------------------------------------
             number of target tokens in the global batch

where the global batch is every micro-batch of gradient accumulation on
every rank. Each micro-batch's loss sum is divided by that one global count
(all-reduced before the first backward pass), not by its own count: a mean
of per-micro-batch means would weigh a target in a short micro-batch more
than one in a long micro-batch. FSDP2 averages gradients over ranks, so each
rank scales its loss by the world size; the reduced gradient is then the
gradient of the loss above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import torch
import torch.distributed as dist

from tokenmill.train.data import Batch
from tokenmill.train.distributed import all_mean
from tokenmill.train.model import ModelConfig, document_layout, documents_from_ids, lm_loss, masked_lm_loss

# (tokens (B, T), doc_ids (B, T) or None) -> logits (B, T, V)
Forward = Callable[[torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


class Objective(Protocol):
    def backward(self, micro_batches: list[Batch]) -> float:
        """Forward and backward of one optimizer step; the step's loss, the same on every rank."""

    def eval_sums(self, batch: Batch) -> torch.Tensor:
        """(loss sum, weight) of one validation micro-batch, float64 on the device."""


def make_forward(model, model_cfg: ModelConfig, eos_id: int) -> Forward:
    """Logits (B, T, V). SFT rows (doc_ids given) attend within their examples; pretraining
    rows with attention.doc_mask within documents ending at the shards' EOS."""

    def forward(tokens: torch.Tensor, doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        if doc_ids is not None:
            docs = documents_from_ids(doc_ids)
        else:
            docs = document_layout(tokens, eos_id) if model_cfg.attention.doc_mask else None
        return model(tokens, docs)

    return forward


@dataclass(frozen=True)
class ModelObjective:
    """What every objective works on: the sharded model, its forward pass and this rank's device."""

    model: torch.nn.Module
    forward: Forward
    device: torch.device


class LanguageModelling(ModelObjective):
    """Pretraining: the mean of the micro-batches' mean next-token losses, averaged over ranks."""

    def backward(self, micro_batches: list[Batch]) -> float:
        """Gradients are reduced across ranks only on the last micro-batch."""
        total = torch.zeros((), device=self.device)
        for i, batch in enumerate(micro_batches):
            self.model.set_requires_gradient_sync(i == len(micro_batches) - 1)
            tokens = batch.tokens.to(self.device, non_blocking=True)  # (B, T)
            loss = lm_loss(self.forward(tokens), tokens) / len(micro_batches)
            loss.backward()
            total += loss.detach()
        return all_mean(total)

    def eval_sums(self, batch: Batch) -> torch.Tensor:
        """Per sequence: (mean loss x sequences, sequences)."""
        tokens = batch.tokens.to(self.device)
        loss = lm_loss(self.forward(tokens), tokens)
        return torch.tensor([loss.item() * len(tokens), len(tokens)], dtype=torch.float64, device=self.device)


class MaskedSft(ModelObjective):
    """Fine-tuning: cross-entropy of the target tokens over the global batch (module docstring)."""

    def backward(self, micro_batches: list[Batch]) -> float:
        return masked_backward(self.model, self.forward, micro_batches, self.device)

    def eval_sums(self, batch: Batch) -> torch.Tensor:
        return eval_sums(self.forward, batch, self.device)


def objective_for(kind: str, model, forward: Forward, device: torch.device) -> Objective:
    """The objective of the shards' kind ("pretrain" or "sft")."""
    return MaskedSft(model, forward, device) if kind == "sft" else LanguageModelling(model, forward, device)


def local_targets(batches: list[Batch]) -> int:
    """Target tokens in these micro-batches (token t is one where loss_mask[t], t >= 1)."""
    return sum(int(b.loss_mask[:, 1:].sum()) for b in batches)


def global_sum(value: float, device: torch.device) -> float:
    """Sum of a number over all ranks."""
    total = torch.tensor(float(value), dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(total)
    return float(total.item())


def masked_backward(model, forward: Forward, batches: list[Batch], device: torch.device) -> float:
    """Backward of one optimizer step's masked loss (see the module docstring); returns the loss.

    Gradients are reduced across ranks only on the last micro-batch.
    """
    world = dist.get_world_size() if dist.is_initialized() else 1
    count = max(1.0, global_sum(local_targets(batches), device))  # a batch without targets adds nothing
    scale = world / count
    total = torch.zeros((), dtype=torch.float64, device=device)
    for i, batch in enumerate(batches):
        model.set_requires_gradient_sync(i == len(batches) - 1)
        tokens = batch.tokens.to(device, non_blocking=True)  # (B, T)
        logits = forward(tokens, batch.doc_ids.to(device, non_blocking=True))  # (B, T, V)
        loss_sum, _ = masked_lm_loss(logits, tokens, batch.loss_mask.to(device, non_blocking=True))
        (loss_sum * scale).backward()
        total += loss_sum.detach().double()
    return global_sum(total.item(), device) / count


def eval_sums(forward: Forward, batch: Batch, device: torch.device) -> torch.Tensor:
    """(loss sum, target count) of one val micro-batch, float64 on device."""
    tokens = batch.tokens.to(device)
    loss_sum, count = masked_lm_loss(forward(tokens, batch.doc_ids.to(device)), tokens, batch.loss_mask.to(device))
    return torch.stack([loss_sum.double(), count.double()])
