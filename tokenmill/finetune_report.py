"""What ``tokenmill finetune`` prints: the dry run's figures and the final lines.

The dry run reads the pipeline's manifest (rows kept and rejected by
reason, per stage), the tokenize record (tokens per example, packing) and
the shards' dataset.json (target tokens per split), and estimates the
training run with ``tokenmill plan``'s figures for the model's size.
"""

from __future__ import annotations

from tokenmill import units
from tokenmill.plan import RunEstimate, run_estimate


def estimate(cfg, info, opts) -> RunEstimate:
    """GPU-hours and cost of the training run (``tokenmill plan``), for the model's own size."""
    from tokenmill.preflight import visible_gpu_kind
    from tokenmill.train import base_model
    from tokenmill.train.model import count_params, flops_per_token

    _, model_cfg = base_model.resolve(cfg, info)
    return run_estimate(count_params(model_cfg), flops_per_token(model_cfg),
                        cfg.max_steps * cfg.global_batch_size * info.seq_len, opts.gpu or visible_gpu_kind(),
                        opts.nproc, opts.mfu, opts.usd_per_gpu_hour)


def rejects_by_reason(manifest) -> list[tuple[str, str, int]]:
    """(stage, reason, rows) of every stage, largest first."""
    rows = [(stage, reason, n) for stage, rec in manifest.stages.items() for reason, n in rec.dropped.items()]
    return sorted(rows, key=lambda r: (-r[2], r[0], r[1]))


def kept_rows(manifest) -> int:
    """Rows that become training examples (chat) or documents in sequences (continued)."""
    return manifest.stages["tokenize"].rows_out


def token_lines(manifest, splits: dict) -> list[str]:
    """Tokens per example, targets and packing of a chat run; tokens and sequences of a plain one."""
    from tokenmill.chat.facts import ChatTokenizeFacts
    from tokenmill.chat.tokenize_job import lengths_line, packing_line
    from tokenmill.facts import TokenizeFacts

    chat = ChatTokenizeFacts.find(manifest)
    if chat is not None:
        return [f"tokens     {lengths_line(chat.lengths)} per example (mean {chat.lengths.get('mean', 0):g})",
                f"targets    {splits['train']['target_tokens']:,} target tokens per epoch (train split; "
                f"{splits['val']['target_tokens']:,} in val)",
                f"packing    {packing_line(chat.packing)}"]
    x = TokenizeFacts.of(manifest)
    return [f"tokens     {x.tokens:,} tokens in {x.sequences:,} sequences of {x.seq_len} "
            f"({x.tokens_dropped:,} dropped in packing tails)",
            f"targets    {splits['train']['tokens']:,} target tokens per epoch (train split)"]


def dry_run(manifest, info, cfg, opts) -> str:
    etl = manifest.stages["etl"]
    rejected = rejects_by_reason(manifest)
    lines = [f"finetune dry run: {opts.task} data for {opts.model}",
             f"rows       {etl.rows_in:,} read, {kept_rows(manifest):,} kept, {sum(n for *_, n in rejected):,} rejected"]
    lines += [f"  {stage:<9} {reason:<28} {n:>10,}" for stage, reason, n in rejected]
    splits = info.splits
    lines += token_lines(manifest, splits)
    windows = int(splits["train"]["sequences"])
    epochs = cfg.max_steps * cfg.global_batch_size / max(1, windows)
    e = estimate(cfg, info, opts)
    lines += [f"training   {cfg.max_steps:,} steps x {cfg.global_batch_size} windows of {info.seq_len} = "
              f"{epochs:.2f} epoch(s) over {windows:,} windows, {e.tokens:,} tokens; {cfg.method}, lr {cfg.optim.lr:g}",
              f"estimate   {e.params:,} parameters on {opts.nproc} x {e.gpu}"
              + (" (assumed: pass --gpu)" if e.gpu_assumed else "")
              + f" at MFU {opts.mfu:.2f}: {e.gpu_hours:.3g} GPU-hours, wall {units.hours(e.wall_hours)}, "
              f"{units.usd(e.cost_usd)} at ${e.usd_per_gpu_hour:g}/GPU-hour",
              "nothing trained (--dry-run); run the same command without it to train"]
    return "\n".join(lines)


def finished(cfg, out, opts, registration=None) -> str:
    """The closing lines: where the model is and how to open it; the registered version, if any."""
    lines = [f"finetune: {cfg.max_steps:,} steps of {cfg.method} fine-tuning from {opts.model} in {cfg.run_path}",
             f"model      {out}  (transformers.AutoModelForCausalLM.from_pretrained({str(out)!r}))"]
    if cfg.method == "lora":
        lines.append(f"adapter    {cfg.run.adapter}  (peft.PeftModel.from_pretrained(base, ...))")
    if registration is not None:
        lines.append(f"registered {registration.registered_name} version {registration.version} in "
                     f"{registration.tracking_uri}  (mlflow.pyfunc.load_model({registration.load_uri!r}))")
    return "\n".join(lines)
