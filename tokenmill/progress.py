"""What a person watching a long job sees: progress lines and stage summaries.

``SparkProgress`` prints, every few seconds from a daemon thread, tasks done
of the running stages, the rate and an ETA (bytes done are estimated from
the share of tasks done when the input size is known). The task counts come
from the status tracker on a classic driver, and from the progress handler
on Spark Connect (which has no SparkContext). ``print_summary`` ends each
stage with one screen.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from tokenmill.manifest import StageRecord
from tokenmill.units import human_bytes, human_seconds  # noqa: F401  (human_bytes: also for the stage jobs)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class SparkProgress:
    """Context manager: print Spark task progress for ``label`` while it runs."""

    def __init__(self, spark, label: str, total_bytes: int | None = None, every_s: float | None = None):
        self.spark = spark
        self.label = label
        self.total_bytes = total_bytes
        self.every_s = every_s if every_s is not None else float(os.environ.get("TOKENMILL_PROGRESS_S", "10"))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = 0.0

    def __enter__(self):
        self.started = time.time()
        log(f"[{self.label}] started" + (f" ({human_bytes(self.total_bytes)} input)" if self.total_bytes else ""))
        if self.every_s > 0:
            self._counts = self._task_counts()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=1)
        if self._handler is not None:
            self.spark.removeProgressHandler(self._handler)
        if exc_type is None:  # a failed or interrupted step did not finish: its error says what happened
            log(f"[{self.label}] finished in {human_seconds(time.time() - self.started)}")
        return False

    _handler = None

    def _task_counts(self):
        """A function giving (tasks done, tasks) of the running stages."""
        from tokenmill.spark import is_connect

        if not is_connect(self.spark):
            tracker = self.spark.sparkContext.statusTracker()
            return lambda: _tracker_counts(tracker)
        latest = [0, 0]

        def handler(stages, inflight_tasks, operation_id, done):
            running = [s for s in stages or () if not s.done]
            latest[:] = [sum(s.num_completed_tasks for s in running), sum(s.num_tasks for s in running)]

        self._handler = handler
        self.spark.registerProgressHandler(handler)
        return lambda: tuple(latest)

    def _loop(self):
        while not self._stop.wait(self.every_s):
            try:
                line = self._line(*self._counts())
            except Exception:  # the tracker can race with job end; progress is best effort
                continue
            if line:
                log(line)

    def _line(self, done: int, total: int) -> str | None:
        elapsed = time.time() - self.started
        if not total:
            return f"[{self.label}] working… {human_seconds(elapsed)} elapsed"
        frac = done / total
        parts = [f"[{self.label}] tasks {done}/{total} ({frac:.0%})", f"{human_seconds(elapsed)} elapsed"]
        if self.total_bytes:
            rate = self.total_bytes * frac / max(elapsed, 1e-9)
            parts.append(f"~{human_bytes(rate)}/s")
        if 0 < frac < 1:
            parts.append(f"ETA {human_seconds(elapsed * (1 - frac) / frac)} for this step")
        return ", ".join(parts)


def _tracker_counts(tracker) -> tuple[int, int]:
    done = total = 0
    for stage_id in tracker.getActiveStageIds():
        info = tracker.getStageInfo(stage_id)
        if info:
            done += info.numCompletedTasks
            total += info.numTasks
    return done, total


def print_summary(rec: StageRecord, lines: list[str] | None = None) -> None:
    """One screen per stage: in, out, drops by reason, and stage-specific lines."""
    width = 64
    out = [f"── {rec.stage} " + "─" * max(0, width - len(rec.stage) - 4)]
    out.append(f"  rows in   {rec.rows_in:>12,}")
    out.append(f"  rows out  {rec.rows_out:>12,}")
    out.append(f"  dropped   {rec.rows_dropped:>12,}")
    for reason, n in sorted(rec.dropped.items(), key=lambda kv: -kv[1]):
        out.append(f"    {reason:<30} {n:>10,}")
    out.extend(f"  {line}" for line in (lines or []))
    out.append(f"  wall time {human_seconds(rec.wall_s)}")
    print("\n".join(out), flush=True)
