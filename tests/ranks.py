"""Gloo ranks in child processes, for the tests that compare them with one plain process."""

from __future__ import annotations

import tempfile

import torch.distributed as dist
import torch.multiprocessing as mp


def spawn_ranks(worker, *args, world: int = 2) -> None:
    """Run ``worker(rank, world, *args)`` on ``world`` gloo ranks and wait for them.

    The ranks meet through a file, not a port chosen beforehand that another
    process may take first. No rank tears the group down before every rank
    has returned from its last collective: a rank whose peer closed the
    connections while it still finished a barrier was aborted by gloo
    ("terminate called without an active exception"), 1 run in 29 without
    the barrier, and once in a full suite with the barrier alone. So after
    the barrier each rank says so in a file store (not a gloo connection)
    and waits there for the others.
    """
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank, args=(world, tmp, worker, args), nprocs=world, join=True)


def _rank(rank: int, world: int, tmp: str, worker, args: tuple) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        worker(rank, world, *args)
        dist.barrier()
        left = dist.FileStore(f"{tmp}/left-barrier", world)
        left.set(f"rank-{rank}", "1")
        left.wait([f"rank-{r}" for r in range(world)])
    finally:
        dist.destroy_process_group()
