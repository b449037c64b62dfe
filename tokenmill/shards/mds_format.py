"""Write MosaicML streaming's MDS format (index version 2) without importing streaming.

``import streaming`` brings torch and transformers: about 3 s of CPU in every
Spark Python worker that writes shards, and on the driver that merges their
indexes. The part of the format we write is small, so it lives here; the
tests compare every byte with ``streaming.MDSWriter`` and ``merge_index``.

Only fixed-size columns: ``ndarray:<dtype>:<shape>`` and numeric scalars
(``int64``, ...). Without a variable-size column a sample carries no size
header: it is its columns' bytes, in column-name order. A shard file
``shard.NNNNN.mds`` is

    uint32 n                 samples in the shard
    uint32 offsets[n + 1]    where each sample starts in the file, then the end
    config                   the writer's settings as JSON (sorted keys)
    samples

and with a compression ``shard.NNNNN.mds.<family>`` holds it compressed. A
shard takes samples while 8 bytes + config + (sample + 4 bytes) per sample
stay within size_limit, the rule MDSWriter applies.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

# The value dtypes MDS names in its encodings (streaming's NDArray and scalar encodings).
DTYPES = ("uint8", "int8", "uint16", "int16", "float16", "uint32", "int32", "float32",
          "uint64", "int64", "float64")
# Compression family -> (default level, allowed levels), as streaming reads "family[:level]".
LEVELS = {"zstd": (3, range(1, 23)), "gz": (9, range(0, 10)), "br": (11, range(0, 12)), "snappy": (None, None)}
INDEX = "index.json"


class MdsFormatError(ValueError):
    """Columns, compression, size limit or rows this writer cannot write."""


@dataclass(frozen=True)
class Column:
    name: str
    encoding: str  # as given, e.g. "ndarray:uint16:2048"; index.json records it verbatim
    dtype: np.dtype  # little-endian
    shape: tuple[int, ...]  # () for a scalar

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def parse_column(name: str, encoding: str) -> Column:
    """One fixed-size column: a numeric scalar, or ``ndarray:<dtype>:<d1,d2,...>``."""
    parts = encoding.split(":")
    if len(parts) == 1 and parts[0] in DTYPES:
        return Column(name, encoding, np.dtype(parts[0]).newbyteorder("<"), ())
    if len(parts) == 3 and parts[0] == "ndarray" and parts[1] in DTYPES:
        try:
            shape = tuple(int(d) for d in parts[2].split(","))
        except ValueError:
            shape = ()
        if shape and min(shape) >= 1:
            return Column(name, encoding, np.dtype(parts[1]).newbyteorder("<"), shape)
    raise MdsFormatError(f"column {name!r}: encoding {encoding!r} is not fixed-size; use "
                         f"'ndarray:<dtype>:<shape>' or a scalar, with a dtype of {', '.join(DTYPES)}")


def parse_compression(compression: str) -> tuple[str, int | None]:
    """``"zstd:7"`` -> ("zstd", 7); ``"br"`` -> ("br", 11), each family's default level."""
    family, _, level = compression.partition(":")
    if family not in LEVELS:
        raise MdsFormatError(f"unknown compression {compression!r}; use one of {', '.join(LEVELS)} or none")
    default, allowed = LEVELS[family]
    if not level:
        return family, default
    if allowed is None or not level.isdigit() or int(level) not in allowed:
        levels = "none" if allowed is None else f"{allowed.start}-{allowed.stop - 1}"
        raise MdsFormatError(f"compression {compression!r}: {family} levels are {levels}")
    return family, int(level)


def compressor(compression: str) -> Callable[[bytes], bytes]:
    """The function that compresses a shard, producing the bytes streaming's codecs produce."""
    family, level = parse_compression(compression)
    if family == "zstd":
        import zstandard

        # streaming's zstd.compress runs zstd's multi-threaded mode (one worker per core). Its
        # output differs from the single-threaded mode's once a shard passes a few MB, but
        # not with the number of workers: threads=-1 gives the same bytes.
        return zstandard.ZstdCompressor(level=level, threads=-1).compress
    if family == "gz":
        import gzip

        # The header's mtime is the current time, as in streaming's gzip.compress(data, level):
        # gz shards differ between runs in those 4 bytes.
        return lambda data: gzip.compress(data, level)
    if family == "br":
        import brotli

        return lambda data: brotli.compress(data, quality=level)
    import snappy

    return snappy.compress


class MdsWriter:
    """One MDS folder: shard files as they fill, ``index.json`` at ``finish()``.

    ``on_file(basename)`` is called after each shard file is written (to upload it).
    """

    def __init__(self, local: str, columns: dict[str, str], compression: str | None = None,
                 size_limit: int = 1 << 26, on_file: Callable[[str], None] | None = None):
        if isinstance(size_limit, bool) or not isinstance(size_limit, int) or not 0 < size_limit < 1 << 32:
            raise MdsFormatError(f"size_limit must be an int in [1, 2**32) (sample offsets are uint32), "
                                 f"got {size_limit!r}")
        if not columns:
            raise MdsFormatError("no columns to write")
        self.local = local
        self.columns = [parse_column(name, columns[name]) for name in sorted(columns)]
        self.compression = compression or None
        self._compress = compressor(compression) if compression else None
        self._on_file = on_file
        self.config = {"version": 2, "format": "mds", "compression": self.compression, "hashes": [],
                       "size_limit": size_limit, "column_names": [c.name for c in self.columns],
                       "column_encodings": [c.encoding for c in self.columns],
                       "column_sizes": [c.size for c in self.columns]}
        self._config_bytes = json.dumps(self.config, sort_keys=True).encode("utf-8")
        # A row of this dtype is one encoded sample (packed fields, no padding).
        self._row = np.dtype([(c.name, c.dtype, c.shape) for c in self.columns])
        self.per_shard = (size_limit - 8 - len(self._config_bytes)) // (self._row.itemsize + 4)
        if self.per_shard < 1:
            raise MdsFormatError(f"size_limit {size_limit} is too small for one sample of {self._row.itemsize} "
                                 f"bytes plus a {8 + len(self._config_bytes)}-byte shard header; raise it")
        self.shards: list[dict] = []
        self._pending = np.empty(0, self._row)  # samples not yet in a shard file
        os.makedirs(local, exist_ok=True)

    def write(self, rows: dict[str, np.ndarray]) -> None:
        """Append samples: each column an array of shape (n, *column shape)."""
        block = self._encode(rows)
        if len(self._pending) + len(block) < self.per_shard:
            self._pending = np.concatenate([self._pending, block])
            return
        data = np.concatenate([self._pending, block])
        full = len(data) // self.per_shard * self.per_shard
        for lo in range(0, full, self.per_shard):
            self._write_shard(data[lo:lo + self.per_shard])
        self._pending = data[full:].copy()

    def finish(self) -> dict:
        """Write the last shard and ``index.json``; returns the index."""
        if len(self._pending):
            self._write_shard(self._pending)
            self._pending = self._pending[:0]
        index = {"version": 2, "shards": self.shards}
        with open(os.path.join(self.local, INDEX), "w") as f:
            json.dump(index, f, sort_keys=True)
        return index

    def _encode(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        names = [c.name for c in self.columns]
        if sorted(rows) != names:
            raise MdsFormatError(f"rows have columns {sorted(rows)}, the writer expects {names}")
        lengths = {len(rows[name]) for name in names}
        if len(lengths) != 1:
            raise MdsFormatError(f"columns have different numbers of rows: {sorted(lengths)}")
        block = np.empty(lengths.pop(), self._row)
        for c in self.columns:
            block[c.name] = _checked(c, np.asarray(rows[c.name]))
        return block

    def _write_shard(self, samples: np.ndarray) -> None:
        n = len(samples)
        start = 4 + 4 * (n + 1) + len(self._config_bytes)
        offsets = start + self._row.itemsize * np.arange(n + 1, dtype=np.int64)
        raw = b"".join([np.uint32(n).tobytes(), offsets.astype("<u4").tobytes(), self._config_bytes,
                        samples.tobytes()])
        raw_name = f"shard.{len(self.shards):05d}.mds"
        raw_info = {"basename": raw_name, "bytes": len(raw), "hashes": {}}
        zip_info, data, name = None, raw, raw_name
        if self._compress is not None:
            data, name = self._compress(raw), f"{raw_name}.{self.compression.partition(':')[0]}"
            zip_info = {"basename": name, "bytes": len(data), "hashes": {}}
        with open(os.path.join(self.local, name), "wb") as f:
            f.write(data)
        self.shards.append({"samples": n, "raw_data": raw_info, "zip_data": zip_info, **self.config})
        if self._on_file is not None:
            self._on_file(name)


def _checked(column: Column, values: np.ndarray) -> np.ndarray:
    """values, of shape (n, *column.shape), that the column's dtype holds exactly."""
    if values.shape[1:] != column.shape:
        raise MdsFormatError(f"column {column.name!r}: rows of shape {values.shape[1:]}, "
                             f"its encoding {column.encoding!r} needs {column.shape}")
    if values.dtype == column.dtype or values.size == 0:
        return values
    if column.dtype.kind in "iu":
        if values.dtype.kind not in "iu":
            raise MdsFormatError(f"column {column.name!r}: {values.dtype} values for an integer column")
        info = np.iinfo(column.dtype)
        lo, hi = values.min(), values.max()
        if lo < info.min or hi > info.max:
            raise MdsFormatError(f"column {column.name!r}: values from {lo} to {hi} do not fit {column.dtype.name}")
    return values


def merge_indexes(part_dirs: list[str], out_dir: str) -> dict:
    """``out_dir/index.json`` listing the shards of each part folder, in the order given.

    What ``streaming.base.util.merge_index`` writes: each shard as its part's
    index.json has it (keys in that file's order), basenames prefixed with the
    part folder's name, and the JSON written without sorting keys.
    """
    names = [os.path.basename(d.rstrip("/")) for d in part_dirs]
    if len(set(names)) != len(names):
        raise MdsFormatError(f"part folders must have distinct names, got {names}")
    shards = []
    for part, name in zip(part_dirs, names):
        path = os.path.join(part, INDEX)
        if not os.path.isfile(path):
            raise MdsFormatError(f"{path} is missing: that part's writer did not finish")
        with open(path) as f:
            index = json.load(f)
        for shard in index["shards"]:
            for key in ("raw_data", "zip_data"):
                if shard.get(key):
                    shard[key]["basename"] = f"{name}/{shard[key]['basename']}"
            shards.append(shard)
    merged = {"version": 2, "shards": shards}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, INDEX), "w") as f:
        json.dump(merged, f)
    return merged
