"""The class-data archive of Spark's classes: used only when complete, and really mapped."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from tokenmill import jvm_archive
from tokenmill.spark import session_settings


def test_only_a_complete_archive_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENMILL_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(jvm_archive.OFF, raising=False)
    archive = jvm_archive.archive_path()
    assert archive.parent == tmp_path / "jvm" and jvm_archive.java_options() == []
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"x" * 10)
    assert jvm_archive.java_options() == []  # no marker yet: the JVM may still be writing it
    archive.with_suffix(".json").write_text(json.dumps({"size": 10}))
    assert jvm_archive.java_options() == [f"-XX:SharedArchiveFile={archive}"]
    driver = session_settings("local[2]", 2)["spark.driver.extraJavaOptions"]
    assert f"-XX:SharedArchiveFile={archive}" in driver
    assert "SharedArchiveFile" not in session_settings("sc://host:15002", 2)["spark.driver.extraJavaOptions"]
    archive.write_bytes(b"x" * 9)  # truncated: a JVM that mapped it would crash
    assert jvm_archive.java_options() == []
    archive.write_bytes(b"x" * 10)
    monkeypatch.setenv(jvm_archive.OFF, "off")
    assert jvm_archive.java_options() == []
    monkeypatch.delenv(jvm_archive.OFF)
    archive.with_suffix(".json").write_text("{not json")
    assert jvm_archive.java_options() == []


def test_each_spark_install_gets_its_own_archive(tmp_path, monkeypatch):
    # A JVM maps an archive only for the class path it was made with: a second
    # virtual environment with the same pyspark must not take the first one's.
    monkeypatch.delenv("SPARK_HOME", raising=False)
    ours = jvm_archive.archive_path()
    monkeypatch.setenv("SPARK_HOME", str(tmp_path))
    other = jvm_archive.archive_path()
    assert other.parent == ours.parent and other.name != ours.name


def test_check_says_when_a_spark_conf_dir_keeps_the_archive_out(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TOKENMILL_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(jvm_archive.OFF, raising=False)
    monkeypatch.delenv("SPARK_CONF_DIR", raising=False)
    archive = jvm_archive.archive_path()
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"x" * 10)
    archive.with_suffix(".json").write_text(json.dumps({"size": 10}))
    check = argparse.Namespace(check=True)
    assert jvm_archive.main(check) == 0
    assert capsys.readouterr().out.strip() == f"[jvm-archive] in use: {archive}"
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path / "missing"))  # a missing folder is not on the class path
    assert jvm_archive.main(check) == 0
    capsys.readouterr()
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    assert jvm_archive.main(check) == 1
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"[jvm-archive] complete but not mapped here: {archive} (SPARK_CONF_DIR={tmp_path} goes first")
    assert "--conf" in out


SESSION = """
from tokenmill.spark import get_spark
spark = get_spark("archive-check", cores=1)
assert spark.range(5).count() == 5
print(" ".join(spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()))
"""


def _archive_to_check(tmp_path, monkeypatch):
    """The archive `make setup` built for this Java and pyspark; built here when there is none
    (the build takes about 20 s, and setup's own build is allowed to fail)."""
    monkeypatch.delenv(jvm_archive.OFF, raising=False)
    archive = jvm_archive.complete_archive()
    if archive is None:
        monkeypatch.setenv("TOKENMILL_CACHE_DIR", str(tmp_path))
        archive = jvm_archive.build(workload="session")
        assert not list(archive.parent.glob(".*.tmp"))
    assert jvm_archive.complete_archive() == archive and archive.stat().st_size > 1_000_000
    return archive


def test_a_session_maps_the_archive_that_was_built(tmp_path, monkeypatch):
    archive = _archive_to_check(tmp_path, monkeypatch)
    # -Xshare:on: a JVM that cannot map the archive refuses to start, so the session proves it is used.
    env = {**os.environ, "TOKENMILL_JAVA_OPTIONS": f"{os.environ.get('TOKENMILL_JAVA_OPTIONS', '')} -Xshare:on"}
    result = subprocess.run([sys.executable, "-c", SESSION], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"-XX:SharedArchiveFile={archive}" in result.stdout
