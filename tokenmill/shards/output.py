"""Where a shards stage writes, and how it replaces earlier shards: shared by every variant.

The shards folder ``S`` is ``OUT/shards``, or ``shards.output`` (a local
folder, or an object store: then the files are written locally and uploaded).
A stage first checks ``S`` and clears what a killed run left beside it
(``clear_stale``), writes everything into a staging folder (``staged``),
which then replaces ``S``, so a rerun (or a run killed midway and
restarted) never leaves a mix of old and new shards. ``S`` must be new,
empty or earlier shards (its dataset.json and nothing at its top but the
files below): a folder of other files is refused before any work, never
replaced. The up-to-date check compares ``output_signature``.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tokenmill import locations, safe_output
from tokenmill.shards.dataset_info import FILE as DATASET_FILE, FORMATS, SPLITS, format_of

# What a shards folder holds at its top (every variant); streaming adds files only inside the splits.
SHARDS_ENTRIES = frozenset({*SPLITS, DATASET_FILE, "tokenizer.json", "tokenizer_config.json"})


def shard_locations(ctx) -> tuple[Path, str | None]:
    """(local shards folder, remote URI or None)."""
    target = ctx.cfg.shards.output
    default = locations.local_dir(ctx.out) / "shards"
    if target is None:
        return default, None
    if locations.is_remote(target):
        return default, target.rstrip("/")
    return locations.local_dir(target), None


def is_shards(folder: Path) -> bool:
    """Whether ``folder`` holds shards a shards stage wrote (any format), and nothing else at its top."""
    if format_of(folder) not in FORMATS:
        return False
    try:
        names = {p.name for p in folder.iterdir()}
    except OSError:
        return False
    return names <= SHARDS_ENTRIES


def check_output(final: Path) -> Path:
    """The shards folder resolved, when it is new, empty or earlier shards (never a folder of other files)."""
    return safe_output.check_output_folder(final, "shards folder", "shards output", is_shards)


def clear_stale(final: Path) -> None:
    """Check the shards folder (creating its parent), then remove the staging and old
    folders a killed run left beside it: the first thing a shards stage does."""
    final.parent.mkdir(parents=True, exist_ok=True)
    check_output(final)
    for kind in (safe_output.STAGING, safe_output.OLD):
        for p in final.parent.glob(f".{final.name}.{kind}-*"):
            shutil.rmtree(p, ignore_errors=True)


@contextmanager
def staged(final: Path) -> Iterator[Path]:
    """A new folder beside ``final`` to write the shards into; it replaces ``final`` when the
    block ends, after checking ``final`` again (a long write: it may have changed meanwhile),
    so only earlier shards are ever replaced. A block that raises leaves ``final`` as it was."""
    with safe_output.staged_folder(final) as staging:
        yield staging
        check_output(final)


def output_signature(ctx, final: Path) -> dict:
    """What the up-to-date check compares: dataset.json, written last and only by the stage.
    (Not the whole folder: training unpacks compressed shards next to them.)"""
    dataset = str(final / DATASET_FILE)
    return {dataset: ctx.signature(dataset)}
