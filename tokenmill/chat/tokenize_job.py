"""The tokenize stage of a chat / instruction run: clean (or deduped) conversations -> tables/sequences.

Renders each example with the model's chat template, masks the tokens that
are not training targets (``chat/mask.py``; an example longer than
``tokenize.seq_len`` is rejected or has its earliest turns dropped) and
bin-packs whole examples into padded windows of ``tokenize.seq_len`` tokens
in ``tokenize.pack_groups`` groups (``chat/pack.py``): the same two settings
as a plain run's, so a run has one length whatever its data.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from tokenmill import locations, tables
from tokenmill.chat import mask
from tokenmill.chat.etl_job import dropped_only, reason_counts
from tokenmill.chat.facts import ChatTokenizeFacts
from tokenmill.chat.pack import pack_examples, packing_stats
from tokenmill.chat.template import ChatTemplate, load_template
from tokenmill.errors import UserError
from tokenmill.manifest import StageRecord
from tokenmill.progress import SparkProgress, log
from tokenmill.tokenize import job as base
from tokenmill.tokenize.job import OUTPUT, input_table, nothing_left

STAGE = "tokenize"
TEMPLATE_CONFIG = "tokenizer_config.json"


def model_folder(ctx) -> Path:
    """The folder holding tokenizer.json and tokenizer_config.json (tokenize.tokenizer)."""
    source = ctx.cfg.tokenize.tokenizer
    if not source:
        raise UserError("a chat run needs tokenize.tokenizer: the model folder holding tokenizer.json and "
                        "tokenizer_config.json (its chat template and special tokens)")
    path = Path(source)
    folder = path if path.is_dir() else path.parent
    if not (folder / TEMPLATE_CONFIG).is_file():
        raise UserError(f"tokenize.tokenizer: {folder} has no {TEMPLATE_CONFIG}; a chat run needs it for the "
                        "chat template and the EOS token")
    return folder


def instruction_template(template: ChatTemplate) -> ChatTemplate:
    """Instruction rows use no template, only its special tokens (EOS, BOS, pad)."""
    return ChatTemplate("", "none", template.tokens)


def length_stats(examples) -> dict:
    """min / p50 / p90 / p99 / max tokens per example (exact percentiles), and the mean."""
    from pyspark.sql import functions as F

    row = examples.agg(F.min("n_tokens"), F.expr("percentile(n_tokens, array(0.5, 0.9, 0.99))"), F.max("n_tokens"),
                       F.avg("n_tokens")).first()
    if row[0] is None:
        return {}
    p50, p90, p99 = (round(float(p), 1) for p in row[1])
    return {"min": int(row[0]), "p50": p50, "p90": p90, "p99": p99, "max": int(row[2]), "mean": round(float(row[3]), 1)}


def copy_model_files(ctx, folder: Path) -> tuple[Path, ChatTemplate]:
    """OUT/tokenizer.json and OUT/tokenizer_config.json from the model folder, and the template
    the examples are rendered with (instruction rows: none, only its special tokens)."""
    from tokenmill.tokenize import tokenizer as toks

    source = toks.tokenizer_file(ctx.cfg.tokenize.tokenizer)
    toks.load(source)  # a broken tokenizer.json is one line, here
    out = locations.local_dir(ctx.out)
    shutil.copyfile(source, out / "tokenizer.json")
    shutil.copyfile(folder / TEMPLATE_CONFIG, out / TEMPLATE_CONFIG)
    template = load_template(out / TEMPLATE_CONFIG, ctx.cfg.chat.template)
    return source, instruction_template(template) if ctx.cfg.chat.task == "instruction" else template


def run(ctx) -> StageRecord:
    """Examples -> rendered, masked, bin-packed windows in tables/sequences (+ rejects)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from tokenmill.tokenize import tokenizer as toks

    chat, seq_len, groups = ctx.cfg.chat, ctx.cfg.tokenize.seq_len, ctx.cfg.tokenize.pack_groups
    name = input_table(ctx)
    if tables.row_count(ctx.spark, ctx.location(name)) == 0:
        raise nothing_left(ctx.manifest, STAGE, "examples", "tokenize", name)
    folder = model_folder(ctx)
    source, template = copy_model_files(ctx, folder)
    out = locations.local_dir(ctx.out)
    tokenizer_json = (out / "tokenizer.json").read_text(encoding="utf-8")
    special = mask.worker_encoder(tokenizer_json, template, chat, seq_len).special  # a mismatch: one line
    log(f"[tokenize] {chat.task} rows, template {template.name}, eos {special.eos_id}, pad {special.pad_id}")

    with SparkProgress(ctx.spark, "tokenize: template + mask + pack"):
        encoded = mask.encode_examples(ctx.read(name), tokenizer_json, template, chat, seq_len).persist(
            StorageLevel.MEMORY_AND_DISK)
        kept, rejects = mask.split_encoded(encoded, STAGE)
        ctx.write(pack_examples(kept, seq_len, special.pad_id, groups), OUTPUT)
        ctx.write_rejects(rejects, STAGE)
        counts = reason_counts(encoded)
        lengths = length_stats(kept)
        truncated = encoded.where(F.col("reason").isNull() & (F.col("dropped_pairs") > 0)).count()
    encoded.unpersist()
    stats = packing_stats(ctx.read(OUTPUT), seq_len)
    if stats.examples != counts.get(None, 0):
        raise AssertionError(f"packed {stats.examples} examples, {counts.get(None, 0)} were encoded")
    info = toks.describe(out / "tokenizer.json", ctx.cfg.tokenize)
    facts = ChatTokenizeFacts(
        task=chat.task, input_table=name, template_name=template.name,
        template_sha256=None if chat.task == "instruction" else template.sha256,
        tokenizer_sha256=info.sha256, tokenizer_source=str(ctx.cfg.tokenize.tokenizer), vocab_size=info.vocab_size,
        dtype=info.dtype, eos_id=special.eos_id, bos_id=special.bos_id, pad_id=special.pad_id, seq_len=seq_len,
        pack_groups=groups, examples=stats.examples, windows=stats.windows, tokens=stats.tokens,
        target_tokens=stats.targets, pad_tokens=stats.pad_tokens, truncated_examples=truncated, lengths=lengths,
        packing=stats.report())
    return StageRecord(
        stage=STAGE, rows_in=sum(counts.values()), rows_out=counts.get(None, 0), dropped=dropped_only(counts),
        inputs={name: ctx.signature(name), str(source): ctx.signature(str(source)),
                str(folder / TEMPLATE_CONFIG): ctx.signature(str(folder / TEMPLATE_CONFIG))},
        outputs={OUTPUT: ctx.signature(OUTPUT)}, extra=facts.to_extra())


def packing_line(packing: dict) -> str:
    """Windows, and the share of real tokens and targets in them, packed against one example per window."""
    packed, single = packing["packed"], packing["one_per_window"]
    return (f"{packing['windows']:,} windows: {100 * packed['token_share']:.1f}% tokens, "
            f"{100 * packed['target_share']:.1f}% targets (one example per window: "
            f"{100 * single['token_share']:.1f}% / {100 * single['target_share']:.1f}%)")


def lengths_line(lengths: dict) -> str:
    """Tokens per example at min / p50 / p90 / p99 / max."""
    if not lengths:
        return "no examples"
    return "  ".join(f"{k} {lengths[k]:g}" for k in ("min", "p50", "p90", "p99", "max"))


def summary_lines(rec: StageRecord) -> list[str]:
    x = ChatTokenizeFacts.from_extra(rec.extra)
    return [f"template   {x.template_name} ({x.task} rows), tokenizer {x.tokenizer_sha256[:12]}, "
            f"vocab {x.vocab_size:,}",
            f"examples   {x.examples:>12,} kept, {rec.rows_dropped:,} rejected"
            + (f", {x.truncated_examples:,} truncated" if x.truncated_examples else ""),
            f"tokens     {lengths_line(x.lengths)} per example",
            f"targets    {x.target_tokens:>12,} of {x.tokens:,} tokens",
            f"packing    {packing_line(x.packing)}"]


def settings(cfg) -> dict:
    """What of the run config this stage reads: the tokenize section (tokenizer, seq_len,
    pack_groups) and the chat section (template, loss mask, too_long)."""
    return {"tokenize": cfg.tokenize, "chat": cfg.chat}


# The base stage's contract (the tables it reads and writes), done the chat way.
STAGE_SPEC = replace(base.STAGE_SPEC, run=run, summary=summary_lines, settings=settings)
