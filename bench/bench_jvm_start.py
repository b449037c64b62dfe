"""A local Spark session's start with and without the class-data archive (tokenmill jvm-archive).

Each case in a fresh Python process, the cases alternated round by round (the
machine's speed drifts): the session, its first job, a second job, and the
first job that starts Python workers (mapInArrow). Needs the archive built
first (``tokenmill jvm-archive``).

    python -m bench.bench_jvm_start --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CASE = """
import json, time
started = time.time()
from tokenmill.spark import get_spark
spark = get_spark("bench-jvm-start", cores=2)
times = {"session_s": time.time() - started}
def timed(name, job):
    t = time.time(); job(); times[name] = time.time() - t
timed("first_job_s", lambda: spark.range(1000).count())
timed("second_job_s", lambda: spark.range(1000).count())
def same(batches):
    yield from batches
timed("first_python_job_s", lambda: spark.range(0, 1000, 1, 2).mapInArrow(same, "id long").count())
print(json.dumps({k: round(v, 2) for k, v in times.items()}))
"""


def run_case(archive: bool) -> dict:
    env = {**os.environ, "TOKENMILL_JVM_ARCHIVE": "on" if archive else "off"}
    out = subprocess.run([sys.executable, "-c", CASE], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from tokenmill import jvm_archive

    archive = jvm_archive.complete_archive()
    if archive is None:
        raise SystemExit("no complete class-data archive: run `tokenmill jvm-archive` first")
    runs: dict[str, list[dict]] = {"archive": [], "no_archive": []}
    for r in range(args.rounds):
        for case in (("archive", "no_archive") if r % 2 == 0 else ("no_archive", "archive")):
            runs[case].append(run_case(case == "archive"))
    report = {"archive": str(archive), "archive_mb": round(archive.stat().st_size / 1e6), "runs": runs,
              "median": {case: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for case, rs in runs.items()}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
