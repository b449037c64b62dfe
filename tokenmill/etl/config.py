"""Config of the etl stage: inputs, cleaning, quality filters, PII."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tokenmill.config import require


@dataclass(frozen=True)
class InputSpec:
    """One raw input: a file, a folder of files, a Delta table or a catalog table."""

    path: str
    format: Literal["auto", "jsonl", "parquet", "text", "delta", "table"] = "auto"
    source: str | None = None  # label; defaults to the path's last folder name
    text_field: str = "text"
    id_field: str | None = "id"
    preset: Literal["prose", "code"] | None = None  # None: the stage default

    def __post_init__(self):
        require(bool(self.path), "path", "must name a file, folder or table")


@dataclass(frozen=True)
class EtlConfig:
    preset: Literal["prose", "code"] = "prose"
