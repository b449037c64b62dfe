"""Release streaming's shared memory when a run is done, not at process exit.

``streaming`` keeps every shared-memory handle it opens (and its file
descriptor) until the process exits, through ``atexit``. Each new
``StreamingDataset`` also walks the handles of every dataset still registered
on the machine and keeps those open too. A process that builds datasets
again and again (a notebook, a test session) therefore holds more
descriptors each time, and a training process started next to it opens
them all: at the usual limit of 1024 descriptors both fail with "Too many
open files".

``StreamingMemory`` records the handles streaming makes while it is open;
``close()`` releases them as streaming's exit handler would (unlinking the
segments this process created) and drops that handler.

``one_registration_at_a_time`` serializes a new dataset's registration on
the machine: streaming takes the lowest free shared-memory prefix, found and
then created without a lock, so two runs that open a dataset at the same
moment pick the same prefix and the second fails with FileExistsError.

``sweep_stale_segments`` frees what killed runs left in /dev/shm at a run's
start: only segments no live process holds. Processes this one cannot see
(another PID namespace sharing /dev/shm) look absent, as they do to
streaming's own cleaner, which frees every segment it finds.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

LOCK_FILE = "tokenmill-streaming-registration.lock"
LOCK_WAIT_S = 300.0  # then go on without it: a stuck holder must not stop every run on the machine


@contextlib.contextmanager
def one_registration_at_a_time() -> Iterator[None]:
    """Hold the machine's registration lock around building a StreamingDataset.

    The local leader (the rank that creates the segments) takes the lock;
    the other ranks wait at a barrier until it holds it, so every rank of the
    run looks for the free prefix while no other run can take one. Released
    once this rank's dataset is built (the leader has created the prefix's
    segments by then).
    """
    import fcntl

    import torch.distributed as dist

    lock = None
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        lock = open(Path(tempfile.gettempdir()) / LOCK_FILE, "a")
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    print(f"[train] another run held {lock.name} for {LOCK_WAIT_S:.0f} s; "
                          "opening the dataset without it", file=sys.stderr, flush=True)
                    break
                time.sleep(0.02)
    try:
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        yield
    finally:
        if lock is not None:
            lock.close()  # closing the file releases the lock


class StreamingMemory:
    """The shared memory streaming opens from construction until ``close()``."""

    def __init__(self):
        from streaming.base.shared import memory

        self._class = memory.SharedMemory
        self._original_init = self._class.__init__
        self._handles: list = []
        handles, original_init = self._handles, self._original_init

        def recording_init(shm, *args, **kwargs):
            original_init(shm, *args, **kwargs)
            handles.append(shm)

        self._class.__init__ = recording_init
        self._open = True

    def close(self) -> None:
        """Release every recorded handle now; safe to call twice."""
        if not self._open:
            return
        self._open = False
        self._class.__init__ = self._original_init
        for shm in self._handles:
            atexit.unregister(shm.cleanup)
            shm.cleanup()
        self._handles.clear()

    def __enter__(self) -> "StreamingMemory":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


SHM_DIR = Path("/dev/shm")


def live_pids() -> list[int]:
    """Every process this one can see."""
    return [int(proc.name) for proc in Path("/proc").glob("[0-9]*")]


def segments_held_by(pids) -> set[str]:
    """/dev/shm names that these processes have mapped or open.

    A process that is gone, or another user's (unless we are root), is
    skipped: that user's segments are not ours to unlink anyway.
    """
    held: set[str] = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        for path in [line.split(maxsplit=5)[-1] for line in maps.splitlines() if "/dev/shm/" in line] + links:
            if path.startswith("/dev/shm/"):
                held.add(path[len("/dev/shm/"):].removesuffix(" (deleted)"))
    return held


def stale_segments() -> list[str]:
    """streaming's segments (``NNNNNN_<name>``) of this user that no live process holds: a killed run's."""
    from streaming.base.constant import SHM_TO_CLEAN

    try:
        entries = list(SHM_DIR.iterdir())
    except OSError:
        return []
    # Listed before the processes are read: a segment made after the listing is not a candidate,
    # and one made before it is held (mapped, or open by its maker) from the moment it exists.
    candidates = []
    for path in entries:
        prefix, _, suffix = path.name.partition("_")
        if len(prefix) == 6 and prefix.isdigit() and suffix in SHM_TO_CLEAN:
            try:
                if path.stat().st_uid == os.getuid():
                    candidates.append(path.name)
            except OSError:
                continue
    held = segments_held_by(live_pids())
    return sorted(name for name in candidates if name not in held)


def sweep_stale_segments() -> list[str]:
    """Unlink the segments killed runs left behind, sparing every live run's; returns their names.

    streaming's own ``clean_stale_shared_memory`` unlinks every segment it finds,
    so a run that starts next to another (two notebooks on one node) would take
    the live run's shared memory away.
    """
    swept = []
    for name in stale_segments():
        with contextlib.suppress(FileNotFoundError):
            (SHM_DIR / name).unlink()
            swept.append(name)
    return swept
