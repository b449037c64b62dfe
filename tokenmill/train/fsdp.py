"""Apply parallelism to the single-device GPT: AC, compile, then FSDP2.

Order matters: activation checkpointing and compile wrap each block first,
then ``fully_shard`` shards each block (one all-gather / reduce-scatter unit
per block) and finally the root (embedding, final norm, head).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from tokenmill.train.model import GPT, ModelConfig


@dataclass(frozen=True)
class Dist:
    """Where this process sits: rank, world size and its torch device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(kind: str = "auto") -> str:
    """"cuda" or "cpu": what the config asks for; "auto" takes CUDA when visible."""
    cuda = torch.cuda.is_available()
    if kind == "cuda" and not cuda:
        from tokenmill.errors import UserError

        raise UserError("device: cuda, but no CUDA device is visible; set device: cpu or auto")
    return "cuda" if kind == "cuda" or (kind == "auto" and cuda) else "cpu"


def init_distributed(kind: str = "auto") -> Dist:
    """Join the process group set up by torchrun (or a 1-process default).

    GPU: nccl, one device per local rank. CPU: gloo. ``kind`` is the
    config's ``device`` (auto, cpu, cuda).
    """
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("LOCAL_WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = str(free_port())
    cuda = pick_device(kind) == "cuda"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
