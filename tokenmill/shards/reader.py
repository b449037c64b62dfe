"""Read MDS shards in storage order, without ``StreamingDataset`` (the writer is ``shards.mds``).

The data card and the pre-flight checks look at shards as they lie on disk:
the storage order is what a global shuffle produced, and a check must not
decompress files into the output folder or allocate shared memory, as
``StreamingDataset`` does. An MDS shard is ``n`` (uint32), ``n + 1`` sample
offsets (uint32), then the samples; a sample is the byte sizes of its
variable-size columns (uint32 each), then each column's bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np


class ShardError(ValueError):
    """A split's index.json and its shard files disagree (missing, truncated, corrupt)."""


@dataclass(frozen=True)
class ShardFile:
    path: Path  # the file on disk (raw .mds or compressed .mds.zstd)
    compression: str | None
    size: int  # bytes index.json says the file has
    samples: int
    column_names: tuple[str, ...]
    column_encodings: tuple[str, ...]
    column_sizes: tuple[int | None, ...]


def read_index(split_dir: str | Path) -> list[ShardFile]:
    """The shards listed in ``split_dir/index.json``; prefers raw files when both exist."""
    split_dir = Path(split_dir)
    index_path = split_dir / "index.json"
    if not index_path.is_file():
        raise ShardError(f"no index.json in {split_dir}: the shards stage did not finish writing this split")
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as exc:
        raise ShardError(f"{index_path} is not valid JSON ({exc}); rerun the shards stage") from None
    files = []
    for shard in index.get("shards", []):
        if shard.get("format") != "mds":
            raise ShardError(f"{index_path}: shard format {shard.get('format')!r} is not 'mds'")
        raw, zipped = shard["raw_data"], shard.get("zip_data")
        if (split_dir / raw["basename"]).is_file() or not zipped:
            path, compression, size = split_dir / raw["basename"], None, raw["bytes"]
        else:
            path, compression, size = split_dir / zipped["basename"], shard.get("compression"), zipped["bytes"]
        files.append(ShardFile(
            path=path,
            compression=compression,
            size=int(size),
            samples=int(shard["samples"]),
            column_names=tuple(shard["column_names"]),
            column_encodings=tuple(shard["column_encodings"]),
            column_sizes=tuple(shard["column_sizes"]),
        ))
    return files


def check_files(files: list[ShardFile]) -> list[str]:
    """Problems with the files an index lists: missing, or not the size it says."""
    problems = []
    for f in files:
        if not f.path.is_file():
            problems.append(f"missing shard file {f.path}")
        elif f.path.stat().st_size != f.size:
            problems.append(f"{f.path} has {f.path.stat().st_size} bytes, index.json says {f.size}")
    return problems


def shard_bytes(f: ShardFile) -> bytes:
    """The shard's bytes, decompressed with streaming's own codecs (every one the writer allows)."""
    data = f.path.read_bytes()
    if f.compression is None:
        return data
    from streaming.base.compression import decompress, is_compression

    if not is_compression(f.compression):
        raise ShardError(f"{f.path}: unknown compression {f.compression!r} in index.json; rerun the shards stage")
    try:
        return decompress(f.compression, data)
    except Exception as exc:  # each codec raises its own error type on damaged data
        raise ShardError(f"{f.path}: cannot decompress as {f.compression} ({exc}); rerun the shards stage") from None


def decode(f: ShardFile, data: bytes) -> Iterator[dict]:
    """Every sample of one decompressed shard, in storage order."""
    from streaming.base.format.mds.encodings import mds_decode

    (n,) = np.frombuffer(data[:4], np.uint32)
    if n != f.samples:
        raise ShardError(f"{f.path}: holds {n} samples, index.json says {f.samples}")
    offsets = np.frombuffer(data[4 : 4 + 4 * (n + 1)], np.uint32)
    for i in range(n):
        sample = data[offsets[i] : offsets[i + 1]]
        sizes, pos = [], 0
        for size in f.column_sizes:
            if size:
                sizes.append(size)
            else:
                sizes.append(int(np.frombuffer(sample[pos : pos + 4], np.uint32)[0]))
                pos += 4
        row = {}
        for name, encoding, size in zip(f.column_names, f.column_encodings, sizes):
            row[name] = mds_decode(encoding, sample[pos : pos + size])
            pos += size
        yield row


def iter_split(split_dir: str | Path, limit: int | None = None) -> Iterator[dict]:
    """Samples of one split in storage order (at most ``limit``)."""
    count = 0
    for f in read_index(split_dir):
        for row in decode(f, shard_bytes(f)):
            if limit is not None and count >= limit:
                return
            yield row
            count += 1
