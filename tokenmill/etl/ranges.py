"""Byte ranges of one big plain file, cut at line ends, for reading it with many tasks.

The driver finds each cut (the first line start after a multiple of the
range size) and counts the newlines before it, so each range knows the
number of its first line: line numbers, and the ids derived from them, are
those of a whole-file read.
"""

from __future__ import annotations

import io

MIN_SPLIT_BYTES = 8 << 20  # smaller files are not worth a second task


def task_count(total_bytes: int, parallelism: int, max_bytes: int) -> int:
    """Tasks to read ``total_bytes`` in: a multiple of the parallelism, each at most ``max_bytes``.

    A multiple, so that every core reads to the end: 5 equal tasks on 4 cores
    take as long as 8, and the stages after ingest keep its partitions.
    """
    cores = max(1, parallelism)
    return cores * max(1, -(-total_bytes // (max_bytes * cores)))


def split_bytes(total_bytes: int, parallelism: int, max_bytes: int) -> int:
    """Range size: an equal share of the input for each of ``task_count`` tasks."""
    share = -(-total_bytes // task_count(total_bytes, parallelism, max_bytes))
    return max(MIN_SPLIT_BYTES, share)


def line_ranges(path: str, target: int) -> list[tuple[int, int, int]]:
    """(start, end, first line number) of ranges of about ``target`` bytes covering the file."""
    out = []
    with open(path, "rb") as f:
        size = f.seek(0, io.SEEK_END)
        start, line = 0, 1
        while start < size:
            end = next_line_start(f, start + target, size)
            out.append((start, end, line))
            line += count_newlines(f, start, end)
            start = end
    return out


def next_line_start(f, pos: int, size: int) -> int:
    """The first offset >= pos where a line starts (or the file's end)."""
    if pos >= size:
        return size
    f.seek(pos - 1)  # a newline just before pos makes pos itself a line start
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            return size
        found = chunk.find(b"\n")
        if found >= 0:
            return f.tell() - len(chunk) + found + 1


def count_newlines(f, start: int, end: int) -> int:
    f.seek(start)
    count, left = 0, end - start
    while left > 0:
        chunk = f.read(min(left, 16 << 20))
        if not chunk:
            break
        count += chunk.count(b"\n")
        left -= len(chunk)
    return count


class _ByteRange(io.RawIOBase):
    """At most ``length`` bytes of an open file, from where it stands."""

    def __init__(self, raw, length: int):
        self.raw, self.left = raw, length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        if n <= 0:
            return 0
        got = self.raw.readinto(memoryview(buffer)[:n])
        self.left -= got
        return got

    def close(self) -> None:
        self.raw.close()
        super().close()


def open_range(path: str, start: int, length: int) -> io.BufferedIOBase:
    """A buffered reader of bytes [start, start + length) of the file."""
    raw = open(path, "rb", buffering=0)
    raw.seek(start)
    return io.BufferedReader(_ByteRange(raw, length), 1 << 20)
