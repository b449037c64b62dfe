"""Memory per rank of a training run, estimated before any GPU is rented.

FSDP2 shards the fp32 master weights, their gradients and AdamW's two moments
over the ranks (16 bytes a parameter in all, divided by the world size). On
top, each rank holds the unsharded compute copy of about two blocks at a time
(the one running and the one being prefetched), the activations of its
micro-batch and the logits.

Activations follow Korthikanti et al. 2022 ("Reducing activation recomputation
in large transformer models", section 4.1) with attention that never stores
the T x T scores (flash attention / FlexAttention): about 34 x T x D bytes per
sequence per layer in 16-bit, more for a wider MLP. With activation
checkpointing only each block's input is kept, plus one block's activations
during its recomputation. Estimates, not measurements: allow ~10-20% for the
allocator and communication buffers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per rank."""

    weights: float  # sharded fp32 master weights
    grads: float  # sharded fp32 gradients
    optimizer: float  # sharded AdamW moments (2 x fp32)
    gathered: float  # unsharded compute copies of ~2 blocks (all-gather + prefetch)
    activations: float
    logits: float  # the micro-batch's logits and their fp32 copy for the loss

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.gathered + self.activations + self.logits

    def describe(self) -> str:
        parts = [("weights", self.weights), ("grads", self.grads), ("AdamW", self.optimizer),
                 ("gathered", self.gathered), ("activations", self.activations), ("logits", self.logits)]
        return f"{gb(self.total)} per rank (" + ", ".join(f"{n} {gb(v)}" for n, v in parts if v) + ")"


def estimate(model_cfg, params: int, trainable: int, world_size: int, micro_batch: int,
             bf16: bool, activation_checkpointing: bool) -> MemoryEstimate:
    """Memory per rank for ``params`` parameters of which ``trainable`` are trained.

    Frozen parameters (LoRA's base) still need their weights, in the compute
    dtype only, but no gradients and no optimizer state.
    """
    frozen = params - trainable
    compute_bytes = 2 if bf16 else 4
    shard = 1 / world_size
    weights = (trainable * 4 + frozen * compute_bytes) * shard
    block_params = max(0, params - _embedding_params(model_cfg)) / model_cfg.n_layers
    gathered = 0.0 if world_size == 1 else 2 * block_params * compute_bytes
    T, D, L = model_cfg.seq_len, model_cfg.d_model, model_cfg.n_layers
    # 34 x T x D in 16-bit per layer for a 4 x D MLP; the MLP's share (~19 of 34) grows with its width.
    per_layer = T * D * (15 + 19 * model_cfg.d_hidden / (4 * D)) * 2 * (compute_bytes / 2)
    if activation_checkpointing:
        activations = micro_batch * (L * T * D * compute_bytes + per_layer)
    else:
        activations = micro_batch * L * per_layer
    logits = micro_batch * T * model_cfg.vocab_size * (compute_bytes + 4)
    return MemoryEstimate(weights, trainable * 4 * shard, trainable * 8 * shard, gathered, activations, logits)


def trainable_params(model_cfg) -> int:
    """Parameters that get gradients: all of them, or with LoRA only the adapters (meta device)."""
    import torch

    from tokenmill.train.model import GPT, is_adapter

    with torch.device("meta"):
        model = GPT(model_cfg)
    lora = model_cfg.lora is not None
    return sum(p.numel() for n, p in model.named_parameters() if not lora or is_adapter(n))


def _embedding_params(cfg) -> int:
    return cfg.vocab_size * cfg.d_model * (1 if cfg.tie_embeddings else 2)


def gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.0f} MB"


def peak_memory_bytes(device) -> int:
    """Peak memory of this rank: CUDA's allocator peak, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated(device)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
