"""The whole pipeline on Spark Connect and on a standalone cluster equals the classic run.

A slice of the sample corpus (every input format) goes through every stage
three ways, at once: in this process on the classic local session, through
``tokenmill run --remote local[2]`` (a Spark Connect server, no SparkContext
on the client) and through ``tokenmill run --master spark://...`` on a
standalone master with two worker processes (executors in their own JVMs
and Python workers). Every table must hold the same rows and every shard
file the same bytes. One run per kind serves all the tests here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tokenmill.config import load_run_config
from tokenmill.pipeline import STAGES, run_stages

ROOT = Path(__file__).resolve().parents[1]
SLICE = ["web/part-00000.jsonl", "news/part-00000.jsonl.gz", "forum/part-00000.jsonl.zst",
         "books/part-00000.parquet", "code/ledger-tools"]
# PII is off: presidio's start in every Python worker of three sessions would
# dominate this file's time, and test_etl_pii covers it; every other step runs.
CONFIG = """\
etl:
  pii: {enabled: false}
dedup: {num_perm: 64}
tokenize: {seq_len: 64, vocab_size: 400, pack_groups: 3}
shards: {partitions: 2, size_limit: 65536, quality_window: 200}
"""
RUN_TIMEOUT_S = 1500

pytestmark = pytest.mark.timeout(2 * RUN_TIMEOUT_S)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[list[str], Path]:
    from tokenmill.sample.corpus import write_sample

    root = tmp_path_factory.mktemp("cluster-corpus")
    write_sample(root / "raw", n_docs=400)
    config = root / "run.yaml"
    config.write_text(CONFIG)
    return [f"file://{root / 'raw' / name}" for name in SLICE], config


def _cli_env(**extra) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(ROOT), PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               TOKENMILL_PROGRESS_S="0", SPARK_LOCAL_IP="127.0.0.1", **extra)
    for name in ("SPARK_REMOTE", "MASTER", "TOKENMILL_SPARK_MASTER"):
        env.pop(name, None)
    return env


class CliRun:
    """``tokenmill run`` in a subprocess of its own process group, started now, awaited later."""

    def __init__(self, where: list[str], corpus, out: Path, **env):
        inputs, config = corpus
        args = [a for path in inputs for a in ("--input", path)]
        command = [sys.executable, "-m", "tokenmill.cli", "run", *args, "--output", f"file://{out}",
                   "--config", str(config), *where]
        self.where, self.out, self.log = where, out, out.with_suffix(".log")
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=_cli_env(**env),
                                         cwd=out.parent, start_new_session=True)

    def finish(self) -> Path:
        code = self.proc.wait(timeout=RUN_TIMEOUT_S)
        assert code == 0, f"{' '.join(self.where)} run failed:\n" + self.log.read_text()[-4000:]
        return self.out

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="session")
def other_runs(corpus, tmp_path_factory):
    """The Spark Connect run and the standalone cluster's run, started together.

    Started before the classic run (which then runs in this process): small
    Spark jobs leave cores idle (JVM starts, driver-side work), so the three
    runs overlap well on two cores.
    """
    from tokenmill import jvm_archive
    from tokenmill.standalone import local_cluster

    logs = tmp_path_factory.mktemp("standalone")
    # A cluster keeps Spark's 200 shuffle partitions unless told; 4 keeps this small run quick.
    # The master, workers and executors get the quick-start JVM options the local driver has
    # (conftest); the executors map the class archive too, as local_cluster's master and
    # workers do: their class path is the driver's. Given as --conf: a SPARK_CONF_DIR would go
    # first on the driver's class path, where the JVM then maps no class archive.
    java = os.environ.get("TOKENMILL_JAVA_OPTIONS", "")
    executor_java = " ".join([java, *jvm_archive.java_options()]).strip()
    conf = ["--conf", "spark.sql.shuffle.partitions=4", "--conf", "spark.executor.memory=1g",
            "--conf", f"spark.executor.extraJavaOptions={executor_java}"]
    with local_cluster(logs, workers=2, cores=1, memory="1g", env=_cli_env(SPARK_DAEMON_JAVA_OPTS=java)) as url:
        runs = {
            "connect": CliRun(["--remote", "local[2]"], corpus, tmp_path_factory.mktemp("connect") / "out"),
            "standalone": CliRun(["--master", url, *conf], corpus, tmp_path_factory.mktemp("standalone-run") / "out"),
        }
        try:
            yield runs, logs
        finally:
            for run in runs.values():
                run.stop()


@pytest.fixture(scope="session")
def classic_out(other_runs, spark, corpus, tmp_path_factory) -> Path:
    inputs, config = corpus
    out = tmp_path_factory.mktemp("classic") / "out"
    cfg = load_run_config(str(config), {"inputs": [{"path": p} for p in inputs], "output": f"file://{out}"})
    run_stages(spark, cfg, list(STAGES))
    return out


@pytest.fixture(scope="session")
def connect_out(other_runs) -> Path:
    return other_runs[0]["connect"].finish()


@pytest.fixture(scope="session")
def standalone_out(other_runs) -> Path:
    return other_runs[0]["standalone"].finish()


def _tables(out: Path) -> dict[str, list[str]]:
    """Every stage table's rows, each as sorted-key JSON, sorted."""
    from deltalake import DeltaTable

    found = {}
    for path in sorted((out / "tables").iterdir()):
        rows = DeltaTable(str(path)).to_pyarrow_table().to_pylist()
        found[path.name] = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
    return found


def _shard_files(out: Path) -> dict[str, bytes]:
    root = out / "shards"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _counts(out: Path) -> dict:
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    return {name: (s["rows_in"], s["rows_out"], s["dropped"]) for name, s in stages.items()}


def _assert_same_run(out: Path, reference: Path) -> None:
    assert _counts(out) == _counts(reference)
    got, want = _tables(out), _tables(reference)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], f"table {name} differs"
    shards, expected = _shard_files(out), _shard_files(reference)
    assert sorted(shards) == sorted(expected)
    assert [name for name in expected if shards[name] != expected[name]] == []


def test_the_classic_run_covers_every_stage_and_format(classic_out):
    counts = _counts(classic_out)
    assert list(counts) == list(STAGES)
    assert counts["etl"][1] > 50 and counts["shards"][1] > 0
    sources = {json.loads(r)["source"] for r in _tables(classic_out)["clean"]}
    assert sources == {"web", "news", "forum", "books", "ledger-tools"}


def test_spark_connect_run_equals_the_classic_run(connect_out, classic_out):
    _assert_same_run(connect_out, classic_out)


def test_standalone_cluster_run_equals_the_classic_run(standalone_out, other_runs, classic_out):
    _assert_same_run(standalone_out, classic_out)
    _, logs = other_runs
    executors = [p for p in (logs / "work").glob("app-*/*") if p.is_dir()]
    assert len(executors) >= 2, "the run must have used an executor on each worker"
