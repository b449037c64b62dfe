"""Import of a Hugging Face Llama checkpoint into the FSDP2-sharded model, CPU.

Makes a random ~1.1B-parameter Llama checkpoint once (hidden 2048, 16
layers, 32 heads, 8 kv heads, intermediate 8192, vocab 32000, untied,
bfloat16, sharded by ``save_pretrained(max_shard_size="1GB")``) and caches
it in --workdir. Then, on 1 and on 2 gloo ranks (spawned processes), each
rank builds the sharded empty model (``build_model``) and fills it from the
checkpoint (``load_into``: each rank reads only its rows). Reported per
rank: RSS after start-up, RSS after build_model (its fp32 shard is allocated
there), peak RSS (VmHWM of /proc/self/status, whole life of the rank),
``ru_maxrss`` (on Linux it keeps the forking parent's peak across exec, so
it can read high when the parent is big), the largest file-backed and
anonymous RSS seen during the load (file*: memory-mapped safetensors pages
and libraries, which the kernel can drop; anon*: tensors; polled every
10 ms), and wall time of the load
(slowest rank, between barriers); against the full model's size in fp32
and in bf16, and the fp32 shard one rank owns.

    python bench/bench_import.py [--workdir /tmp/bench_import] [--ranks 1,2] [--json]
    python bench/bench_import.py --hidden 256 --layers 2    # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))  # train_fixture: test scaffolding
GiB = 1 << 30


def checkpoint_shape(args) -> dict:
    """transformers LlamaConfig fields of the benchmark checkpoint."""
    hidden = args.hidden
    heads = max(1, hidden // 64)  # head dim 64, as 2048 / 32
    return dict(
        hidden_size=hidden, num_hidden_layers=args.layers, num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 4), intermediate_size=4 * hidden,
        max_position_embeddings=2048, rope_theta=500000.0, rope_scaling=None,
        tie_word_embeddings=False,
    )


def make_checkpoint(args) -> Path:
    """The random checkpoint, made once per shape and kept in --workdir."""
    from train_fixture import write_hf_model

    shape = checkpoint_shape(args)
    out = Path(args.workdir) / f"llama_h{args.hidden}_l{args.layers}_v{args.vocab}_{args.max_shard_size}"
    if (out / "config.json").is_file():
        return out
    start = time.perf_counter()
    tmp = out.with_name(out.name + ".tmp")
    write_hf_model(tmp, "llama", vocab_size=args.vocab, dtype="bfloat16", max_shard_size=args.max_shard_size,
                   **shape)
    tmp.rename(out)
    print(f"made {out} in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    return out


def rss_bytes(field: str = "VmRSS") -> int:
    """A memory line of /proc/self/status in bytes (VmRSS, RssFile, RssAnon)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class PeakSampler:
    """Largest RssAnon and RssFile seen while the block runs (polled every 10 ms)."""

    def __enter__(self):
        import threading

        self.peak = {"RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while True:
            for field in self.peak:
                self.peak[field] = max(self.peak[field], rss_bytes(field))
            if self._stop.wait(0.01):
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def rank_main(rank: int, world: int, port: int, ckpt_dir: str, threads: int, out_dir: str) -> None:
    """One rank: build the sharded model, load the checkpoint, write its figures."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    import torch.distributed as dist

    from tokenmill.train.config import AttentionConfig
    from tokenmill.train.distributed import init_distributed
    from tokenmill.train.parallelize import build_model
    from tokenmill.train.hf_adapter import family_of, model_config_from_hf
    from tokenmill.train.hf_io import open_checkpoint, load_into

    d = init_distributed("cpu")
    rss_start = rss_bytes()
    ckpt = open_checkpoint(ckpt_dir)
    cfg = model_config_from_hf(ckpt.config, seq_len=2048, attention=AttentionConfig())
    model = build_model(cfg, d.device)
    rss_built = rss_bytes()
    dist.barrier()
    start = time.perf_counter()
    with PeakSampler() as sampler:
        load_into(model, ckpt, family_of(ckpt.config))
    dist.barrier()
    seconds = time.perf_counter() - start
    figures = {
        "rank": d.rank, "load_s": seconds, "rss_start": rss_start, "rss_after_build": rss_built,
        "rss_peak": rss_bytes("VmHWM"),
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_file_peak_in_load": sampler.peak["RssFile"], "rss_anon_peak_in_load": sampler.peak["RssAnon"],
        "params": sum(p.numel() for p in model.parameters()),
    }
    Path(out_dir, f"rank{d.rank}.json").write_text(json.dumps(figures))
    dist.destroy_process_group()


def run_ranks(ckpt: Path, world: int, threads: int, workdir: Path) -> list[dict]:
    from tokenmill.train.distributed import free_port

    out_dir = workdir / f"figures_{world}"
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("rank*.json"):
        old.unlink()
    mp.spawn(rank_main, args=(world, free_port(), str(ckpt), threads, str(out_dir)), nprocs=world, join=True)
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(world)]


def table(rows: list[dict], n_params: int) -> str:
    full32, full16 = n_params * 4, n_params * 2
    lines = [f"model: {n_params / 1e9:.3f}B parameters, full fp32 {full32 / GiB:.2f} GiB, "
             f"full bf16 {full16 / GiB:.2f} GiB (RSS in GiB)",
             f"{'ranks':>5} {'rank':>4} {'load s':>7} {'start':>6} {'built':>6} {'peak':>6} "
             f"{'maxrss':>6} {'file*':>6} {'anon*':>6} {'fp32 shard':>10} "
             f"{'peak/full fp32':>14} {'peak/full bf16':>14}"]
    for r in rows:
        shard = full32 / r["world"]
        gib = " ".join(f"{r[k] / GiB:>6.2f}" for k in
                       ("rss_start", "rss_after_build", "rss_peak", "ru_maxrss", "rss_file_peak_in_load",
                        "rss_anon_peak_in_load"))
        lines.append(f"{r['world']:>5} {r['rank']:>4} {r['load_s']:>7.2f} {gib} {shard / GiB:>10.2f} "
                     f"{r['rss_peak'] / full32:>14.2f} {r['rss_peak'] / full16:>14.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/bench_import")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--max-shard-size", default="1GB", help="save_pretrained's max_shard_size")
    parser.add_argument("--ranks", default="1,2", help="comma-separated world sizes to run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt = make_checkpoint(args)
    rows = []
    for world in (int(w) for w in args.ranks.split(",")):
        for r in run_ranks(ckpt, world, args.threads, workdir):
            rows.append({**r, "world": world})
    n_params = rows[0]["params"]
    print(table(rows, n_params))
    if args.json:
        shards = sorted(p.name for p in ckpt.glob("*.safetensors"))
        print(json.dumps({"checkpoint": str(ckpt), "safetensors_files": shards, "params": n_params,
                          "full_fp32_bytes": n_params * 4, "full_bf16_bytes": n_params * 2,
                          "ranks": rows, "load_average": os.getloadavg()[0]}, indent=2))


if __name__ == "__main__":
    main()
