"""Exact duplicates: a hash of the normalized text, computed by Spark SQL."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from tokenmill.config.dedup import DedupConfig


def normalized(text: Column, cfg: DedupConfig) -> Column:
    """The text as the exact-duplicate test sees it (case, punctuation, whitespace per config)."""
    out = F.coalesce(text, F.lit(""))
    if cfg.exact_lowercase:
        out = F.lower(out)
    if cfg.exact_punctuation:
        out = F.regexp_replace(out, r"[\p{P}\p{S}]+", "")
    if cfg.exact_whitespace:
        out = F.trim(F.regexp_replace(out, r"(?U)\s+", " "))
    return out


def exact_key(text: Column, cfg: DedupConfig) -> Column:
    """128-bit hex key of the normalized text (SHA-256, truncated)."""
    return F.substring(F.sha2(normalized(text, cfg), 256), 1, 32)
