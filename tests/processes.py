"""Process trees for the kill tests: find every process below one, freeze and kill them all."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


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


def shared_memory_of(pids) -> set[str]:
    """Names of the /dev/shm files these processes have mapped or open.

    Another live training run on this machine has segments too, so a test
    claims only the ones its own processes hold.
    """
    names: set[str] = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
            fds = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:  # gone, or not ours to read
            continue
        for path in [line.split(maxsplit=5)[-1] for line in maps.splitlines() if "/dev/shm/" in line] + fds:
            if path.startswith("/dev/shm/"):
                names.add(path[len("/dev/shm/"):].removesuffix(" (deleted)"))
    return names


def shared_memory_of_others() -> set[str]:
    """/dev/shm names held by any live process other than this one."""
    others = [int(p.name) for p in Path("/proc").glob("[0-9]*") if int(p.name) != os.getpid()]
    return shared_memory_of(others)
