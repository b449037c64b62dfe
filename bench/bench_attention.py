"""Attention paths on CPU: forward+backward tokens/s, peak RSS, ALiBi bias memory.

One process per measurement (so peak RSS is its own), ``--threads`` torch
threads (default 2), random tokens, loss = ``lm_loss``, no optimizer step.
Presets: tiny (d_model 128, 2 layers, 4 heads, seq 256, vocab 512) and the
125M shape of configs/train_125m.yaml (d_model 768, 12 layers, 12 heads,
vocab 50304, seq --seq-len, default 2048). Variants:

- alibi:      ALiBi, causal (today on CPU: SDPA with a mask built per batch;
              before: the stored (1, H, T, T) bias buffer as the mask)
- rope:       RoPE, causal (SDPA's causal kernel, no mask)
- alibi+doc:  ALiBi with the document mask (EOS every --doc-len tokens);
              not in code older than the document mask

Memory of the ALiBi bias: the model's ``alibi`` buffer as measured, against
a stored dense fp32 bias, H * T * T * 4 bytes. ``step peak`` is the
process's peak RSS (VmHWM) after the timed steps, ``base`` the RSS once the
model is built; their difference is what forward+backward add.

    python bench/bench_attention.py [--steps 5] [--seq-len 2048] [--batch 1] [--json]
    # before the dense-bias removal: a worktree of the previous commit
    git worktree add /tmp/tm_before 8188c28
    python bench/bench_attention.py --code-dir /tmp/tm_before
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PRESETS = {
    "tiny": dict(d_model=128, n_layers=2, n_heads=4, vocab_size=512, seq_len=256),
    "125m": dict(d_model=768, n_layers=12, n_heads=12, vocab_size=50304, seq_len=2048),
}
VARIANTS = ("alibi", "rope", "alibi+doc")
MiB = 1 << 20


def rss_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def model_config(ModelConfig, shape: dict, variant: str):
    """A ModelConfig for the variant, or None where this code has no such option."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    values = dict(shape, norm="layernorm", mlp="gelu", tie_embeddings=True,
                  position="rope" if variant == "rope" else "alibi")
    if variant == "alibi+doc":
        if "attention" not in fields:  # code before the document mask
            return None
        from tokenmill.train.config import AttentionConfig

        values["attention"] = AttentionConfig(doc_mask=True)
    return ModelConfig(**values)


def measure(preset: str, variant: str, args) -> dict:
    """One (preset, variant) in this process: tokens/s and memory."""
    if args.code_dir:
        sys.path.insert(0, str(Path(args.code_dir).resolve()))
    import torch

    import tokenmill
    from tokenmill.train.config import ModelConfig
    from tokenmill.train.model import GPT, lm_loss

    torch.set_num_threads(args.threads)
    shape = dict(PRESETS[preset])
    if preset != "tiny" and args.seq_len:
        shape["seq_len"] = args.seq_len
    T, H = shape["seq_len"], shape["n_heads"]
    row = {"preset": preset, "variant": variant, "seq_len": T, "batch": args.batch,
           "code": str(Path(tokenmill.__file__).parents[1]), "threads": args.threads}
    cfg = model_config(ModelConfig, shape, variant)
    if cfg is None:
        return {**row, "skipped": "no document mask in this code"}
    torch.manual_seed(0)
    model = GPT(cfg)
    alibi = dict(model.named_buffers()).get("alibi")
    row["alibi_buffer_bytes"] = 0 if alibi is None else alibi.numel() * alibi.element_size()
    row["dense_bias_bytes"] = H * T * T * 4
    tokens = torch.randint(1, cfg.vocab_size, (args.batch, T))
    doc_len = args.doc_len or max(2, T // 4)
    tokens[:, doc_len - 1::doc_len] = 0  # EOS (id 0) ends a document every doc_len tokens
    row["base_rss"] = rss_bytes("VmRSS")

    def step() -> None:
        if variant == "alibi+doc":
            from tokenmill.train.attention import document_layout

            logits = model(tokens, document_layout(tokens, eos_id=0))
        else:
            logits = model(tokens)  # the old forward takes only tokens
        lm_loss(logits, tokens).backward()
        model.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps
    return {**row, "step_s": seconds, "tok_s": args.batch * T / seconds, "peak_rss": rss_bytes("VmHWM")}


def run_one(preset: str, variant: str, args) -> dict:
    """measure() in a fresh process, so each peak RSS is its own."""
    cmd = [sys.executable, __file__, "--one", preset, variant, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads), "--batch", str(args.batch),
           "--seq-len", str(args.seq_len), "--doc-len", str(args.doc_len)]
    if args.code_dir:
        cmd += ["--code-dir", args.code_dir]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"preset": preset, "variant": variant, "error": tail}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = [f"code: {rows[0].get('code', '?')}  threads: {rows[0].get('threads', '?')}  "
             "dense fp32 ALiBi bias = H*T*T*4 bytes",
             f"{'preset':<6} {'variant':<10} {'T':>5} {'B':>2} {'tok/s':>9} {'s/step':>7} "
             f"{'base MiB':>8} {'step peak MiB':>13} {'alibi buffer':>12} {'dense bias MiB':>14}"]
    for r in rows:
        head = f"{r['preset']:<6} {r['variant']:<10}"
        if "error" in r or "skipped" in r:
            lines.append(f"{head} {r.get('error') or r['skipped']}")
            continue
        buf = r["alibi_buffer_bytes"]
        buffer = f"{buf / MiB:.1f} MiB" if buf >= MiB else f"{buf} B"
        lines.append(f"{head} {r['seq_len']:>5} {r['batch']:>2} {r['tok_s']:>9.0f} {r['step_s']:>7.3f} "
                     f"{r['base_rss'] / MiB:>8.0f} {r['peak_rss'] / MiB:>13.0f} {buffer:>12} "
                     f"{r['dense_bias_bytes'] / MiB:>14.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1, help="micro-batch (sequences per step)")
    parser.add_argument("--seq-len", type=int, default=2048, help="sequence length of the 125m preset")
    parser.add_argument("--doc-len", type=int, default=0, help="tokens per document for alibi+doc; 0: T/4")
    parser.add_argument("--presets", default="tiny,125m")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--code-dir", default="", help="put DIR first on sys.path (an older checkout)")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.add_argument("--one", nargs=2, metavar=("PRESET", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args)))
        return
    rows = [run_one(p, v, args) for p in args.presets.split(",") for v in args.variants.split(",")]
    print(table(rows))
    if args.json:
        print(json.dumps({"rows": rows, "load_average": os.getloadavg()[0]}, indent=2))


if __name__ == "__main__":
    main()
