"""Per-stage counts and lineage in ``OUT/manifest.json``.

Every stage records rows in, rows out and rows dropped by reason; the record
refuses to exist unless ``rows_out + sum(dropped) == rows_in``, so no document
is ever lost without a reason. It also records what the stage read (table
versions or file signatures), its config hash and wall time, which the
pipeline runner uses to skip stages that are already up to date.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenmill.errors import UserError

MANIFEST_NAME = "manifest.json"


class AccountingError(AssertionError):
    """kept + dropped != in: a stage lost or invented rows."""


@dataclass
class StageRecord:
    stage: str
    rows_in: int
    rows_out: int
    dropped: dict[str, int] = field(default_factory=dict)
    # What the stage read: table location -> version, or path -> file signature.
    inputs: dict[str, Any] = field(default_factory=dict)
    # What the stage wrote: table location -> version (or a directory -> hash).
    outputs: dict[str, Any] = field(default_factory=dict)
    config_hash: str = ""
    wall_s: float = 0.0
    finished_at: str = ""
    # Stage-specific figures (PII by type, bands x rows, token totals, ...).
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.dropped = {k: int(v) for k, v in sorted(self.dropped.items()) if int(v)}
        self.check()

    def check(self) -> None:
        dropped = sum(self.dropped.values())
        if self.rows_out + dropped != self.rows_in:
            raise AccountingError(
                f"stage {self.stage}: rows_out {self.rows_out} + dropped {dropped} "
                f"!= rows_in {self.rows_in} (dropped by reason: {self.dropped})"
            )

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())


class Manifest:
    """The run's manifest. Stages are kept in the order they first ran."""

    def __init__(self, path: str | Path, stages: dict[str, StageRecord] | None = None,
                 meta: dict[str, Any] | None = None):
        self.path = Path(path)
        self.stages: dict[str, StageRecord] = stages or {}
        self.meta: dict[str, Any] = meta or {}

    @classmethod
    def load(cls, out_dir: str | Path) -> "Manifest":
        path = Path(out_dir) / MANIFEST_NAME
        if not path.exists():
            return cls(path)
        fix = "move it away (or delete it) and rerun the stages"
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); {fix}") from None
        try:
            stages = {name: StageRecord(**rec) for name, rec in data.get("stages", {}).items()}
            meta = dict(data.get("meta", {}))
        except (AttributeError, TypeError, ValueError, AccountingError) as exc:
            raise UserError(f"{path} is not a tokenmill manifest ({exc}); {fix}") from None
        return cls(path, stages, meta)

    def record(self, rec: StageRecord) -> None:
        rec.check()
        rec.finished_at = rec.finished_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.stages[rec.stage] = rec
        self.save()

    def forget(self, stage: str) -> None:
        if self.stages.pop(stage, None) is not None:
            self.save()

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "stages": {name: dataclasses.asdict(rec) for name, rec in self.stages.items()},
        }

    def save(self) -> None:
        """Write atomically: a crash mid-write never leaves a torn manifest."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".manifest-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=False, default=str)
            f.write("\n")
        os.replace(tmp, self.path)
