"""Ctrl-C: one line and exit 130, however deep in Spark the command was.

PySpark's own SIGINT handler cancels the jobs through py4j from inside the
interrupted py4j call: the socket read it breaks into is re-entered, py4j
logs each broken call with a traceback, and the command dies with a
Py4JError (exit 1) instead of a KeyboardInterrupt. So the CLI installs this
handler before a command runs, and ``spark.get_spark`` again once it started a
session: it
notes the interrupt, silences Python's logging, and raises
KeyboardInterrupt. Whatever exception then reaches the CLI, the note says
the user asked to stop; the CLI stops Spark quietly and exits 130.

Every stage replaces its output atomically, so a rerun continues from the
last complete stage.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

_installed = False
_interrupted = False


def install() -> None:
    """Handle SIGINT here (only the main thread can set a signal handler)."""
    global _installed
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)
        _installed = True


def reinstall() -> None:
    """After a Spark session started (PySpark set its own handler): ours again, if the CLI set it.

    A notebook or script that calls tokenmill keeps PySpark's handler.
    """
    if _installed:
        install()


def interrupted() -> bool:
    """True once SIGINT arrived."""
    return _interrupted


def _on_sigint(signum, frame) -> None:
    global _interrupted
    if _interrupted:  # a second Ctrl-C while stopping: the first one is being handled
        return
    _interrupted = True
    logging.disable(logging.CRITICAL)  # py4j logs each call the interrupt broke
    # The interrupt breaks the py4j call the main thread is in, and the JVM logs the
    # job it aborts with a Java stack trace: its logs go off first, from another
    # thread (py4j gives each thread its own connection; the main one is mid-call).
    quiet = threading.Thread(target=_spark_logs_off, daemon=True)
    quiet.start()
    quiet.join(timeout=5)
    raise KeyboardInterrupt


def _spark_context():
    """The SparkContext this process started (classic, or a local Connect server's), else None."""
    if "pyspark" not in sys.modules:  # the command never used Spark
        return None
    from pyspark import SparkContext

    return SparkContext._active_spark_context


def _spark_logs_off() -> None:
    context = _spark_context()
    if context is not None:
        try:
            context.setLogLevel("OFF")
        except Exception:  # noqa: BLE001 - best effort: the JVM may be gone already
            pass


def stop_spark_quietly() -> None:
    """Stop the Spark session this process started (its running jobs are cancelled).

    Best effort: after an interrupt the py4j connection may be broken, and
    the JVM exits with this process anyway.
    """
    context = _spark_context()
    if context is None:
        return
    try:
        context.setLogLevel("OFF")
        context.stop()
    except Exception:  # noqa: BLE001 - the JVM may already be gone; nothing is left to stop then
        pass
