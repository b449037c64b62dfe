"""MDS shards of packed fine-tuning windows (format ``tokenmill-mds-sft-v1``).

The windows get the shards stage's seeded global shuffle and train/val
split (``tokenmill.shards.shuffle``), one MDS writer per (split, part), and
merged per-split indexes (``tokenmill.shards.mds``). Each sample:

    tokens     ndarray:<dtype>:<seq_len>   uint16, or uint32 past 65536 ids
    loss_mask  ndarray:uint8:<seq_len>     1: a training target
    doc_ids    ndarray:uint16:<seq_len>    example number in the window, 0 on padding
    seq_id     int64                       the window's global id

``dataset.json`` holds the format, columns, ids, hashes of the tokenizer and
template, and per split the counts of windows, examples, target tokens and
pad tokens. Next to it, ``tokenizer.json`` and ``tokenizer_config.json``
(the chat template and its special tokens) go with the shards, so the
trainer renders its eval prompts exactly as the examples were rendered. Writing into a fresh folder and swapping it in is the caller's
job (as in ``tokenmill/shards/job.py``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tokenmill.chat.template import ChatTemplate
from tokenmill.shards import mds
from tokenmill.shards.dataset_info import FILE as DATASET_FILE, SFT_FORMAT, DatasetInfo
from tokenmill.shards.shuffle import SPLITS, shuffle, val_count

WRITTEN_SCHEMA = ("split string, part int, sequences long, examples long, tokens long, targets long, "
                  "shards int, bytes long")
COUNTS = ("sequences", "examples", "tokens", "targets")


@dataclass(frozen=True)
class SftShardSpec:
    """What the writer needs to know about the windows and where they go."""

    seq_len: int
    dtype: str  # token dtype: uint16 or uint32 (tokenize.tokenizer.token_dtype)
    vocab_size: int
    eos_id: int
    bos_id: int | None
    pad_id: int
    tokenizer_sha256: str
    template_sha256: str | None  # None for instruction rows (no template)
    seed: int = 0
    val_fraction: float = 0.01
    train_parts: int = 1
    val_parts: int = 1
    compression: str | None = "zstd"
    size_limit: int = 1 << 26


def columns(spec: SftShardSpec) -> dict[str, str]:
    L = spec.seq_len
    return {"tokens": f"ndarray:{spec.dtype}:{L}", "loss_mask": f"ndarray:uint8:{L}",
            "doc_ids": f"ndarray:uint16:{L}", "seq_id": "int64"}


def make_writer(spec: SftShardSpec, local_root: str, remote_root: str | None = None):
    """A mapInArrow function writing each (split, part) run of windows with its own MdsWriter."""

    def write(batches):
        import pyarrow as pa

        part: dict = {}  # the open (split, part): key, writer, uploads, counts
        done: list[dict] = []

        def close():
            mds.close_part(part["writer"], part["uploads"])
            done.append({"split": part["key"][0], "part": part["key"][1], **{k: part[k] for k in COUNTS},
                         "shards": len(part["writer"].shards), "bytes": mds.shard_bytes(part["writer"])})

        L = spec.seq_len
        for batch in batches:
            ids = batch.column("seq_id").to_numpy()
            rows = {"tokens": mds.fixed_rows(batch.column("tokens"), L, ids),
                    "loss_mask": mds.fixed_rows(batch.column("loss_mask"), L, ids),
                    "doc_ids": mds.fixed_rows(batch.column("doc_ids"), L, ids), "seq_id": ids}
            counts = [batch.column(c).to_numpy() for c in ("n_examples", "n_tokens", "n_targets")]
            for key, lo, hi in mds.runs(batch):
                if key != part.get("key"):
                    if part:
                        close()
                    writer, uploads = mds.open_part(local_root, remote_root, *key, columns(spec),
                                                    spec.compression, spec.size_limit)
                    part = {"key": key, "writer": writer, "uploads": uploads, **dict.fromkeys(COUNTS, 0)}
                part["writer"].write({name: values[lo:hi] for name, values in rows.items()})
                part["sequences"] += hi - lo
                for k, c in zip(COUNTS[1:], counts):
                    part[k] += int(c[lo:hi].sum())
        if part:
            close()
        if done:
            yield pa.RecordBatch.from_pylist(done, schema=pa.schema([
                ("split", pa.string()), ("part", pa.int32()), ("sequences", pa.int64()), ("examples", pa.int64()),
                ("tokens", pa.int64()), ("targets", pa.int64()), ("shards", pa.int32()), ("bytes", pa.int64())]))

    return write


def dataset_info(spec: SftShardSpec, written) -> DatasetInfo:
    """dataset.json from the writers' rows (split, part, counts, shards, bytes)."""
    splits = {s: dict.fromkeys((*COUNTS, "shards", "bytes"), 0) for s in SPLITS}
    for row in written:
        for k in splits[row["split"]]:
            splits[row["split"]][k] += row[k]
    out = {}
    for s, c in splits.items():
        out[s] = {"sequences": c["sequences"], "examples": c["examples"], "target_tokens": c["targets"],
                  "pad_tokens": c["sequences"] * spec.seq_len - c["tokens"], "tokens": c["sequences"] * spec.seq_len,
                  "shards": c["shards"], "bytes": c["bytes"]}
    return DatasetInfo(format=SFT_FORMAT, columns=columns(spec), column="tokens", dtype=spec.dtype,
                       seq_len=spec.seq_len, vocab_size=spec.vocab_size, eos_id=spec.eos_id, bos_id=spec.bos_id,
                       pad_id=spec.pad_id, tokenizer_sha256=spec.tokenizer_sha256,
                       template_sha256=spec.template_sha256, splits=out)


def write_metadata(root: str, tokenizer_json: str, template: ChatTemplate | None,
                   remote: str | None = None) -> None:
    """root/tokenizer.json and, for chat rows, root/tokenizer_config.json with the template."""
    os.makedirs(root, exist_ok=True)
    Path(root, "tokenizer.json").write_text(tokenizer_json)
    names = ["tokenizer.json"]
    if template is not None:
        config = {"chat_template": template.source, **dict(template.tokens)}
        Path(root, "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
        names.append("tokenizer_config.json")
    if remote is not None:
        for name in names:
            mds.upload(root, remote, name)


def write_shards(windows, spec: SftShardSpec, root: str, remote: str | None = None,
                 tokenizer_json: str | None = None, template: ChatTemplate | None = None) -> dict:
    """Packed windows (chat/pack.py PACKED_SCHEMA) -> root/{train,val}/ MDS + root/dataset.json.

    With ``tokenizer_json``, also the tokenizer and chat template (``write_metadata``).
    Returns dataset.json's content. ``root`` should be a fresh folder.
    """
    n = windows.count()
    ordered = shuffle(windows, spec.seed, spec.val_fraction, spec.train_parts,
                      spec.val_parts if val_count(n, spec.val_fraction) else 1, n)
    rows = (ordered.select("split", "part", "seq_id", "tokens", "loss_mask", "doc_ids", "n_examples", "n_tokens",
                           "n_targets").mapInArrow(make_writer(spec, root, remote), WRITTEN_SCHEMA).collect())
    written = [r.asDict() for r in rows]
    for split in SPLITS:
        mds.merge_split(root, remote, split, sorted(r["part"] for r in written if r["split"] == split))
    dataset = dataset_info(spec, written)
    if tokenizer_json is not None:
        write_metadata(root, tokenizer_json, template, remote)
    dataset.write(root)
    if remote is not None:
        mds.upload(root, remote, DATASET_FILE)  # last: readers look for it
    return dataset.to_json()
