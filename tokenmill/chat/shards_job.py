"""The shards stage of a chat / instruction run: tables/sequences -> tokenmill-mds-sft-v1 shards.

The packed windows get the base stage's seeded shuffle and split and its
way of replacing earlier shards (``tokenmill/shards/output.py``); each
sample holds the tokens, the loss mask and the example ids
(``chat/shards.py``). The tokenizer and, for chat rows, the chat template
go with the shards, so the trainer renders eval prompts as the examples were.
"""

from __future__ import annotations

from dataclasses import replace

from tokenmill import locations, tables
from tokenmill.chat.facts import ChatShardsFacts, ChatTokenizeFacts
from tokenmill.chat.shards import SftShardSpec, write_shards
from tokenmill.chat.template import load_template
from tokenmill.chat.tokenize_job import TEMPLATE_CONFIG
from tokenmill.manifest import StageRecord
from tokenmill.progress import SparkProgress, log
from tokenmill.shards import job as base, output
from tokenmill.shards.dataset_info import SFT_FORMAT
from tokenmill.shards.job import INPUT
from tokenmill.shards.shuffle import SPLITS
from tokenmill.tokenize.job import made_tokenizer, nothing_left

STAGE = "shards"


def shard_spec(ctx, facts: ChatTokenizeFacts, n: int) -> SftShardSpec:
    """The writer's settings: the windows' figures from tokenize, the shards section's knobs."""
    from tokenmill.shards.shuffle import auto_parts

    cfg = ctx.cfg.shards
    return SftShardSpec(
        seq_len=facts.seq_len, dtype=facts.dtype, vocab_size=facts.vocab_size, eos_id=facts.eos_id,
        bos_id=facts.bos_id, pad_id=facts.pad_id, tokenizer_sha256=facts.tokenizer_sha256,
        template_sha256=facts.template_sha256, seed=cfg.seed, val_fraction=cfg.val_fraction,
        train_parts=cfg.partitions or auto_parts(n, window_bytes(facts), 1),
        compression=None if cfg.compression == "none" else cfg.compression, size_limit=cfg.size_limit)


def window_bytes(facts: ChatTokenizeFacts) -> int:
    """Bytes of one window: its tokens, loss mask and example ids."""
    import numpy as np

    return facts.seq_len * (np.dtype(facts.dtype).itemsize + 3)


def run(ctx) -> StageRecord:
    """Packed windows -> shuffled, split MDS shards with their tokenizer and template."""
    facts = ChatTokenizeFacts.of(ctx.manifest)
    tokenizer_file = made_tokenizer(ctx, facts.tokenizer_sha256)
    n = tables.row_count(ctx.spark, ctx.location(INPUT))
    if n == 0:
        raise nothing_left(ctx.manifest, STAGE, "examples", "shard", INPUT)
    final, remote = output.shard_locations(ctx)
    output.clear_stale(final)
    out = locations.local_dir(ctx.out)
    template = None if facts.template_sha256 is None else load_template(out / TEMPLATE_CONFIG, ctx.cfg.chat.template)
    with output.staged(final) as staging, SparkProgress(ctx.spark, "shards", total_bytes=n * window_bytes(facts)):
        dataset = write_shards(ctx.read(INPUT), shard_spec(ctx, facts, n), str(staging), remote,
                               tokenizer_file.read_text(encoding="utf-8"), template)
    rows_out = sum(dataset["splits"][s]["sequences"] for s in SPLITS)
    log(f"[shards] {rows_out:,} windows ({SFT_FORMAT}) in {final}" + (f" and {remote}" if remote else ""))
    cfg = ctx.cfg.shards
    return StageRecord(
        stage=STAGE, rows_in=n, rows_out=rows_out, inputs={INPUT: ctx.signature(INPUT)},
        outputs=output.output_signature(ctx, final),
        extra=ChatShardsFacts(
            location=str(final), remote=remote, **dataset, seed=cfg.seed, compression=cfg.compression,
            lineage={INPUT: ctx.signature(INPUT), **ctx.manifest.stages["tokenize"].inputs}).to_extra())


def summary_lines(rec: StageRecord) -> list[str]:
    x = ChatShardsFacts.from_extra(rec.extra)
    lines = [f"shards     {x.location}" + (f" -> {x.remote}" if x.remote else ""),
             f"format     {x.format}, tokens {x.dtype} x {x.seq_len}, vocab {x.vocab_size:,}"]
    for split, s in x.splits.items():
        lines.append(f"{split:<6}     {s['sequences']:>10,} windows  {s['examples']:>10,} examples  "
                     f"{s['target_tokens']:>12,} target tokens  {s['pad_tokens']:>10,} pad")
    return lines


# The base stage's contract (the tables it reads), done the chat way.
STAGE_SPEC = replace(base.STAGE_SPEC, run=run, summary=summary_lines)
