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
S (``tokenmill/shards/output.py``, shared with every variant of this stage),
so a rerun never leaves a mix of old and new shards, and a folder of other
files is refused before any work. Remote outputs are uploaded (by
streaming's uploaders, the only use of streaming here) as they are
written, and dataset.json goes up last.
"""

from __future__ import annotations

import math
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

from tokenmill import pipeline, tables
from tokenmill import spark as session
from tokenmill.errors import UserError
from tokenmill.facts import ShardsFacts, TokenizeFacts
from tokenmill.manifest import StageRecord
from tokenmill.progress import SparkProgress, human_bytes, log
from tokenmill.shards import mds, output
from tokenmill.shards.dataset_info import FILE as DATASET_FILE, TEXT_FORMAT, DatasetInfo
from tokenmill.shards.shuffle import SPLITS, auto_parts, max_share_deviation, neighbour_gap_ratio, shuffle, val_count
from tokenmill.tokenize.job import made_tokenizer

INPUT = "sequences"


def tokenize_facts(ctx) -> tuple[TokenizeFacts, Path]:
    """What tokenize recorded, and its tokenizer.json, checked to be the one the sequences were made with."""
    facts = TokenizeFacts.of(ctx.manifest)
    return facts, made_tokenizer(ctx, facts.tokenizer_sha256)


def run(ctx) -> StageRecord:
    cfg = ctx.cfg.shards
    tok, tokenizer_file = tokenize_facts(ctx)
    seq_len, dtype = tok.seq_len, tok.dtype
    final, remote = output.shard_locations(ctx)
    output.clear_stale(final)

    seqs = ctx.read(INPUT)
    n = tables.row_count(ctx.spark, ctx.location(INPUT))
    if n == 0:
        raise UserError("tables/sequences is empty: the input has fewer than seq_len tokens per packing group; "
                        "lower tokenize.seq_len or tokenize.pack_groups")
    bytes_per_seq = seq_len * np.dtype(dtype).itemsize
    train_parts = cfg.partitions or auto_parts(n, bytes_per_seq, session.parallelism(ctx.spark))
    n_val = val_count(n, cfg.val_fraction)
    val_parts = max(1, min(train_parts, math.ceil(n_val * bytes_per_seq / (128 << 20))))

    with output.staged(final) as staging:
        compression = None if cfg.compression == "none" else cfg.compression
        writer = mds.make_writer(str(staging), remote, dtype, seq_len, compression, cfg.size_limit)
        ordered = shuffle(seqs, cfg.seed, cfg.val_fraction, train_parts, val_parts, n)
        with SparkProgress(ctx.spark, "shards", total_bytes=n * bytes_per_seq):
            written = (ordered.select("split", "part", "seq_id", "tokens", "source")
                       .mapInArrow(writer, mds.WRITTEN_SCHEMA).collect())
        per_split, quality = merge_parts(staging, remote, written, seq_len, cfg.quality_window)
        dataset = dataset_info(tok, per_split)
        shutil.copyfile(tokenizer_file, staging / "tokenizer.json")
        dataset.write(staging)
        if remote is not None:
            mds.upload(str(staging), remote, "tokenizer.json")
            mds.upload(str(staging), remote, DATASET_FILE)  # last: readers look for it

    rows_out = sum(per_split[s]["sequences"] for s in SPLITS)
    log(f"[shards] {rows_out:,} sequences, {human_bytes(sum(per_split[s]['bytes'] for s in SPLITS))} "
        f"in {final}" + (f" and {remote}" if remote else ""))
    return StageRecord(
        stage="shards",
        rows_in=n,
        rows_out=rows_out,
        inputs={INPUT: ctx.signature(INPUT)},
        outputs=output.output_signature(ctx, final),
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


def dataset_info(tok: TokenizeFacts, per_split: dict) -> DatasetInfo:
    """dataset.json of text shards: the tokenizer's figures and each split's counts."""
    counts = {s: {k: per_split[s][k] for k in ("sequences", "tokens", "shards")} for s in SPLITS}
    return DatasetInfo(format=TEXT_FORMAT, column="tokens", dtype=tok.dtype, seq_len=tok.seq_len,
                       vocab_size=tok.vocab_size, eos_id=tok.eos_id, bos_id=tok.bos_id,
                       tokenizer_sha256=tok.tokenizer_sha256, splits=counts)


def merge_parts(staging: Path, remote: str | None, written: list, seq_len: int, window: int) -> tuple[dict, dict]:
    """Each split's index merged from its writers' parts; returns the per-split counts (sequences,
    tokens, shards, bytes) and the shuffle-quality figures from the written order of sources."""
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
        dev, worst = max_share_deviation(order, len(sources), window)
        unshuffled, _ = max_share_deviation(np.sort(order), len(sources), window)
        ids = np.concatenate(order_ids[split]) if order_ids[split] else np.empty(0, "<i8")
        gap = neighbour_gap_ratio(ids)
        quality[split] = {
            "window": min(window, len(order)),
            "max_share_deviation": round(dev, 6),
            "worst_source": sources[worst] if worst is not None else None,
            "source_sorted_deviation": round(unshuffled, 6),
            "neighbour_gap_ratio": None if gap is None else round(gap, 4),
            "input_order_gap_ratio": None if gap is None else round(3 / (len(ids) + 1), 6),
        }
    return per_split, quality


def summary_lines(rec: StageRecord) -> list[str]:
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
