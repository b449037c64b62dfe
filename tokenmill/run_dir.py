"""The layout of a training run's folder, in one place.

``tokenmill train``, ``finetune``, ``preflight``, ``export``, ``register``,
``generate`` and ``report`` all read or write parts of RUN; each asks this
value for a part's path instead of spelling the name. Torch-free, so the
data side and the CLI can import it without the trainer.

    RUN/checkpoints/step_N/   DCP checkpoints (a LoRA run's: adapters only)
    RUN/cache/                the shards' metadata and streaming's local cache
    RUN/base/                 the base model's config and tokenizer (export writes them back)
    RUN/hf/                   the final Hugging Face export (LoRA: merged)
    RUN/adapter/              a LoRA run's PEFT adapter
    RUN/samples/rankR.jsonl   the sample audit (record_sample_ids)
    RUN/config.yaml           the trainer config the run was launched with
    RUN/events.jsonl, metrics.jsonl, loss.png, mlruns/   the run log
    RUN/tokenizer.json, dataset.json                     copied from the shards
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def _part(name: str) -> property:
    """A read-only attribute: the path of the part ``name`` of the run folder."""
    return property(lambda self: self.root / name, doc=f"RUN/{name}")


@dataclass(frozen=True)
class RunDir:
    root: Path

    # The folders an export may write inside a run (everything else there is the run's own).
    EXPORT_FOLDERS = ("hf", "adapter")

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    checkpoints = _part("checkpoints")
    base = _part("base")
    hf = _part("hf")
    adapter = _part("adapter")
    config = _part("config.yaml")
    tokenizer = _part("tokenizer.json")
    events = _part("events.jsonl")
    metrics = _part("metrics.jsonl")
    loss_plot = _part("loss.png")
    mlruns = _part("mlruns")

    def cache(self, cache_dir: str | None = None) -> Path:
        """Where the shards' metadata and streaming's cache go: data.cache_dir if set, else RUN/cache."""
        return Path(cache_dir) if cache_dir else self.root / "cache"

    def sample_log(self, rank: int) -> Path:
        return self.root / "samples" / f"rank{rank}.jsonl"

    def export_out(self, out: str | None) -> Path:
        """Where the final export goes: export.out if set, else RUN/hf."""
        return Path(out) if out else self.hf
