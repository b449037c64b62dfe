"""Process-group set-up: which rank this process is, on which device, and small collectives.

torchrun (or TorchDistributor) sets the rank variables; a lone process gets
a one-rank group, so the same trainer code runs on one CPU and on many GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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


def all_mean(value: torch.Tensor) -> float:
    """Mean of a scalar over ranks (gloo has no AVG reduction: sum, divide)."""
    value = value.detach().float().clone()
    dist.all_reduce(value)
    return value.item() / dist.get_world_size()


def broadcast_from_rank0(value):
    """Rank 0's value on every rank."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
