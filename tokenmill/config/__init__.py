"""The pipeline's run config: one section per stage, each in its own module here.

``RunConfig`` composes them (``etl``, ``dedup``, ``tokenize``, ``shards``,
and ``chat`` for a fine-tuning variant). The stages and the runner import
what they read from this package, so the schema of a run config is one
folder, and loading one needs no stage module.
The typed loader lives in ``tokenmill.typed_config``; its names are
re-exported here for convenience.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenmill.config.chat import ChatConfig
from tokenmill.config.dedup import DedupConfig
from tokenmill.config.etl import EtlConfig, InputSpec
from tokenmill.config.shards import ShardsConfig
from tokenmill.config.tokenize import TokenizeConfig
from tokenmill.typed_config import (  # noqa: F401 - re-exported
    config_hash,
    from_dict,
    load_yaml,
    parse_overrides,
    replace,
    require,
    to_dict,
)


@dataclass(frozen=True)
class RunConfig:
    """Everything ``tokenmill run`` needs. YAML sets every knob; flags override."""

    inputs: tuple[InputSpec, ...] = ()
    output: str | None = None
    # On Databricks: put stage tables in this ``catalog.schema`` instead of OUT/tables.
    catalog_schema: str | None = None
    # After a stage succeeds, delete files of its tables' earlier versions that are
    # older than this (Delta's VACUUM; a week, as Delta's own default). None: never.
    vacuum_retention_hours: float | None = 168.0
    etl: EtlConfig = field(default_factory=EtlConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    # Present: a chat / instruction fine-tuning run (the chat variant of the
    # stages, ``pipeline.VARIANTS``). etl reads whole rows and validates them as
    # conversations, tokenize renders, masks and bin-packs them, shards writes
    # tokenmill-mds-sft-v1.
    chat: ChatConfig | None = None

    def __post_init__(self):
        if self.vacuum_retention_hours is not None:
            require(self.vacuum_retention_hours >= 0, "vacuum_retention_hours",
                    f"must be >= 0 (or null to never vacuum), got {self.vacuum_retention_hours}")
        if self.catalog_schema is not None:
            parts = self.catalog_schema.split(".")
            require(len(parts) == 2 and all(parts), "catalog_schema",
                    f"must look like 'catalog.schema', got {self.catalog_schema!r}")


def load_run_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a run config YAML (or defaults) and apply dotted overrides."""
    data = load_yaml(path) if path else {}
    if "inputs" in data and isinstance(data["inputs"], list):
        data["inputs"] = [{"path": x} if isinstance(x, str) else x for x in data["inputs"]]
    cfg = from_dict(RunConfig, data)
    return replace(cfg, overrides or {})
