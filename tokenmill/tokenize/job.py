"""The tokenize stage: deduped (or clean) documents -> tables/sequences.

Gets the tokenizer (copied or trained into OUT/tokenizer.json), encodes the
documents in Spark through Arrow, packs them into ``seq_len`` windows and
writes ``tables/sequences`` (seq_id, tokens, source).

The record's rows are documents: rows_out counts documents whose every token
is in a sequence; documents cut or fully inside a group's dropped tail are
dropped with a reason. Token totals go in ``extra``.
"""

from __future__ import annotations

from pathlib import Path

from tokenmill import locations, pipeline, tables
from tokenmill.errors import UserError
from tokenmill.facts import TokenizeFacts
from tokenmill.hashing import file_sha256
from tokenmill.manifest import StageRecord
from tokenmill.progress import SparkProgress, log
from tokenmill.tokenize import tokenizer as toks
from tokenmill.tokenize.pack import group_stats_of, sequences_of, tokenize_and_pack, total_stats

OUTPUT = "sequences"
TOKENIZER_FILE = "tokenizer.json"


def input_table(ctx) -> str:
    choice = ctx.cfg.tokenize.input_table
    if choice != "auto":
        if not ctx.exists(choice):
            raise UserError(f"tokenize.input_table: table {ctx.location(choice)} does not exist; run its stage first")
        return choice
    for name in ("deduped", "clean"):
        if ctx.exists(name):
            return name
    raise UserError(f"no input for tokenize: neither {ctx.location('deduped')} nor {ctx.location('clean')} "
                    "exists; run `tokenmill etl` (and `tokenmill dedup`) first")


def nothing_left(manifest, step: str, unit: str, verb: str, table: str) -> UserError:
    """The one-line error when no row reaches stage ``step`` ("no {unit} left to {verb}: ..."):
    the first earlier stage that kept none, its drops by reason (``manifest.json``), where to look.
    ``table``: the input ``step`` found empty."""
    for stage, rec in manifest.stages.items():
        if stage == step or rec.rows_out:
            continue
        if not rec.rows_in and stage == "etl":
            return UserError(f"no {unit} left to {verb}: etl read 0 rows; check that --input names files "
                             "(or a table) that hold rows")
        if not rec.rows_in:
            continue
        rows = rec.extra.get("rows_unit") or ("rows" if stage == "etl" else "documents")
        reasons = ", ".join(f"{reason}: {n:,}" for reason, n in sorted(rec.dropped.items(), key=lambda kv: -kv[1]))
        return UserError(f"no {unit} left to {verb}: {stage} kept 0 of {rec.rows_in:,} {rows} ({reasons}); "
                         "tables/rejects lists each row with its reason (or see `tokenmill report`)")
    return UserError(f"no {unit} left to {verb}: tables/{table} has no rows; rerun the stages before "
                     f"{step} on an input that holds rows")


def tokenizer_path(ctx) -> Path:
    return locations.local_dir(ctx.out) / TOKENIZER_FILE


def made_tokenizer(ctx, sha256: str) -> Path:
    """OUT/tokenizer.json, checked to be the one tokenize recorded (``sha256``): a later stage
    must ship the tokenizer the sequences were made with, never one written since."""
    path = tokenizer_path(ctx)
    if not path.is_file() or file_sha256(path) != sha256:
        raise UserError(f"{path} is missing or is not the tokenizer the sequences were made with; "
                        "rerun `tokenmill tokenize --force`")
    return path


def run(ctx) -> StageRecord:
    from pyspark import StorageLevel

    cfg = ctx.cfg.tokenize
    name = input_table(ctx)
    docs = ctx.read(name)
    total = tables.row_count(ctx.spark, ctx.location(name))
    if total == 0:
        raise nothing_left(ctx.manifest, "tokenize", "documents", "tokenize", name)
    info = toks.prepare(docs, cfg, tokenizer_path(ctx), total)
    trained = f", trained in {info.train_s:.1f} s" if not cfg.tokenizer else ""
    log(f"[tokenize] tokenizer {info.sha256[:12]} vocab {info.vocab_size} ({info.dtype}), eos {info.eos_id}{trained}")
    tokenizer_json = Path(info.path).read_text(encoding="utf-8")
    # Per-group counts travel as extra rows of the packer's output (Spark Connect
    # has no accumulators); the output is cached so they are read without encoding twice.
    packed = tokenize_and_pack(docs, tokenizer_json, info.eos_id, info.bos_id, cfg.seq_len,
                               cfg.pack_groups).persist(StorageLevel.MEMORY_AND_DISK)
    with SparkProgress(ctx.spark, "tokenize"):
        ctx.write(sequences_of(packed), OUTPUT)
        group_stats = group_stats_of(packed)
    packed.unpersist()
    totals = total_stats(group_stats, cfg.seq_len)
    written = tables.row_count(ctx.spark, ctx.location(OUTPUT))
    if written != totals["sequences"]:
        raise AssertionError(f"packing stats count {totals['sequences']} sequences but the table has {written}")
    inputs = {name: ctx.signature(name)}
    if cfg.tokenizer:
        inputs[cfg.tokenizer] = ctx.signature(cfg.tokenizer)
    return StageRecord(
        stage="tokenize",
        rows_in=totals["docs"],
        rows_out=totals["docs_complete"],
        dropped={"partial_in_dropped_tail": totals["docs_partial"], "in_dropped_tail": totals["docs_tail"]},
        inputs=inputs,
        outputs={OUTPUT: ctx.signature(OUTPUT)},
        extra=TokenizeFacts(
            rows_unit="documents",
            input_table=name,
            tokenizer_sha256=info.sha256,
            tokenizer_source=cfg.tokenizer or "trained",
            vocab_size=info.vocab_size,
            dtype=info.dtype,
            eos_id=info.eos_id,
            bos_id=info.bos_id,
            seq_len=cfg.seq_len,
            pack_groups=cfg.pack_groups,
            sequences=totals["sequences"],
            tokens=totals["tokens"],
            tokens_in_sequences=totals["tokens_in_sequences"],
            tokens_dropped=totals["tokens_dropped"],
            tokenizer_train_s=info.train_s,
        ).to_extra(),
    )


def summary_lines(rec: StageRecord) -> list[str]:
    x = TokenizeFacts.from_extra(rec.extra)
    return [
        f"tokenizer  {x.tokenizer_sha256[:12]} ({x.tokenizer_source}), vocab {x.vocab_size:,} {x.dtype}",
        f"tokens     {x.tokens:>12,} produced",
        f"           {x.tokens_in_sequences:>12,} in {x.sequences:,} sequences of {x.seq_len}",
        f"           {x.tokens_dropped:>12,} dropped (group tails)",
    ]


STAGE_SPEC = pipeline.StageSpec(
    name="tokenize",
    inputs=("deduped", "clean"),
    outputs=(OUTPUT,),
    run=run,
    summary=summary_lines,
)
add_arguments, main = STAGE_SPEC.add_arguments, STAGE_SPEC.main  # the `tokenmill tokenize` command
