"""Training throughput and MFU on one CUDA GPU, as the trainer runs it.

Each case builds the model with the trainer's own ``build_model`` (FSDP2 on a
1-rank nccl group, bf16 compute with fp32 master weights and fp32 gradient
reduction), its AdamW (``build_optimizer``, fused) and its step (micro-batches
with gradient sync on the last, grad-norm clipping). Weights are random.
After --warmup steps, --steps timed steps between ``torch.cuda.synchronize``.

Cases: the 125m, 350m and 1b presets (model, micro_batch_size and
activation_checkpointing of configs/train_*.yaml; vocab 50304, seq 2048),
the 1b preset with ``attention.doc_mask`` (an EOS every --doc-len tokens),
and a Llama-3-8B-shaped model (hidden 4096, 32 heads, 8 kv heads, FFN 14336,
vocab 128256, rope theta 500000, RMSNorm, SwiGLU, untied) cut to the most
layers of --llama-layers that fit (tried from the largest; an OOM is
recorded and the next smaller tried), each with compile on and off.
MFU = tokens/s * flops_per_token / peak bf16 dense FLOP/s (runlog.peak_flops).
Cases that would start after --budget-s seconds are listed as not run.

    python bench/bench_gpu.py [--steps 10] [--only 1b,125m] [--compile on,off] [--json]
    python bench/bench_gpu.py --plan     # the cases and their FLOPs, no GPU needed

Progress goes to stderr, one JSON line per case; TORCH_LOGS=graph_breaks,recompiles
shows whether compile kept each block in one graph.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import time
from pathlib import Path

import torch
import yaml

from tokenmill.train.config import AttentionConfig, ModelConfig, OptimConfig
from tokenmill.train.model import count_params, flops_per_token

REPO = Path(__file__).resolve().parents[1]
VOCAB, SEQ_LEN = 50304, 2048
GiB = 1 << 30


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    cfg: ModelConfig
    micro_batch: int
    activation_checkpointing: bool
    compile: bool


def preset(name: str) -> tuple[ModelConfig, int, bool]:
    """ModelConfig, micro-batch and activation checkpointing of configs/train_<name>.yaml."""
    raw = yaml.safe_load((REPO / "configs" / f"train_{name}.yaml").read_text())
    model = dict(raw["model"])
    if "attention" in model:
        model["attention"] = AttentionConfig(**model["attention"])
    cfg = ModelConfig(**{**model, "vocab_size": VOCAB, "seq_len": SEQ_LEN})
    return cfg, raw["micro_batch_size"], bool(raw["activation_checkpointing"])


def llama3_8b_shape(n_layers: int) -> ModelConfig:
    return ModelConfig(d_model=4096, n_layers=n_layers, n_heads=32, n_kv_heads=8, d_ff=14336,
                       vocab_size=128256, seq_len=SEQ_LEN, rope_theta=500000.0, norm="rmsnorm",
                       norm_eps=1e-5, position="rope", mlp="swiglu", tie_embeddings=False)


def cases(only: set[str], compiles: list[bool], llama_layers: list[int], llama_batch: int) -> list[Case]:
    """In the order they run: the 1b goal first, the long compiles last."""
    out = []
    for name in ("1b", "125m", "350m", "1b-doc"):
        if name in only:
            cfg, mb, ac = preset(name.split("-")[0])
            if name.endswith("-doc"):
                cfg = dataclasses.replace(cfg, attention=AttentionConfig(doc_mask=True))
            out += [Case(name, cfg, mb, ac, c) for c in compiles]
    if "llama8b" in only:
        for layers in sorted(llama_layers, reverse=True):
            out += [Case(f"llama8b-L{layers}", llama3_8b_shape(layers), llama_batch, True, c) for c in compiles]
    return out


def state_bytes(cfg: ModelConfig) -> int:
    """fp32 weights + fp32 grads + two fp32 AdamW moments: 16 bytes per parameter."""
    return 16 * count_params(cfg)


def fast_init(model: torch.nn.Module) -> None:
    """Random weights drawn on the GPU, shard by shard (init_weights draws on CPU: slow at 8B)."""
    with torch.no_grad():
        for p in model.parameters():
            local = p.to_local() if hasattr(p, "to_local") else p
            if p.dim() >= 2:
                local.normal_(0.0, 0.02)
            else:
                local.fill_(1.0)


def run_case(case: Case, d, args) -> dict:
    """tokens/s, MFU and peak memory of one case; OOM is a result, not a crash."""
    from tokenmill.train.attention import document_layout
    from tokenmill.train.parallelize import build_model
    from tokenmill.train.optim import build_optimizer
    from tokenmill.train.model import lm_loss

    cuda = d.device.type == "cuda"
    B, T = case.micro_batch, case.cfg.seq_len
    model = build_model(case.cfg, d.device, bf16=cuda, activation_checkpointing=case.activation_checkpointing,
                        compile=case.compile)
    fast_init(model)
    optimizer = build_optimizer(model, OptimConfig(), fused=cuda)
    tokens = torch.randint(1, case.cfg.vocab_size, (args.accum, B, T), device=d.device)
    if case.cfg.attention.doc_mask:
        tokens[..., args.doc_len - 1::args.doc_len] = 0  # EOS (id 0) every doc_len tokens

    def step() -> None:
        for i in range(args.accum):
            model.set_requires_gradient_sync(i == args.accum - 1)
            docs = document_layout(tokens[i], eos_id=0) if case.cfg.attention.doc_mask else None
            (lm_loss(model(tokens[i], docs), tokens[i]) / args.accum).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)  # as the trainer
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(cuda)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(cuda)
    seconds = (time.perf_counter() - start) / args.steps
    tok_s = args.accum * B * T / seconds
    return {"tok_s": tok_s, "step_s": seconds, "warmup_s": warmup_s,
            "peak_mem_gib": torch.cuda.max_memory_allocated() / GiB if cuda else None,
            "mfu": tok_s * flops_per_token(case.cfg) / args.peak_flops if args.peak_flops else None}


def sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def measure_all(todo: list[Case], d, args) -> list[dict]:
    rows, llama_fits, begin = [], set(), time.perf_counter()
    total = torch.cuda.mem_get_info()[1] if d.device.type == "cuda" else None
    for case in todo:
        llama = case.name.startswith("llama8b")
        if llama and case.compile in llama_fits:
            continue  # a larger cut of the Llama shape already fits with this compile setting
        row = {"case": case.name, "compile": case.compile, "ac": case.activation_checkpointing,
               "micro_batch": case.micro_batch, "seq_len": case.cfg.seq_len, "accum": args.accum,
               "params": count_params(case.cfg)}
        if time.perf_counter() - begin > args.budget_s:
            row["result"] = "not run (time budget)"
        elif total is not None and state_bytes(case.cfg) > total:
            row["result"] = (f"skipped: weights, grads and AdamW need {state_bytes(case.cfg) / GiB:.0f} GiB "
                             f"> {total / GiB:.0f} GiB")
        else:
            row.update(try_case(case, d, args))
            if llama and row["result"] == "ok":
                llama_fits.add(case.compile)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def try_case(case: Case, d, args) -> dict:
    """run_case with a clean slate before and memory given back after; OOM is a result."""
    torch._dynamo.reset()  # every case recompiles the same Block.forward: stay under the recompile limit
    cuda = d.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        result = {**run_case(case, d, args), "result": "ok"}
    except Exception as exc:  # an OOM is a figure; any other error goes in its row too
        first = (str(exc).splitlines() or [""])[0][:120]
        result = {"result": "OOM" if is_oom(exc) else f"error: {type(exc).__name__}: {first}"}
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def table(rows: list[dict], device_name: str, peak: float | None) -> str:
    peak_text = f"{peak / 1e12:.0f} TFLOP/s bf16 dense" if peak else "unknown peak (give --peak-tflops)"
    lines = [f"{device_name}, {peak_text}, seq {rows[0]['seq_len'] if rows else SEQ_LEN}, "
             f"{rows[0]['accum'] if rows else '?'} micro-batches per optimizer step",
             f"{'case':<14} {'compile':>7} {'AC':>3} {'B':>2} {'params':>7} {'tok/s':>9} {'MFU':>6} "
             f"{'s/step':>7} {'warmup s':>8} {'peak GiB':>8}  result"]
    for r in rows:
        head = (f"{r['case']:<14} {('on' if r['compile'] else 'off'):>7} {('on' if r['ac'] else 'off'):>3} "
                f"{r['micro_batch']:>2} {r['params'] / 1e9:>6.2f}B")
        if r["result"] != "ok":
            lines.append(f"{head} {'':>9} {'':>6} {'':>7} {'':>8} {'':>8}  {r['result']}")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        mem = f"{r['peak_mem_gib']:.1f}" if r["peak_mem_gib"] is not None else "n/a"
        lines.append(f"{head} {r['tok_s']:>9.0f} {mfu:>6} {r['step_s']:>7.3f} {r['warmup_s']:>8.1f} {mem:>8}  ok")
    return "\n".join(lines)


def plan(todo: list[Case]) -> str:
    lines = [f"{'case':<14} {'compile':>7} {'params':>8} {'GFLOP/token':>11} {'states GiB':>10}"]
    for c in todo:
        lines.append(f"{c.name:<14} {('on' if c.compile else 'off'):>7} {count_params(c.cfg) / 1e9:>7.3f}B "
                     f"{flops_per_token(c.cfg) / 1e9:>11.2f} {state_bytes(c.cfg) / GiB:>10.1f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per case")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--accum", type=int, default=2, help="micro-batches per optimizer step")
    parser.add_argument("--only", default="1b,125m,350m,1b-doc,llama8b")
    parser.add_argument("--compile", default="on,off", help="on, off or on,off")
    parser.add_argument("--llama-layers", default="32,24,16,8", help="cuts of the Llama-3-8B shape to try")
    parser.add_argument("--llama-batch", type=int, default=2, help="micro-batch of the Llama shape")
    parser.add_argument("--doc-len", type=int, default=512, help="tokens per document for 1b-doc")
    parser.add_argument("--budget-s", type=float, default=420, help="start no case after this many seconds")
    parser.add_argument("--peak-tflops", type=float, default=0, help="override the device's bf16 peak")
    parser.add_argument("--plan", action="store_true", help="print the cases and their FLOPs, then exit")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="run the same loop on CPU with a tiny model: checks the script, figures mean nothing")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    compiles = [{"on": True, "off": False}[c] for c in args.compile.split(",")]
    todo = cases(set(args.only.split(",")), compiles, [int(n) for n in args.llama_layers.split(",")],
                 args.llama_batch)
    if args.plan:
        print(plan(todo))
        return 0
    if args.cpu_smoke:
        tiny = ModelConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=256, seq_len=128)
        doc = dataclasses.replace(tiny, attention=AttentionConfig(doc_mask=True))
        todo = [Case(n, cfg, 2, ac, c) for n, cfg, ac in (("tiny", tiny, False), ("tiny-doc-ac", doc, True))
                for c in compiles]
    elif not torch.cuda.is_available():
        print("bench_gpu: no CUDA device visible (torch.cuda.is_available() is False); run it on a GPU machine",
              file=sys.stderr)
        return 2
    from tokenmill.train.distributed import init_distributed
    from tokenmill.train.runlog import peak_flops

    d = init_distributed("cpu" if args.cpu_smoke else "cuda")
    name = torch.cuda.get_device_name() if d.device.type == "cuda" else "cpu (smoke run, figures mean nothing)"
    args.peak_flops = args.peak_tflops * 1e12 or peak_flops(name)
    rows = measure_all(todo, d, args)
    print(table(rows, name, args.peak_flops))
    if args.json:
        print(json.dumps({"device": name, "peak_flops": args.peak_flops, "torch": torch.__version__,
                          "rows": rows}, indent=2))
    torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
