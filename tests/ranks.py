"""Gloo ranks in child processes, for the tests that compare them with one plain process."""

from __future__ import annotations

import tempfile

import torch.distributed as dist
import torch.multiprocessing as mp


def spawn_ranks(worker, *args, world: int = 2) -> None:
    """Run ``worker(rank, world, *args)`` on ``world`` gloo ranks and wait for them.

    The ranks meet through a file, not a port chosen beforehand that another
    process may take first. Each rank waits at a barrier before it tears the
    group down: a rank that left while its peer still finished up was
    aborted by gloo ("terminate called without an active exception") in 1 of
    29 runs here.
    """
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank, args=(world, f"file://{tmp}/rendezvous", worker, args), nprocs=world, join=True)


def _rank(rank: int, world: int, init_method: str, worker, args: tuple) -> None:
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        worker(rank, world, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()
