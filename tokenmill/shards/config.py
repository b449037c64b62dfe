"""Config of the shards stage: global shuffle, train/val split, MDS writing."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShardsConfig:
    seed: int = 0
