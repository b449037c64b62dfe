"""Process trees for the kill tests: find every process below one, freeze and kill them all."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tokenmill.train.shared_memory import live_pids, segments_held_by


def descendants(pid: int) -> list[int]:
    """All processes below pid, whatever their session or process group.

    torchrun puts its workers in new sessions and PySpark's worker daemon
    makes a process group of its own, so a group kill misses both.
    """
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running or dying, but not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_tree(pid: int, seconds: float = 30) -> list[int]:
    """SIGKILL pid and everything below it; wait until they are gone. Returns any still alive.

    The tree is frozen first (SIGSTOP, a few rounds: a stopped process cannot
    fork), so no child escapes by being re-parented while its parent dies.
    """
    victims: set[int] = set()
    for _ in range(3):
        for victim in [pid, *descendants(pid)]:
            victims.add(victim)
            _signal(victim, signal.SIGSTOP)
    for victim in victims:
        _signal(victim, signal.SIGKILL)
    deadline = time.monotonic() + seconds
    while (left := [v for v in victims if alive(v)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def shared_memory_of_others() -> set[str]:
    """/dev/shm names held by any live process other than this one."""
    return segments_held_by(pid for pid in live_pids() if pid != os.getpid())
