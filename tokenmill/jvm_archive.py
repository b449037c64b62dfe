"""``tokenmill jvm-archive``: a class-data archive of Spark's classes for the JVMs started here.

A Spark driver loads and verifies thousands of classes from its jars at every
start. Java's class-data sharing (a dynamic CDS archive) keeps them parsed and
verified in one file that the JVM maps instead: on a 2-core machine a session
started in 3.8 s instead of 6.5 s, and its first job took 1.6 s instead of
3.6 s (medians, bench/RESULTS.md).

The archive belongs to one Java and one pyspark install, so its name holds
both; it is built once (``make setup`` does it) by a JVM that runs a small
pipeline and writes the classes it loaded at exit. Sessions that tokenmill
starts on this machine use it when it is complete, and run as before without
it. A truncated archive makes the JVM crash at start, so the archive counts
only once the small JSON file written after it gives its exact size.
``TOKENMILL_JVM_ARCHIVE=off`` turns it off; ``TOKENMILL_CACHE_DIR`` moves it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tokenmill.errors import UserError

OFF = "TOKENMILL_JVM_ARCHIVE"
BUILD_TIMEOUT_S = 600


def cache_dir() -> Path:
    root = os.environ.get("TOKENMILL_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tokenmill")
    return Path(root) / "jvm"


def _java() -> Path | None:
    """The java that pyspark starts: JAVA_HOME's, else the first on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = os.path.join(home, "bin", "java") if home else shutil.which("java")
    return Path(os.path.realpath(found)) if found and os.path.exists(found) else None


def _spark_home() -> str:
    """The Spark whose jars a session's JVM loads: SPARK_HOME, else pyspark's own folder."""
    from pyspark.find_spark_home import _find_spark_home

    return os.path.realpath(_find_spark_home())


def archive_path() -> Path | None:
    """Where the archive of this Java and this Spark install lives (None without a java).

    The JVM maps an archive only for the class path it was made with, so two
    installs of the same pyspark (two virtual environments) get one each.
    """
    import pyspark

    java = _java()
    if java is None:
        return None
    jvm = java.parent.parent / "lib" / "server" / "libjvm.so"
    stat = (jvm if jvm.exists() else java).stat()
    key = hashlib.sha256(f"{java}|{stat.st_size}|{stat.st_mtime_ns}|{_spark_home()}".encode()).hexdigest()[:12]
    return cache_dir() / f"spark-{pyspark.__version__}-java-{key}.jsa"


def _marker(archive: Path) -> Path:
    return archive.with_suffix(".json")


def complete_archive() -> Path | None:
    """The archive, if it was written whole (its marker gives its size)."""
    if os.environ.get(OFF, "").lower() in ("0", "off", "false", "no"):
        return None
    archive = archive_path()
    if archive is None or not archive.exists():
        return None
    try:
        size = json.loads(_marker(archive).read_text())["size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return archive if archive.stat().st_size == size else None


def java_options() -> list[str]:
    """Driver JVM options that map the archive, when there is a complete one."""
    archive = complete_archive()
    return [f"-XX:SharedArchiveFile={archive}"] if archive else []


def conf_dir_note() -> str | None:
    """Why a driver started here will not map a complete archive, or None.

    Spark puts SPARK_CONF_DIR first on the driver's class path, and a JVM maps
    no archive made for another class path (an empty folder counts too; a
    missing one does not).
    """
    conf_dir = os.environ.get("SPARK_CONF_DIR")
    if conf_dir and os.path.isdir(conf_dir):
        return (f"SPARK_CONF_DIR={conf_dir} goes first on the driver's class path, which the archive was not "
                "made for, so the JVM will not map it; give Spark properties with --conf instead")
    return None


def build(workload: str = "pipeline") -> Path:
    """Run ``workload`` (``jvm_archive_workload``: "pipeline", or "session") in a JVM that
    archives the classes it loaded; then move the archive into place and mark it complete."""
    archive = archive_path()
    if archive is None:
        raise UserError("no java found (JAVA_HOME or PATH): Spark needs Java 17")
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f".{archive.name}.{os.getpid()}.tmp")
    env = {**os.environ, OFF: "off",
           "TOKENMILL_JAVA_OPTIONS": f"{os.environ.get('TOKENMILL_JAVA_OPTIONS', '')} "
                                     f"-XX:ArchiveClassesAtExit={partial} -Xlog:cds=error".strip(),
           "TOKENMILL_PROGRESS_S": "0"}
    started = time.time()
    try:
        result = subprocess.run([sys.executable, "-m", "tokenmill.jvm_archive_workload", workload], env=env, capture_output=True,
                                text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise UserError(f"the class-data archive's workload ran past {BUILD_TIMEOUT_S} s; "
                        "sessions start without the archive") from None
    if result.returncode != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"the JVM did not write a class-data archive ({tail[0]})")
    os.replace(partial, archive)
    _marker(archive).write_text(json.dumps({"size": archive.stat().st_size, "java": str(_java()),
                                            "seconds": round(time.time() - started, 1)}))
    return archive


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="only say whether a complete archive is in place")


def main(args: argparse.Namespace) -> int:
    if args.check:
        archive = complete_archive()
        note = conf_dir_note() if archive else None
        if archive is None:
            print("[jvm-archive] none")
        elif note:
            print(f"[jvm-archive] complete but not mapped here: {archive} ({note})")
        else:
            print(f"[jvm-archive] in use: {archive}")
        return 0 if archive and not note else 1
    archive = build()
    print(f"[jvm-archive] {archive} ({archive.stat().st_size / 1e6:.0f} MB): "
          "local Spark sessions map Spark's classes from it")
    return 0
