"""A Spark standalone cluster on this machine: one master, N worker processes.

For trying the pipeline on more than one JVM (tests, benchmarks): each
worker starts its own executor JVM and Python workers, as on a real
cluster, but everything binds to 127.0.0.1. pip's pyspark has no
start-master.sh, so the processes are started with ``spark-class``.

    with local_cluster(workers=2, work_dir="build/cluster") as url:
        tokenmill run --master <url> ...

Workers inherit this process's environment: set PYTHONPATH (or install
tokenmill in the Python that PYSPARK_PYTHON names) so executors import
the same code.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_class(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    import pyspark

    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    with open(log, "w") as f:
        # Its own process group, so stopping it also stops the executors it started.
        return subprocess.Popen([str(spark_class), *args], stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as r:
            return sum(w["state"] == "ALIVE" for w in json.load(r)["workers"])
    except OSError:
        return 0


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)


@contextlib.contextmanager
def local_cluster(work_dir: str | Path, workers: int = 2, cores: int = 1, memory: str = "1g",
                  env: dict[str, str] | None = None, timeout_s: float = 180) -> Iterator[str]:
    """Start the cluster, yield its ``spark://`` URL, stop every process afterwards.

    Logs go to ``work_dir/{master,worker<i>}.log``, executor folders to ``work_dir/work``.
    The master and workers map this machine's Spark class archive (``tokenmill
    jvm-archive``) when there is one: their class path is a local driver's.
    """
    from tokenmill import jvm_archive

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(env if env is not None else os.environ)
    daemon_options = " ".join([env.get("SPARK_DAEMON_JAVA_OPTS", ""), *jvm_archive.java_options()]).strip()
    env.update(SPARK_LOCAL_IP="127.0.0.1", SPARK_WORKER_DIR=str(work / "work"), SPARK_DAEMON_JAVA_OPTS=daemon_options)
    port, ui_port = free_port(), free_port()
    url = f"spark://127.0.0.1:{port}"
    procs = [_spark_class(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                           "--webui-port", str(ui_port)], env, work / "master.log")]
    try:
        for i in range(workers):
            procs.append(_spark_class(["org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                                       "--cores", str(cores), "--memory", memory, "--webui-port", "0"],
                                      env, work / f"worker{i}.log"))
        deadline = time.time() + timeout_s
        while alive_workers(ui_port) < workers:
            if time.time() > deadline:
                raise RuntimeError(f"{workers} workers did not register with {url}; see {work}/*.log")
            time.sleep(1)
        yield url
    finally:
        _stop(procs)
