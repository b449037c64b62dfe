"""Config of the shards stage: global shuffle, train/val split, MDS writing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tokenmill.typed_config import require


@dataclass(frozen=True)
class ShardsConfig:
    # Seeds the global shuffle and the train/val split.
    seed: int = 0
    # Share of sequences that go to val (at least one when there are two or more).
    val_fraction: float = 0.01
    # Where the shards go: None -> OUT/shards; a local or /Volumes path; or an
    # object-store URI streaming can upload to (s3://, gs://, dbfs:/, ...),
    # in which case OUT/shards keeps the local copy.
    output: str | None = None
    # gz shards hold their write time in the gzip header (as streaming writes them),
    # so only they differ between two runs over the same rows.
    compression: Literal["zstd", "zstd:1", "zstd:3", "zstd:7", "zstd:19", "gz", "br", "snappy", "none"] = "zstd"
    # MDS shard size limit in bytes (before compression); aim for 50-100 MB shards.
    size_limit: int = 1 << 26
    # Writer partitions (one MDS writer each). 0: one per ~128 MB of tokens,
    # at least Spark's default parallelism. Set it to make shard files
    # identical across clusters of different sizes.
    partitions: int = 0
    # Windows of this many consecutive output sequences measure shuffle quality.
    quality_window: int = 1000

    def __post_init__(self):
        require(0.0 <= self.val_fraction < 1.0, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        require(self.size_limit >= 1 << 16, "size_limit", f"must be at least 65536 bytes, got {self.size_limit}")
        require(self.partitions >= 0, "partitions", f"must be 0 (auto) or more, got {self.partitions}")
        require(self.quality_window >= 2, "quality_window", f"must be at least 2, got {self.quality_window}")
