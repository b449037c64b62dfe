"""Which document of a duplicate cluster is kept: a configurable, total order.

The keep key is a struct whose smallest value is the best document: numeric
columns sorted descending are negated, and the id always breaks the last
tie, so the choice never depends on partitioning or row order. Picking the
minimum struct per cluster is an ordinary aggregation (no window, no skewed
sort of a huge cluster).
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from tokenmill.config.dedup import DedupConfig


def key_values(cfg: DedupConfig) -> list[Column]:
    """The keep key's numeric fields k0, k1, ... (before the id), smallest best."""
    fields = []
    for i, (column, desc) in enumerate(cfg.keep_rules):
        value = F.coalesce(F.col(column).cast("double"), F.lit(0.0))
        fields.append((-value if desc else value).alias(f"k{i}"))
    return fields


def keep_key(cfg: DedupConfig) -> Column:
    """Struct column ordering documents best first (needs the keep columns and id)."""
    return F.struct(*key_values(cfg), F.col("id").alias("kid"))


def best_per_group(df: DataFrame, group: str, key: str = "keep_key", out: str = "keeper") -> DataFrame:
    """(group, keep_key struct ending in kid) -> (group, keeper id): the best member of each group."""
    return df.groupBy(group).agg(F.min(key).getField("kid").alias(out))


def sortable(value: float) -> tuple[bool, float]:
    """A key field as Spark orders doubles: NaN above every number, -0.0 equal to 0.0."""
    return (True, 0.0) if math.isnan(value) else (False, value)
