"""Write MDS shards: one ``streaming.MDSWriter`` per writer partition.

Rows arrive clustered by (split, part) and in key order within. Each
(split, part) gets its own writer into ``<root>/<split>/<part:05d>/``; the
driver then merges the partition indexes into ``<root>/<split>/index.json``
in part order. Remote outputs go through streaming's own uploader
(``out=(local, remote)``).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow as pa

WRITTEN_SCHEMA = ("split string, part int, sequences long, shards int, bytes long, sources array<string>, "
                  "codes binary, ids binary")


def columns(dtype: str, seq_len: int) -> dict[str, str]:
    """MDS columns: fixed-shape tokens (no per-sample header) and the global id."""
    return {"tokens": f"ndarray:{dtype}:{seq_len}", "seq_id": "int64"}


def part_dir(root: str, split: str, part: int) -> str:
    return f"{root.rstrip('/')}/{split}/{part:05d}"


def make_writer(local_root: str, remote_root: str | None, dtype: str, seq_len: int,
                compression: str | None, size_limit: int):
    """A mapInArrow function writing each (split, part) run with its own MDSWriter.

    Yields one row per (split, part): counts, bytes, and for the shuffle-quality
    figures the source of every sequence in written order (codes into that
    row's ``sources`` list) and its seq_id.
    """

    def write(batches):
        from streaming import MDSWriter

        state = {"key": None, "writer": None, "names": {}, "codes": [], "ids": [], "n": 0}

        def close():
            if state["writer"] is None:
                return None
            state["writer"].finish()
            split, part = state["key"]
            local = part_dir(local_root, split, part)
            index = json.loads(open(os.path.join(local, "index.json")).read())
            shards = index["shards"]
            nbytes = sum((s.get("zip_data") or s["raw_data"])["bytes"] for s in shards)
            codes = np.array(state["codes"], dtype="<i4")
            ids = np.array(state["ids"], dtype="<i8")
            return pa.RecordBatch.from_pylist(
                [{"split": split, "part": part, "sequences": state["n"], "shards": len(shards),
                  "bytes": nbytes, "sources": list(state["names"]), "codes": codes.tobytes(),
                  "ids": ids.tobytes()}],
                schema=pa.schema([("split", pa.string()), ("part", pa.int32()), ("sequences", pa.int64()),
                                  ("shards", pa.int32()), ("bytes", pa.int64()),
                                  ("sources", pa.list_(pa.string())), ("codes", pa.binary()),
                                  ("ids", pa.binary())]),
            )

        def open_writer(split, part):
            local = part_dir(local_root, split, part)
            # A retried task starts its partition over.
            shutil.rmtree(local, ignore_errors=True)
            out = local if remote_root is None else (local, part_dir(remote_root, split, part))
            state.update(key=(split, part), names={}, codes=[], ids=[], n=0, writer=MDSWriter(
                out=out, columns=columns(dtype, seq_len), compression=compression,
                size_limit=size_limit, keep_local=True, exist_ok=True))

        for batch in batches:
            splits = batch.column("split").to_pylist()
            parts = batch.column("part").to_numpy()
            ids = batch.column("seq_id").to_numpy()
            tok_col = batch.column("tokens")
            flat = tok_col.values.to_numpy(zero_copy_only=False).astype(dtype)
            offsets = tok_col.offsets.to_numpy()
            sources = batch.column("source").to_pylist()
            for i in range(len(ids)):
                key = (splits[i], int(parts[i]))
                if key != state["key"]:
                    done = close()
                    if done is not None:
                        yield done
                    open_writer(*key)
                lo, hi = offsets[i], offsets[i + 1]
                if hi - lo != seq_len:
                    raise ValueError(f"sequence {ids[i]} has {hi - lo} tokens, expected {seq_len}")
                state["writer"].write({"tokens": flat[lo:hi], "seq_id": int(ids[i])})
                state["ids"].append(int(ids[i]))
                state["n"] += 1
                names = state["names"]
                state["codes"].append(names.setdefault(sources[i], len(names)))
        done = close()
        if done is not None:
            yield done

    return write


def merge_split(local_root: str, remote_root: str | None, split: str, parts: list[int]) -> None:
    """Merge the partition indexes of one split, in part order, into split/index.json."""
    from streaming.base.util import merge_index

    split_local = f"{local_root.rstrip('/')}/{split}"
    os.makedirs(split_local, exist_ok=True)
    index = os.path.join(split_local, "index.json")
    if os.path.exists(index):  # merge_index refuses an existing root index
        os.remove(index)
    urls = [os.path.join(part_dir(local_root, split, p), "index.json") for p in sorted(parts)]
    if not urls:
        with open(index, "w") as f:
            json.dump({"version": 2, "shards": []}, f)
        if remote_root is not None:
            upload(local_root, remote_root, f"{split}/index.json")
        return
    if remote_root is None:
        merge_index(urls, split_local, keep_local=True)
    else:
        remote_urls = [(u, os.path.join(part_dir(remote_root, split, p), "index.json"))
                       for u, p in zip(urls, sorted(parts))]
        merge_index(remote_urls, (split_local, f"{remote_root.rstrip('/')}/{split}"), keep_local=True)


def upload(local_root: str, remote_root: str, relative: str) -> None:
    """Upload one file under local_root to the same place under remote_root."""
    from streaming.base.storage.upload import CloudUploader

    uploader = CloudUploader.get((local_root, remote_root), keep_local=True, exist_ok=True)
    uploader.upload_file(relative)
