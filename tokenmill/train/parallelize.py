"""Apply parallelism to the single-device GPT: AC, compile, then FSDP2.

Order matters: activation checkpointing and compile wrap each block first,
then ``fully_shard`` shards each block (one all-gather / reduce-scatter unit
per block) and finally the root (embedding, final norm, head). Joining the
process group is ``distributed.py``'s job; this module only shapes the model.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from tokenmill.train.model import GPT, ModelConfig


def build_model(
    cfg: ModelConfig,
    device: torch.device,
    bf16: bool = False,
    activation_checkpointing: bool = False,
    compile: bool = False,
) -> GPT:
    """Build on the meta device, shard, then allocate only this rank's shards.

    No rank ever holds the full model in memory. The weights are left
    uninitialised: the caller fills them (``init_weights``, a Hugging Face
    checkpoint, or a training checkpoint).
    """
    with torch.device("meta"):
        model = GPT(cfg)
    if cfg.lora is not None:
        model.freeze_base()
        if bf16:  # frozen base weights need no fp32 master copy: keep them in bf16 (adapters stay fp32)
            for p in model.parameters():
                if not p.requires_grad:
                    p.data = p.data.to(torch.bfloat16)
    for name, block in list(model.blocks.items()):
        if activation_checkpointing:
            # Recompute the block's activations in backward: memory O(1 block).
            block = checkpoint_wrapper(block)
        if compile:
            block.compile()
        model.blocks[name] = block
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    # bf16 compute with fp32 gradient reduction and fp32 master weights.
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    for block in model.blocks.values():
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    model.to_empty(device=device)
    model.reset_buffers()
    return model
