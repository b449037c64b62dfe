"""Write MDS shards: one ``MdsWriter`` (``shards.mds_format``) per writer partition.

Rows arrive clustered by (split, part) and in key order within. Each
(split, part) gets its own writer into ``<root>/<split>/<part:05d>/``; the
driver then merges the partition indexes into ``<root>/<split>/index.json``
in part order. Neither imports ``streaming`` (it brings torch and
transformers into every Python worker), except to upload: remote outputs go
through streaming's own uploaders, each shard as it is written.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from tokenmill.shards.mds_format import INDEX, MdsWriter, merge_indexes

WRITTEN_SCHEMA = ("split string, part int, sequences long, shards int, bytes long, sources array<string>, "
                  "codes binary, ids binary")
_WRITTEN = pa.schema([("split", pa.string()), ("part", pa.int32()), ("sequences", pa.int64()),
                      ("shards", pa.int32()), ("bytes", pa.int64()), ("sources", pa.list_(pa.string())),
                      ("codes", pa.binary()), ("ids", pa.binary())])


def columns(dtype: str, seq_len: int) -> dict[str, str]:
    """MDS columns: fixed-shape tokens (no per-sample header) and the global id."""
    return {"tokens": f"ndarray:{dtype}:{seq_len}", "seq_id": "int64"}


def part_dir(root: str, split: str, part: int) -> str:
    return f"{root.rstrip('/')}/{split}/{part:05d}"


def shard_bytes(writer: MdsWriter) -> int:
    """Bytes of the files a writer wrote (compressed where it compresses)."""
    return sum((s["zip_data"] or s["raw_data"])["bytes"] for s in writer.shards)


def runs(batch: pa.RecordBatch) -> list[tuple[tuple[str, int], int, int]]:
    """((split, part), lo, hi) for each run of rows with the same key, in batch order."""
    splits = batch.column("split").to_numpy(zero_copy_only=False)
    parts = batch.column("part").to_numpy(zero_copy_only=False)
    starts = np.flatnonzero((splits[1:] != splits[:-1]) | (parts[1:] != parts[:-1])) + 1
    bounds = [0, *starts.tolist(), len(parts)]
    return [((splits[lo], int(parts[lo])), lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def fixed_rows(column: pa.Array, width: int, ids: np.ndarray) -> np.ndarray:
    """A list column whose lists all hold ``width`` values, as an (n, width) array."""
    offsets = column.offsets.to_numpy()
    lengths = np.diff(offsets)
    wrong = np.flatnonzero(lengths != width)
    if len(wrong):
        i = wrong[0]
        raise ValueError(f"sequence {ids[i]} has {lengths[i]} values in {column.type}, expected {width}")
    flat = column.values.to_numpy(zero_copy_only=False)[offsets[0]:offsets[-1]]
    return flat.reshape(len(lengths), width)


class Uploads:
    """Uploads files of one local folder to a remote one in the background, as they are written.

    Imports streaming (its CloudUploader knows every object store), so only
    remote outputs pay for torch's import.
    """

    def __init__(self, local: str, remote: str):
        self._uploader = cloud_uploader(local, remote)
        self._pool = ThreadPoolExecutor(max_workers=4)
        self._pending = []

    def submit(self, name: str) -> None:
        self._pending.append(self._pool.submit(self._uploader.upload_file, name))

    def finish(self, last: str) -> None:
        """Wait for every upload (raising the first failure), then upload ``last``: readers look for it."""
        try:
            for future in self._pending:
                future.result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._uploader.upload_file(last)


def open_part(local_root: str, remote_root: str | None, split: str, part: int, columns: dict[str, str],
              compression: str | None, size_limit: int) -> tuple[MdsWriter, Uploads | None]:
    """A writer for one (split, part) folder, emptied first (a retried task starts it over)."""
    local = part_dir(local_root, split, part)
    shutil.rmtree(local, ignore_errors=True)
    os.makedirs(local)
    uploads = None if remote_root is None else Uploads(local, part_dir(remote_root, split, part))
    writer = MdsWriter(local, columns, compression, size_limit,
                       on_file=None if uploads is None else uploads.submit)
    return writer, uploads


def close_part(writer: MdsWriter, uploads: Uploads | None) -> None:
    writer.finish()
    if uploads is not None:
        uploads.finish(INDEX)


def make_writer(local_root: str, remote_root: str | None, dtype: str, seq_len: int,
                compression: str | None, size_limit: int):
    """A mapInArrow function writing each (split, part) run with its own MdsWriter.

    Yields one row per (split, part): counts, bytes, and for the shuffle-quality
    figures the source of every sequence in written order (codes into that
    row's ``sources`` list) and its seq_id.
    """
    cols = columns(dtype, seq_len)

    def write(batches):
        part: dict = {}  # the open (split, part): key, writer, uploads, names, codes, ids

        def close():
            close_part(part["writer"], part["uploads"])
            (split, number), ids = part["key"], np.concatenate(part["ids"])
            return pa.RecordBatch.from_pylist(
                [{"split": split, "part": number, "sequences": len(ids), "shards": len(part["writer"].shards),
                  "bytes": shard_bytes(part["writer"]), "sources": list(part["names"]),
                  "codes": np.concatenate(part["codes"]).astype("<i4").tobytes(),
                  "ids": ids.astype("<i8").tobytes()}], schema=_WRITTEN)

        for batch in batches:
            ids = batch.column("seq_id").to_numpy()
            tokens = fixed_rows(batch.column("tokens"), seq_len, ids)
            sources = batch.column("source").to_pylist()
            for key, lo, hi in runs(batch):
                if key != part.get("key"):
                    if part:
                        yield close()
                    writer, uploads = open_part(local_root, remote_root, *key, cols, compression, size_limit)
                    part = {"key": key, "writer": writer, "uploads": uploads, "names": {}, "codes": [], "ids": []}
                part["writer"].write({"tokens": tokens[lo:hi], "seq_id": ids[lo:hi]})
                part["ids"].append(ids[lo:hi])
                names = part["names"]
                part["codes"].append(np.array([names.setdefault(s, len(names)) for s in sources[lo:hi]], "<i4"))
        if part:
            yield close()

    return write


def merge_split(local_root: str, remote_root: str | None, split: str, parts: list[int]) -> None:
    """Merge the partition indexes of one split, in part order, into split/index.json."""
    merge_indexes([part_dir(local_root, split, p) for p in sorted(parts)], f"{local_root.rstrip('/')}/{split}")
    if remote_root is not None:
        upload(local_root, remote_root, f"{split}/{INDEX}")


def cloud_uploader(local_root: str, remote_root: str):
    """streaming's uploader from local_root to remote_root (imports streaming, hence torch)."""
    from streaming.base.storage.upload import CloudUploader

    return CloudUploader.get((local_root, remote_root), keep_local=True, exist_ok=True)


def upload(local_root: str, remote_root: str, relative: str) -> None:
    """Upload one file under local_root to the same place under remote_root."""
    cloud_uploader(local_root, remote_root).upload_file(relative)
