"""Ctrl-C on a running command: one line, exit 130, and a rerun finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from tokenmill.sample.corpus import write_sample

TABLES = ["documents", "clean", "rejects"]


def tokenmill(*args: str, **popen) -> subprocess.Popen:
    # Its own process group, as a shell gives a command: Ctrl-C signals the whole group.
    return subprocess.Popen([sys.executable, "-m", "tokenmill.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **popen)


def interrupt_when(proc: subprocess.Popen, marker: str) -> list[str]:
    """Send SIGINT to the process group once stderr shows marker; the stderr lines after it."""
    for line in proc.stderr:
        if marker in line:
            os.killpg(proc.pid, signal.SIGINT)
            break
    else:
        pytest.fail(f"the command ended before {marker!r}")
    after = proc.stderr.read().splitlines()
    proc.wait(timeout=120)
    return after


def rows(out: Path, name: str):
    table = DeltaTable(str(out / "tables" / name)).to_pyarrow_table()
    keys = [(c, "ascending") for c in table.column_names if c != "meta"]
    return table.take(pc.sort_indices(table, sort_keys=keys)).to_pylist()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("corpus") / "raw"
    write_sample(raw, n_docs=400)
    return raw


def test_ctrl_c_is_one_line_and_exit_130_and_the_rerun_matches(corpus, tmp_path):
    interrupted, reference = tmp_path / "interrupted", tmp_path / "reference"
    argv = ["run", "--input", str(corpus), "--stages", "etl"]
    proc = tokenmill(*argv, "--output", str(interrupted), cwd=tmp_path)
    after = interrupt_when(proc, "[etl: clean + PII] started")
    assert proc.returncode == 130, after
    assert after == ["tokenmill run: interrupted; rerun to continue"]

    for out in (interrupted, reference):
        proc = tokenmill(*argv, "--output", str(out), cwd=tmp_path)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    for name in TABLES:
        assert rows(interrupted, name) == rows(reference, name), name


# `tokenmill plan` whose work is a long sleep: a command interrupted in Python alone.
SLOW_PLAN = """
import sys, time
import tokenmill.plan
from tokenmill import cli

tokenmill.plan.main = lambda args: time.sleep(60)
print("ready", flush=True)
sys.exit(cli.main(["plan"]))
"""


def test_ctrl_c_outside_spark_is_the_same_line(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SLOW_PLAN], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, cwd=tmp_path)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)  # into the sleep
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "tokenmill plan: interrupted; rerun to continue"
