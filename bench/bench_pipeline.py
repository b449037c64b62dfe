"""The whole pipeline against the two kernels it cannot avoid, on the same text.

1. ``tokenmill run`` (etl, dedup, tokenize, shards; the default config, so
   PII on and ``etl.preset: auto``) over a JSONL corpus, cold, in its own
   process: wall time (JVM start included) and each stage's wall time from
   the manifest.
2. The kernels, on the same machine and cores: ``ftfy.fix_text`` (default
   config) over every input text in ``cores`` processes, and the trained
   tokenizer's ``encode_batch_fast`` over the texts tokenize encoded (the
   ``deduped`` table), ``RAYON_NUM_THREADS=cores``.
3. The ratio of the run to the kernels, MB/s per core, and a digest of the
   outputs (row counts, dropped rows by reason, shard bytes) so that two
   versions of the code can be shown to write the same thing.
4. With ``--rounds N``: the run and the kernels again, the kernels first in
   every even round, and the median of the rounds' ratios (the machine's
   speed drifts by tens of percent within an hour, and a run measured
   before its kernels sees another machine than they do).

Corpora (``--corpus``):

* ``site-packages``: the ``.py`` files of this interpreter's site-packages
  (sorted paths; id = the path under site-packages, so ``auto`` picks the
  code rules), up to ``--mb``;
* ``machine``: man pages and /usr/share/doc (``bench/etl_corpus.py``);
* a folder of JSONL files or one JSONL file: its records up to ``--mb``.

    python -m bench.bench_pipeline --corpus site-packages --mb 300 --cores 2
    python -m bench.bench_pipeline --corpus machine --mb 200 --cores 2
    python -m bench.bench_pipeline --corpus machine --mb 200 --cores 2 --rounds 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import time
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("etl", "dedup", "tokenize", "shards")


# --- corpora ---------------------------------------------------------------------------------------

def site_packages_records(max_bytes: int) -> list[dict]:
    """``.py`` files of site-packages as {"id": relative path, "text": source}, sorted, up to max_bytes."""
    root = Path(sysconfig.get_paths()["purelib"])
    paths = sorted(p for p in root.rglob("*.py") if p.is_file() and not p.is_symlink())
    records, total = [], 0
    for path in paths:
        data = path.read_bytes()
        if b"\x00" in data or not data.strip():
            continue
        records.append({"id": str(path.relative_to(root)), "text": data.decode("utf-8", "replace")})
        total += len(data)
        if total >= max_bytes:
            break
    return records


def jsonl_records(path: Path, max_bytes: int) -> list[dict]:
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    records, total = [], 0
    for f in files:
        with open(f, encoding="utf-8") as lines:
            for line in lines:
                records.append(json.loads(line))
                total += len(records[-1]["text"].encode())
                if total >= max_bytes:
                    return records
    return records


def corpus_records(name: str, mb: float) -> list[dict]:
    max_bytes = int(mb * 1_000_000)
    if name == "site-packages":
        return site_packages_records(max_bytes)
    if name == "machine":
        from bench.etl_corpus import machine_docs

        return [{"id": f"doc-{i:07d}", "text": t} for i, t in enumerate(machine_docs(max_bytes))]
    return jsonl_records(Path(name), max_bytes)


# --- the pipeline ----------------------------------------------------------------------------------

def run_pipeline(inputs: Path, out: Path, cores: int, overrides: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable, "TOKENMILL_PROGRESS_S": "0",
           "TOKENMILL_SPARK_CORES": str(cores)}
    command = [sys.executable, "-m", "tokenmill.cli", "run", "--input", str(inputs), "--output", str(out)]
    for override in overrides:
        command += ["--set", override]
    started = time.perf_counter()
    with open(out.with_suffix(".log"), "w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"tokenmill run failed; see {out.with_suffix('.log')}")
    return {"wall_s": round(wall, 1)}


def manifest_figures(manifest: dict) -> dict:
    stages = manifest["stages"]
    figures = {"stage_wall_s": {s: round(stages[s]["wall_s"], 1) for s in STAGES if s in stages}}
    tokenize = stages["tokenize"]["extra"]
    figures["tokenizer_train_s"] = tokenize.get("tokenizer_train_s")
    figures["presets"] = stages["etl"]["extra"].get("presets")
    figures["tokens"] = tokenize["tokens"]
    return figures


def output_digest(out: Path, manifest: dict) -> dict:
    """What two versions must write alike: rows and drops per stage, and every shard file's bytes."""
    shards = hashlib.sha256()
    for path in sorted((out / "shards").rglob("*")):
        if path.is_file():
            shards.update(str(path.relative_to(out)).encode())
            shards.update(path.read_bytes())
    stages = {name: {"rows_in": rec["rows_in"], "rows_out": rec["rows_out"], "dropped": rec["dropped"]}
              for name, rec in manifest["stages"].items()}
    return {"stages": stages, "shards_sha256": shards.hexdigest()}


# --- the kernels -----------------------------------------------------------------------------------

def _fix_chunk(texts: list[str]) -> int:
    import ftfy

    return sum(len(ftfy.fix_text(t)) for t in texts)


def ftfy_kernel(texts: list[str], cores: int) -> float:
    """Seconds for ftfy.fix_text over every text in ``cores`` warm worker processes."""
    chunks = [texts[i:i + 200] for i in range(0, len(texts), 200)]
    with get_context("spawn").Pool(cores) as pool:
        pool.map(_fix_chunk, [["warm up: import ftfy"]] * cores)
        started = time.perf_counter()
        pool.map(_fix_chunk, chunks, chunksize=1)
        return time.perf_counter() - started


def encode_kernel(tokenizer_json: Path, texts: list[str], cores: int) -> float:
    """Seconds for encode_batch_fast over the texts in batches of 2000, in a fresh process."""
    from bench.bench_tokenize import raw

    return raw(str(tokenizer_json), texts, cores, "encode_batch_fast")


def deduped_texts(out: Path) -> list[str]:
    from deltalake import DeltaTable

    return DeltaTable(str(out / "tables" / "deduped")).to_pyarrow_table(columns=["text"]).column("text").to_pylist()


def kernels(records: list[dict], out: Path, cores: int) -> dict:
    """Both kernels on the run's texts: ftfy on the input, encode on the deduped table with its tokenizer."""
    ftfy_s = ftfy_kernel([r["text"] for r in records], cores)
    encode_s = encode_kernel(out / "tokenizer.json", deduped_texts(out), cores)
    return {"ftfy_s": round(ftfy_s, 1), "encode_s": round(encode_s, 1), "sum_s": round(ftfy_s + encode_s, 1)}


def more_rounds(args, records: list[dict], work: Path, first: dict) -> dict:
    """Rounds 2..N, the order flipped each round (kernels first in round 2, the run first
    in round 3, ...), so that the machine's drift does not favour one side of the ratio;
    the kernels use the first run's tokenizer and tables (every run's are the same)."""
    ratios = [first["ratio_to_kernels"]]
    rounds = [{"run_s": first["run"]["wall_s"], **first["kernels"]}]
    for r in range(1, args.rounds):
        out = work / f"out-{r}"
        if r % 2:
            measured = kernels(records, work / "out", args.cores)
            run_s = run_pipeline(work / "corpus", out, args.cores, args.set)["wall_s"]
        else:
            run_s = run_pipeline(work / "corpus", out, args.cores, args.set)["wall_s"]
            measured = kernels(records, work / "out", args.cores)
        same = output_digest(out, json.loads((out / "manifest.json").read_text())) == first["digest"]
        rounds.append({"run_s": run_s, **measured, "same_outputs": same})
        ratios.append(round(run_s / measured["sum_s"], 3))
    return {"each": rounds, "ratios": ratios, "median_ratio": statistics.median(ratios)}


# --- report ----------------------------------------------------------------------------------------

def table(report: dict) -> str:
    run, mb, cores = report["run"], report["mb"], report["cores"]
    kernels = report["kernels"]
    rows = [("whole run", run["wall_s"], mb / run["wall_s"] / cores)]
    rows += [(f"  {s}", w, None) for s, w in report["stage_wall_s"].items()]
    rows += [("    of which tokenizer training", report["tokenizer_train_s"], None)]
    rows += [("kernel: ftfy.fix_text", kernels["ftfy_s"], None),
             ("kernel: encode_batch_fast", kernels["encode_s"], None),
             ("kernels together", kernels["sum_s"], mb / kernels["sum_s"] / cores)]
    lines = ["| step | wall s | MB/s per core |", "|---|---:|---:|"]
    for name, wall, rate in rows:
        lines.append(f"| {name} | {'' if wall is None else f'{wall:.1f}'} | {'' if rate is None else f'{rate:.2f}'} |")
    lines.append(f"\nrun / kernels: {report['ratio_to_kernels']:.2f}x")
    if "rounds" in report:
        lines.append(f"rounds: {report['rounds']['ratios']}, median {report['rounds']['median_ratio']:.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="site-packages", help="site-packages, machine, or a JSONL file/folder")
    parser.add_argument("--mb", type=float, default=300)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--files", type=int, default=16, help="JSONL files the corpus is written into")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a run config override, e.g. etl.preset=code")
    parser.add_argument("--skip-kernels", action="store_true", help="the run and its digest only")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run and kernels this many times, their order flipped each round; the median ratio")
    parser.add_argument("--json", help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    from bench.etl_corpus import print_result, work_folder, write_records

    with work_folder("bench-pipeline-", args.keep) as work:
        records = corpus_records(args.corpus, args.mb)
        n_bytes = write_records(records, work / "corpus", args.files)
        text_mb = sum(len(r["text"].encode()) for r in records) / 1e6
        report = {"corpus": args.corpus, "docs": len(records), "mb": round(text_mb, 1),
                  "jsonl_mb": round(n_bytes / 1e6, 1), "cores": args.cores, "overrides": args.set,
                  "uptime_before": os.getloadavg()}
        out = work / "out"
        report["run"] = run_pipeline(work / "corpus", out, args.cores, args.set)
        report["uptime_after_run"] = os.getloadavg()
        manifest = json.loads((out / "manifest.json").read_text())
        report.update(manifest_figures(manifest))
        report["digest"] = output_digest(out, manifest)
        if not args.skip_kernels:
            report["kernels"] = kernels(records, out, args.cores)
            report["ratio_to_kernels"] = round(report["run"]["wall_s"] / report["kernels"]["sum_s"], 3)
            if args.rounds > 1:
                report["rounds"] = more_rounds(args, records, work, report)
        report["mb_per_s_per_core"] = round(text_mb / report["run"]["wall_s"] / args.cores, 3)
        report["uptime_after"] = os.getloadavg()
        print_result(report, args.json)
        if "kernels" in report:
            print(table(report))


if __name__ == "__main__":
    main()
