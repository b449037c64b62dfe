"""``tokenmill plan``: what a training run costs before it is launched.

From the model size N (parameters) and/or the data size D (tokens):

- Chinchilla (Hoffmann et al. 2022): compute-optimal training uses ~20
  tokens per parameter. Over-training a smaller model on more tokens costs
  the same to train, more loss, but less to serve (inference ~2N FLOPs/token).
- Training FLOPs ~ 6 N D (forward 2ND + backward 4ND).
- GPU time = FLOPs / (peak bf16 dense FLOP/s x MFU); cost at $/GPU-hour.
- Hardware failures: ~1 per 1,000 GPU-days (MosaicML's rule of thumb), so a
  cluster of G GPUs fails every 1000/G days on average.
- Checkpoint interval minimizing lost work (Young 1974): tau = sqrt(2 delta M)
  for checkpoint write time delta and cluster MTBF M. Work lost: the time to
  write checkpoints, half an interval of recompute per failure, and a restart.

Published check: 30B parameters on 600B tokens is ~3,000 H100-days and ~$500k
at $7 per H100-hour at an MFU of about 0.4. Pure Python: no heavy imports.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from tokenmill.errors import UserError
from tokenmill.facts import ShardsFacts
from tokenmill.gpus import GPUS  # the one table of peaks and prices (also read by the trainer and preflight)
from tokenmill.units import count, hours, usd

CHINCHILLA_TOKENS_PER_PARAM = 20
# Chinchilla's parametric loss L = E + A/N^alpha + B/D^beta, as refitted by
# Besiroglu et al. 2024 (the original approach-3 fit puts the optimum far from
# 20 tokens/param). Fitted on one data set and tokenizer: compare rows with
# it, do not quote it as a prediction.
LOSS_E, LOSS_A, LOSS_B, LOSS_ALPHA, LOSS_BETA = 1.8172, 482.01, 2085.43, 0.3478, 0.3658

DEFAULTS = {"gpu": "h100", "mfu": 0.4, "gpus": 512, "checkpoint_minutes": 5.0, "restart_minutes": 15.0,
            "failures_per_1000_gpu_days": 1.0}

SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbgt]?)\s*$", re.IGNORECASE)


def parse_size(text: str | float | int, flag: str) -> float:
    """'30B', '125M', '1.5T', '7e9', '600_000' -> a positive number, else UserError naming the flag."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = SIZE.match(str(text).replace("_", "").replace(",", ""))
        if not m:
            raise UserError(f"{flag}: expected a count like 30B, 125M, 1.5T or 7e9, got {text!r}")
        value = float(m.group(1)) * SUFFIX[m.group(2).lower()]
    if not math.isfinite(value) or value < 1:
        raise UserError(f"{flag}: must be at least 1, got {text!r}")
    return value


def _positive(value: float, flag: str, upper: float | None = None) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0 or (upper is not None and value > upper):
        limit = f" and at most {upper:g}" if upper is not None else ""
        raise UserError(f"{flag}: must be a number > 0{limit}, got {value!r}")
    return float(value)


def tokens_from_manifest(path: str | Path) -> float:
    """Training tokens from a pipeline manifest: the train split's count, or a top-level 'tokens'."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--manifest: file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"--manifest: {path} is not valid JSON ({exc})") from None
    tokens = None
    stages = data.get("stages") if isinstance(data, dict) else None
    shards = stages.get("shards") if isinstance(stages, dict) else None
    if isinstance(shards, dict):
        try:
            tokens = ShardsFacts.from_extra(shards.get("extra") or {}).train_tokens
        except UserError as exc:
            raise UserError(f"--manifest: {path}: {exc}") from None
    elif isinstance(data, dict):
        tokens = data.get("tokens")
    if isinstance(tokens, bool) or not isinstance(tokens, (int, float)) or tokens <= 0:
        raise UserError(f"--manifest: {path} has no token count (stages.shards.extra.splits.train.tokens "
                        f"or a top-level 'tokens'); run the shards stage first or pass --tokens")
    return float(tokens)


def chinchilla_loss(params: float, tokens: float) -> float:
    return LOSS_E + LOSS_A / params ** LOSS_ALPHA + LOSS_B / tokens ** LOSS_BETA


def gpu_days(flops: float, peak: float, mfu: float) -> float:
    return flops / (peak * mfu) / 86400


def failure_budget(gpu_hours: float, gpus: int, checkpoint_h: float, restart_h: float, per_1000_days: float) -> dict:
    """Expected failures, the Young interval and the hours of wall time they cost."""
    train_h = gpu_hours / gpus
    failures = gpu_hours / 24 / 1000 * per_1000_days
    mtbf_h = 24 * 1000 / per_1000_days / gpus
    # A run shorter than one interval writes a single checkpoint at the end.
    interval_h = min(math.sqrt(2 * checkpoint_h * mtbf_h), train_h)
    checkpoints = math.ceil(train_h / interval_h)
    lost = {"checkpointing": checkpoints * checkpoint_h, "recompute": failures * interval_h / 2,
            "restarts": failures * restart_h}
    return {
        "expected_failures": failures,
        "cluster_mtbf_hours": mtbf_h,
        "checkpoint_interval_hours": interval_h,
        "checkpoints": checkpoints,
        "hours_lost": sum(lost.values()),
        "hours_lost_by_cause": lost,
        "wall_days_with_failures": (train_h + sum(lost.values())) / 24,
    }


def plan(params: float | None = None, tokens: float | None = None, gpu: str = DEFAULTS["gpu"],
         mfu: float = DEFAULTS["mfu"], usd_per_gpu_hour: float | None = None, gpus: int = DEFAULTS["gpus"],
         checkpoint_minutes: float = DEFAULTS["checkpoint_minutes"],
         restart_minutes: float = DEFAULTS["restart_minutes"],
         failures_per_1000_gpu_days: float = DEFAULTS["failures_per_1000_gpu_days"],
         peak_tflops: float | None = None) -> dict:
    """All figures as one dict (the --json output). Missing N or D is taken Chinchilla-optimal."""
    if params is None and tokens is None:
        raise UserError("--params/--tokens: give the model size, the token count (or --manifest), or both")
    if gpu not in GPUS and peak_tflops is None:
        raise UserError(f"--gpu: unknown GPU {gpu!r}; choose one of {', '.join(GPUS)} or give --peak-tflops")
    mfu = _positive(mfu, "--mfu", upper=1.0)
    gpus = int(_positive(gpus, "--gpus"))
    peak = _positive(peak_tflops, "--peak-tflops") * 1e12 if peak_tflops is not None else GPUS[gpu].peak_flops
    price = _positive(usd_per_gpu_hour, "--usd-per-gpu-hour") if usd_per_gpu_hour is not None else GPUS[gpu].usd_per_hour
    checkpoint_h = _positive(checkpoint_minutes, "--checkpoint-minutes") / 60
    restart_h = _positive(restart_minutes, "--restart-minutes") / 60
    rate = _positive(failures_per_1000_gpu_days, "--failures-per-1000-gpu-days")

    sources = {"params": "given", "tokens": "given"}
    if params is None:
        params, sources["params"] = tokens / CHINCHILLA_TOKENS_PER_PARAM, "chinchilla"
    if tokens is None:
        tokens, sources["tokens"] = params * CHINCHILLA_TOKENS_PER_PARAM, "chinchilla"

    flops = 6 * params * tokens
    days = gpu_days(flops, peak, mfu)
    cost = days * 24 * price
    failures = failure_budget(days * 24, gpus, checkpoint_h, restart_h, rate)
    failures["usd_lost"] = failures["hours_lost"] * gpus * price
    return {
        "inputs": {"params": params, "tokens": tokens, "params_from": sources["params"],
                   "tokens_from": sources["tokens"], "gpu": gpu, "peak_flops": peak, "mfu": mfu,
                   "usd_per_gpu_hour": price, "gpus": gpus, "checkpoint_minutes": checkpoint_h * 60,
                   "restart_minutes": restart_h * 60, "failures_per_1000_gpu_days": rate},
        "tokens_per_param": tokens / params,
        "chinchilla_tokens": params * CHINCHILLA_TOKENS_PER_PARAM,
        "flops": flops,
        "gpu_days": days,
        "gpu_hours": days * 24,
        "wall_days": days / gpus,
        "cost_usd": cost,
        "loss_estimate": chinchilla_loss(params, tokens),
        "failures": failures,
        "same_compute": _same_compute(flops, days, cost),
        "same_model": _same_model(params, peak, mfu, price),
    }


def _same_compute(flops: float, days: float, cost: float) -> list[dict]:
    """Models for the same training FLOPs at 1x, 2x, 5x, 10x Chinchilla's tokens per parameter.

    Same training cost; the smaller model is cheaper to serve and a little worse.
    """
    rows = []
    for times in (1, 2, 5, 10):
        ratio = CHINCHILLA_TOKENS_PER_PARAM * times
        n = math.sqrt(flops / (6 * ratio))
        rows.append({"tokens_per_param": ratio, "params": n, "tokens": n * ratio, "gpu_days": days,
                     "cost_usd": cost, "serve_flops_per_token": 2 * n, "loss_estimate": chinchilla_loss(n, n * ratio)})
    return rows


def _same_model(params: float, peak: float, mfu: float, price: float) -> list[dict]:
    """The same model trained on 1x, 2x, 5x, 10x its Chinchilla tokens: more cost, lower loss."""
    rows = []
    for times in (1, 2, 5, 10):
        d = params * CHINCHILLA_TOKENS_PER_PARAM * times
        days = gpu_days(6 * params * d, peak, mfu)
        rows.append({"tokens_per_param": CHINCHILLA_TOKENS_PER_PARAM * times, "params": params, "tokens": d,
                     "gpu_days": days, "cost_usd": days * 24 * price, "loss_estimate": chinchilla_loss(params, d)})
    return rows


# ------------------------------------------------------------------ one training run


@dataclass(frozen=True)
class RunEstimate:
    """What one configured training run costs: pre-flight's estimate item and finetune's dry run."""

    params: int  # the model's parameters (what it stores and trains)
    tokens: int  # every token of every window the run reads, padding included (it costs compute)
    flops: float  # 6 N D with N = the trainer's FLOPs per token / 6 (attention included)
    gpu: str
    gpu_assumed: bool  # no GPU kind given or visible: priced as the default GPU
    gpus: int
    mfu: float
    usd_per_gpu_hour: float
    gpu_hours: float
    wall_hours: float
    cost_usd: float
    expected_failures: float
    checkpoint_interval_hours: float  # Young's interval for this cluster's failure rate


def run_estimate(params: int, flops_per_token: float, tokens: int, gpu: str | None, gpus: int, mfu: float,
                 usd_per_gpu_hour: float | None = None) -> RunEstimate:
    """``plan`` for a run whose model and token count are known; ``gpu`` None prices the default GPU."""
    p = plan(params=flops_per_token / 6, tokens=tokens, gpu=gpu or DEFAULTS["gpu"], mfu=mfu,
             usd_per_gpu_hour=usd_per_gpu_hour, gpus=gpus)
    return RunEstimate(params=params, tokens=tokens, flops=p["flops"], gpu=gpu or DEFAULTS["gpu"],
                       gpu_assumed=gpu is None, gpus=gpus, mfu=mfu, usd_per_gpu_hour=p["inputs"]["usd_per_gpu_hour"],
                       gpu_hours=p["gpu_hours"], wall_hours=p["wall_days"] * 24, cost_usd=p["cost_usd"],
                       expected_failures=p["failures"]["expected_failures"],
                       checkpoint_interval_hours=p["failures"]["checkpoint_interval_hours"])


# ------------------------------------------------------------------ output

def render(p: dict) -> str:
    i, f = p["inputs"], p["failures"]
    lost = f["hours_lost_by_cause"]
    if i["tokens_from"] == "chinchilla":
        data = f"{count(i['tokens'])} tokens (Chinchilla-optimal: 20 per parameter)"
    else:
        data = (f"{count(i['tokens'])} tokens = {p['tokens_per_param']:.1f} per parameter"
                f" (Chinchilla-optimal for this model: {count(p['chinchilla_tokens'])})")
    model = f"{count(i['params'])} parameters" + (" (Chinchilla-optimal for the tokens)" if i["params_from"] == "chinchilla" else "")
    lines = [
        f"model           {model}",
        f"data            {data}",
        f"compute         6*N*D = {p['flops']:.3g} FLOPs",
        f"hardware        {i['gpu']} at {i['peak_flops'] / 1e12:g} TFLOP/s bf16 peak x MFU {i['mfu']:g}",
        f"GPU time        {p['gpu_days']:,.1f} GPU-days = {hours(p['wall_days'] * 24)} on {i['gpus']} GPUs",
        f"cost            {usd(p['cost_usd'])} at ${i['usd_per_gpu_hour']:g}/GPU-hour",
        f"failures        {f['expected_failures']:.2f} expected (1 per {1000 / i['failures_per_1000_gpu_days']:g} GPU-days);"
        f" cluster MTBF {hours(f['cluster_mtbf_hours'])}",
        f"checkpoints     every {hours(f['checkpoint_interval_hours'])} (Young: sqrt(2 x {i['checkpoint_minutes']:g} min write"
        f" x MTBF)), {f['checkpoints']} in all",
        f"time lost       {hours(f['hours_lost'])} = {hours(lost['checkpointing'])} writing checkpoints"
        f" + {hours(lost['recompute'])} recompute + {hours(lost['restarts'])} restarts"
        f" ({i['restart_minutes']:g} min each); {usd(f['usd_lost'])}",
        f"wall clock      {hours(f['wall_days_with_failures'] * 24)} including failures",
        "",
        "Same training compute, smaller model on more tokens (cheaper to serve, slightly higher loss):",
        _table(p["same_compute"], serve=True),
        "",
        "Same model, more tokens (costs more, lower loss; worth it when the model serves many tokens):",
        _table(p["same_model"], serve=False),
        "",
        "loss: Chinchilla's fitted law, for comparing rows only (it depends on data and tokenizer).",
    ]
    return "\n".join(lines)


def _table(rows: list[dict], serve: bool) -> str:
    head = f"  {'tokens/param':>12} {'params':>8} {'tokens':>8} {'GPU-days':>10} {'cost':>10} {'loss':>6}"
    out = [head + (f" {'serve FLOPs/token':>18}" if serve else "")]
    for r in rows:
        line = (f"  {r['tokens_per_param']:>12} {count(r['params']):>8} {count(r['tokens']):>8}"
                f" {r['gpu_days']:>10,.1f} {usd(r['cost_usd']):>10} {r['loss_estimate']:>6.3f}")
        out.append(line + (f" {count(r['serve_flops_per_token']):>18}" if serve else ""))
    return "\n".join(out)


# ------------------------------------------------------------------ CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", help="model parameters, e.g. 30B, 125M, 7e9 (default: Chinchilla-optimal for --tokens)")
    parser.add_argument("--tokens", help="training tokens, e.g. 600B, 1.5T (default: 20 per parameter)")
    parser.add_argument("--manifest", metavar="FILE", help="take the token count from a pipeline manifest.json")
    parser.add_argument("--gpu", default=DEFAULTS["gpu"], help=f"GPU type: {', '.join(GPUS)} (default {DEFAULTS['gpu']})")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak per GPU, for a GPU not in the table")
    parser.add_argument("--mfu", type=float, default=DEFAULTS["mfu"], help="model FLOPs utilization, 0-1 (default 0.4)")
    parser.add_argument("--usd-per-gpu-hour", type=float, help="price per GPU-hour (default: the GPU's rough list price; h100 $7)")
    parser.add_argument("--gpus", type=int, default=DEFAULTS["gpus"], help="GPUs in the cluster (default 512)")
    parser.add_argument("--checkpoint-minutes", type=float, default=DEFAULTS["checkpoint_minutes"],
                        help="time one checkpoint write stalls training (default 5)")
    parser.add_argument("--restart-minutes", type=float, default=DEFAULTS["restart_minutes"],
                        help="time to detect a failure and resume from a checkpoint (default 15)")
    parser.add_argument("--failures-per-1000-gpu-days", type=float, default=DEFAULTS["failures_per_1000_gpu_days"],
                        help="hardware failure rate (default 1)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")


def main(args: argparse.Namespace) -> int:
    if args.tokens is not None and args.manifest is not None:
        raise UserError("--tokens/--manifest: give one of them, not both")
    params = parse_size(args.params, "--params") if args.params is not None else None
    tokens = parse_size(args.tokens, "--tokens") if args.tokens is not None else None
    if args.manifest is not None:
        tokens = tokens_from_manifest(args.manifest)
    result = plan(params, tokens, gpu=args.gpu.lower(), mfu=args.mfu, usd_per_gpu_hour=args.usd_per_gpu_hour,
                  gpus=args.gpus, checkpoint_minutes=args.checkpoint_minutes, restart_minutes=args.restart_minutes,
                  failures_per_1000_gpu_days=args.failures_per_1000_gpu_days, peak_tflops=args.peak_tflops)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0
