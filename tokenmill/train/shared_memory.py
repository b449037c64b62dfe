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
"""

from __future__ import annotations

import atexit


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
