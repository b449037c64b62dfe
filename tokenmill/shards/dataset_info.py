"""``dataset.json``: what a shards folder holds, the contract between the shards stage and the trainer.

Two formats:

- ``tokenmill-mds-v1`` (pretraining, ``tokenmill/shards/job.py``): samples
  hold ``tokens`` and ``seq_id``; per split: sequences, tokens, shards.
- ``tokenmill-mds-sft-v1`` (fine-tuning, ``tokenmill/chat/shards.py``):
  samples also hold ``loss_mask`` and ``doc_ids`` (``columns``), with the
  pad id and the chat template's hash; per split also examples, target and
  pad tokens, bytes.

The file is JSON with two-space indents, keys in the order below, and a
trailing newline; it is written last, so readers take its presence as the
sign of complete shards. No torch here: the data side imports it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from tokenmill.errors import UserError

FILE = "dataset.json"
TEXT_FORMAT = "tokenmill-mds-v1"
SFT_FORMAT = "tokenmill-mds-sft-v1"
FORMATS = (TEXT_FORMAT, SFT_FORMAT)
KINDS = {TEXT_FORMAT: "pretrain", SFT_FORMAT: "sft"}
SPLITS = ("train", "val")
REQUIRED = ("seq_len", "vocab_size", "eos_id", "splits")

# The keys each format writes, in the file's order.
KEYS = {
    TEXT_FORMAT: ("format", "column", "dtype", "seq_len", "vocab_size", "eos_id", "bos_id", "tokenizer_sha256",
                  "splits"),
    SFT_FORMAT: ("format", "columns", "column", "dtype", "seq_len", "vocab_size", "eos_id", "bos_id", "pad_id",
                 "tokenizer_sha256", "template_sha256", "splits"),
}


@dataclass(frozen=True)
class DatasetInfo:
    """The content of ``dataset.json``. The SFT-only fields stay None for pretraining shards."""

    format: str  # TEXT_FORMAT or SFT_FORMAT
    dtype: str  # token dtype: uint16, or uint32 past 65536 ids
    seq_len: int
    vocab_size: int
    eos_id: int
    bos_id: Optional[int]
    tokenizer_sha256: str  # of tokenizer.json next to dataset.json
    splits: dict[str, dict[str, int]]  # split -> counts (sequences, tokens, shards, ...)
    column: str = "tokens"  # the token column of each sample
    columns: Optional[dict[str, str]] = None  # SFT: MDS column -> encoding
    pad_id: Optional[int] = None  # SFT
    template_sha256: Optional[str] = None  # SFT; None for instruction rows (no chat template)

    @property
    def kind(self) -> Literal["pretrain", "sft"]:
        return KINDS[self.format]  # type: ignore[return-value]

    def to_json(self) -> dict:
        """The file's object, keys in the format's order."""
        return {key: getattr(self, key) for key in KEYS[self.format]}

    def write(self, folder: str | Path) -> Path:
        """folder/dataset.json (the folder is made when missing); returns its path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / FILE
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def from_json(cls, data: object, where: str | Path) -> "DatasetInfo":
        """Checked: a known format, the fields the trainer needs, both splits. ``where`` names the file."""
        fmt = data.get("format") if isinstance(data, dict) else None
        if fmt not in FORMATS:
            raise UserError(f"{where}: format must be {TEXT_FORMAT!r} or {SFT_FORMAT!r}, got {fmt!r}; "
                            f"rebuild the shards")
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise UserError(f"{where}: missing field {missing[0]!r}; rebuild the shards")
        for split in SPLITS:
            if split not in data["splits"]:
                raise UserError(f"{where}: no {split!r} split; rebuild the shards with a val fraction > 0")
        return cls(
            format=fmt,
            dtype=data.get("dtype", "uint16"),
            seq_len=int(data["seq_len"]),
            vocab_size=int(data["vocab_size"]),
            eos_id=int(data["eos_id"]),
            bos_id=data.get("bos_id"),
            tokenizer_sha256=data.get("tokenizer_sha256", ""),
            splits=data["splits"],
            column=data.get("column", "tokens"),
            columns=data.get("columns"),
            pad_id=data.get("pad_id"),
            template_sha256=data.get("template_sha256"),
        )

    @classmethod
    def read(cls, folder: str | Path) -> "DatasetInfo":
        """folder/dataset.json, checked; a UserError that says how to fix a missing or invalid file."""
        folder = Path(folder)
        path = folder / FILE
        if not path.is_file():
            raise UserError(f"no {FILE} in {folder}: pass --shards DIR pointing at the output of `tokenmill shards`")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} is not valid JSON: {exc}") from None
        return cls.from_json(data, path)


def format_of(folder: str | Path) -> Optional[str]:
    """The ``format`` folder/dataset.json names; None when there is no such readable JSON object."""
    try:
        data = json.loads((Path(folder) / FILE).read_text())
    except (OSError, ValueError):
        return None
    return data.get("format") if isinstance(data, dict) else None
