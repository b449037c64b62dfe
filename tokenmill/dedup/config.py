"""Config of the dedup stage: exact and MinHash-LSH near-duplicate removal."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DedupConfig:
    enabled: bool = True
