"""The sample audit: which sequences each step of each rank trained on (``record_sample_ids``).

One JSON line per step in RUN/samples/rank<R>.jsonl, so a resumed run can be
checked to have seen every sequence exactly as an uninterrupted one would.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenmill.train.runlog import read_jsonl


class SampleLog:
    def __init__(self, path: Path, enabled: bool):
        self.path = path
        self.enabled = enabled

    def record(self, step: int, micro_batches: list) -> None:
        if not self.enabled:
            return
        ids = [int(i) for b in micro_batches for i in b.seq_id]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(f'{{"step": {step}, "ids": {ids}}}\n')

    def truncate(self, step: int) -> None:
        """After a resume, forget steps that the restored checkpoint did not include."""
        if not self.enabled or not self.path.exists():
            return
        kept = [r for r in read_jsonl(self.path) if r["step"] <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
