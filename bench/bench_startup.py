"""Process start-up costs that every training rank and Spark Python worker pays.

Each case runs in a fresh interpreter, ``--runs`` times; the table gives the
median wall and CPU seconds.

- streaming: ``from streaming import StreamingDataset`` plain, and after
  ``import tokenmill`` (which defers streaming's dataset recipes).
- PII worker: building the default redactor in a fresh process as a Spark
  worker does, and the same after presidio was imported the plain way (its
  NLP engines pull in torch and transformers).

    python -m bench.bench_startup [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CASES = {
    "streaming, plain import": "from streaming import StreamingDataset",
    "streaming, after import tokenmill": "import tokenmill\nfrom streaming import StreamingDataset",
    "PII redactor, presidio imported plainly first": (
        "import presidio_analyzer.predefined_recognizers\n"
        "from tokenmill.config.etl import PiiConfig\nfrom tokenmill.etl.pii import redactor\n"
        "redactor(PiiConfig()).redact('mail bob@example.com')"),
    "PII redactor, as a tokenmill worker builds it": (
        "from tokenmill.config.etl import PiiConfig\nfrom tokenmill.etl.pii import redactor\n"
        "redactor(PiiConfig()).redact('mail bob@example.com')"),
}


def run_once(code: str) -> tuple[float, float]:
    """(wall s, CPU s of the child) for one fresh interpreter running ``code``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    for name, code in CASES.items():
        runs = [run_once(code) for _ in range(args.runs)]
        results[name] = {"wall_s": round(statistics.median(w for w, _ in runs), 2),
                         "cpu_s": round(statistics.median(c for _, c in runs), 2)}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'case':<48} {'wall s':>8} {'CPU s':>8}   (median of {args.runs})")
    for name, r in results.items():
        print(f"{name:<48} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f}")


if __name__ == "__main__":
    main()
