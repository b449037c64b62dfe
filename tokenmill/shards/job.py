"""The shards stage: tables/sequences -> globally shuffled MDS shards.

Writes ``S = OUT/shards`` (or ``shards.output``):

    S/dataset.json        format, column, dtype, seq_len, vocab_size, eos/bos ids,
                          tokenizer hash, and per split: sequences, tokens, shards
    S/tokenizer.json      the tokenizer that made the tokens
    S/train/index.json    merged index; shards under S/train/<part>/
    S/val/index.json

Each sample: ``tokens`` as ``ndarray:<dtype>:<seq_len>`` (uint16, or uint32
when the vocabulary exceeds 65536) and ``seq_id`` as ``int64``. llm-foundry's
``StreamingTextDataset`` reads this as pretokenized text: for an ndarray
``tokens`` sample it slices ``max_seq_len`` and casts to int64 (set
``max_seq_len`` to seq_len and ``eos_token_id`` for document boundaries).
Its old releases, which only read raw int64 bytes, cannot.

Everything is written into a staging folder next to S, which then replaces
S, so a rerun (or a run killed midway and restarted) never leaves a mix of
old and new shards. S must be new, empty or earlier shards (its dataset.json
and nothing at its top but the files above): a folder of other files is
refused before any work, never replaced (``check_output``). Remote outputs
are uploaded (by streaming's uploaders, the only use of streaming here) as
they are written, and dataset.json goes up last.
"""

from __future__ import annotations

import math
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

from tokenmill import locations, pipeline, safe_output, tables
from tokenmill import spark as session
from tokenmill.errors import UserError
from tokenmill.facts import ShardsFacts, TokenizeFacts
from tokenmill.manifest import StageRecord
from tokenmill.progress import SparkProgress, human_bytes, log
from tokenmill.shards import mds
from tokenmill.shards.dataset_info import FILE as DATASET_FILE, FORMATS, TEXT_FORMAT, DatasetInfo, format_of
from tokenmill.shards.shuffle import SPLITS, auto_parts, max_share_deviation, neighbour_gap_ratio, shuffle, val_count
from tokenmill.tokenize.tokenizer import file_sha256

INPUT = "sequences"


def shard_locations(ctx) -> tuple[Path, str | None]:
    """(local shards folder, remote URI or None)."""
    target = ctx.cfg.shards.output
    default = locations.local_dir(ctx.out) / "shards"
    if target is None:
        return default, None
    if locations.is_remote(target):
        return default, target.rstrip("/")
    return locations.local_dir(target), None


def tokenize_facts(ctx) -> tuple[TokenizeFacts, Path]:
    """What tokenize recorded, and its tokenizer.json, checked to be the one the sequences were made with."""
    facts = TokenizeFacts.of(ctx.manifest)
    path = locations.local_dir(ctx.out) / "tokenizer.json"
    if not path.is_file() or file_sha256(path) != facts.tokenizer_sha256:
        raise UserError(f"{path} is missing or is not the tokenizer the sequences were made with; "
                        "rerun `tokenmill tokenize --force`")
    return facts, path


# What a shards folder holds at its top (both variants); streaming adds files only inside the splits.
SHARDS_ENTRIES = frozenset({*SPLITS, DATASET_FILE, "tokenizer.json", "tokenizer_config.json"})


def is_shards(folder: Path) -> bool:
    """Whether ``folder`` holds shards this stage (or the chat variant) wrote, and nothing else at its top."""
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


def _clear_stale(final: Path) -> None:
    """Check the shards folder, then remove the staging/old folders a killed run left beside it."""
    check_output(final)
    for p in final.parent.glob(f".{final.name}.{safe_output.STAGING}-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in final.parent.glob(f".{final.name}.{safe_output.OLD}-*"):
        shutil.rmtree(p, ignore_errors=True)


def _swap(staging: Path, final: Path) -> None:
    """Staging in for the shards folder, checked again: only earlier shards are ever replaced."""
    safe_output.replace_folder(staging, check_output(final))


def output_signature(ctx, final: Path) -> dict:
    """What the up-to-date check compares: dataset.json, written last and only by this stage.
    (Not the whole folder: training unpacks compressed shards next to them.)"""
    dataset = str(final / DATASET_FILE)
    return {dataset: ctx.signature(dataset)}


def run(ctx) -> StageRecord:
    if ctx.cfg.is_chat:
        from tokenmill.chat.job import run_shards

        return run_shards(ctx)
    cfg = ctx.cfg.shards
    tok, tokenizer_file = tokenize_facts(ctx)
    seq_len, dtype = tok.seq_len, tok.dtype
    final, remote = shard_locations(ctx)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale(final)
    staging = safe_output.sibling(final, safe_output.STAGING)

    seqs = ctx.read(INPUT)
    n = tables.row_count(ctx.spark, ctx.location(INPUT))
    if n == 0:
        raise UserError("tables/sequences is empty: the input has fewer than seq_len tokens per packing group; "
                        "lower tokenize.seq_len or tokenize.pack_groups")
    bytes_per_seq = seq_len * np.dtype(dtype).itemsize
    train_parts = cfg.partitions or auto_parts(n, bytes_per_seq, session.parallelism(ctx.spark))
    n_val = val_count(n, cfg.val_fraction)
    val_parts = max(1, min(train_parts, math.ceil(n_val * bytes_per_seq / (128 << 20))))

    compression = None if cfg.compression == "none" else cfg.compression
    writer = mds.make_writer(str(staging), remote, dtype, seq_len, compression, cfg.size_limit)
    ordered = shuffle(seqs, cfg.seed, cfg.val_fraction, train_parts, val_parts, n)
    with SparkProgress(ctx.spark, "shards", total_bytes=n * bytes_per_seq):
        written = (ordered.select("split", "part", "seq_id", "tokens", "source")
                   .mapInArrow(writer, mds.WRITTEN_SCHEMA).collect())

    per_split = {s: {"sequences": 0, "tokens": 0, "shards": 0, "bytes": 0} for s in SPLITS}
    parts = defaultdict(list)
    order_codes = defaultdict(list)
    order_ids = defaultdict(list)
    written = sorted(written, key=lambda r: (r.split, r.part))
    sources = sorted({s for row in written for s in row.sources if s is not None})
    codes = {s: i for i, s in enumerate(sources)}
    for row in written:
        stats = per_split[row.split]
        stats["sequences"] += row.sequences
        stats["tokens"] += row.sequences * seq_len
        stats["shards"] += row.shards
        stats["bytes"] += row.bytes
        parts[row.split].append(row.part)
        # Part-local codes -> global codes (a null source gets -1).
        local = np.array([codes.get(s, -1) for s in row.sources], dtype="<i4")
        order_codes[row.split].append(local[np.frombuffer(row.codes, dtype="<i4")])
        order_ids[row.split].append(np.frombuffer(row.ids, dtype="<i8"))
    for split in SPLITS:
        mds.merge_split(str(staging), remote, split, parts[split])

    quality = {}
    for split in SPLITS:
        order = np.concatenate(order_codes[split]) if order_codes[split] else np.empty(0, "<i4")
        dev, worst = max_share_deviation(order, len(sources), cfg.quality_window)
        unshuffled, _ = max_share_deviation(np.sort(order), len(sources), cfg.quality_window)
        ids = np.concatenate(order_ids[split]) if order_ids[split] else np.empty(0, "<i8")
        gap = neighbour_gap_ratio(ids)
        quality[split] = {
            "window": min(cfg.quality_window, len(order)),
            "max_share_deviation": round(dev, 6),
            "worst_source": sources[worst] if worst is not None else None,
            "source_sorted_deviation": round(unshuffled, 6),
            "neighbour_gap_ratio": None if gap is None else round(gap, 4),
            "input_order_gap_ratio": None if gap is None else round(3 / (len(ids) + 1), 6),
        }

    dataset = DatasetInfo(
        format=TEXT_FORMAT,
        column="tokens",
        dtype=dtype,
        seq_len=seq_len,
        vocab_size=tok.vocab_size,
        eos_id=tok.eos_id,
        bos_id=tok.bos_id,
        tokenizer_sha256=tok.tokenizer_sha256,
        splits={s: {k: per_split[s][k] for k in ("sequences", "tokens", "shards")} for s in SPLITS},
    )
    shutil.copyfile(tokenizer_file, staging / "tokenizer.json")
    dataset.write(staging)
    if remote is not None:
        mds.upload(str(staging), remote, "tokenizer.json")
        mds.upload(str(staging), remote, DATASET_FILE)  # last: readers look for it
    _swap(staging, final)

    rows_out = sum(per_split[s]["sequences"] for s in SPLITS)
    log(f"[shards] {rows_out:,} sequences, {human_bytes(sum(per_split[s]['bytes'] for s in SPLITS))} "
        f"in {final}" + (f" and {remote}" if remote else ""))
    return StageRecord(
        stage="shards",
        rows_in=n,
        rows_out=rows_out,
        inputs={INPUT: ctx.signature(INPUT)},
        outputs=output_signature(ctx, final),
        extra=ShardsFacts(
            location=str(final),
            remote=remote,
            **dataset.to_json(),
            rows_unit="sequences",
            bytes={s: per_split[s]["bytes"] for s in SPLITS},
            partitions={"train": train_parts, "val": val_parts},
            compression=cfg.compression,
            seed=cfg.seed,
            shuffle_quality=quality,
            tokens_produced=tok.tokens,
            tokens_dropped=tok.tokens_dropped,
            lineage={INPUT: ctx.signature(INPUT), **ctx.manifest.stages["tokenize"].inputs},
        ).to_extra(),
    )


def summary_lines(rec: StageRecord) -> list[str]:
    if rec.extra.get("kind") == "chat":
        from tokenmill.chat.job import shards_summary

        return shards_summary(rec)
    x = ShardsFacts.from_extra(rec.extra)
    lines = [f"shards     {x.location}" + (f" -> {x.remote}" if x.remote else ""),
             f"format     {x.format}, tokens {x.dtype} x {x.seq_len}, vocab {x.vocab_size:,}"]
    for split in SPLITS:
        s = x.splits[split]
        lines.append(f"{split:<6}     {s['sequences']:>10,} sequences  {s['tokens']:>13,} tokens  "
                     f"{s['shards']:>4} shards  {human_bytes(x.bytes[split])}")
    lines.append(f"dropped    {x.tokens_dropped:>10,} tokens of {x.tokens_produced:,} (packing tails)")
    q = x.shuffle_quality["train"]
    lines.append(f"shuffle    max source-share deviation {q['max_share_deviation']:.4f} over windows of "
                 f"{q['window']:,} (unshuffled: {q['source_sorted_deviation']:.4f})")
    if q.get("neighbour_gap_ratio") is not None:
        lines.append(f"           storage neighbours {q['neighbour_gap_ratio']:.3f}x as far apart in input order "
                     f"as in a random order (1: random; input order: {q['input_order_gap_ratio']:.4f})")
    return lines


STAGE_SPEC = pipeline.StageSpec(
    name="shards",
    inputs=(INPUT,),
    outputs=(),
    run=run,
    summary=summary_lines,
)
add_arguments, main = STAGE_SPEC.add_arguments, STAGE_SPEC.main  # the `tokenmill shards` command
