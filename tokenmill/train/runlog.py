"""What a run tells its users: console lines, JSONL logs, MLflow, a loss plot.

Only rank 0 logs. Files under the run dir:

- ``events.jsonl``: start, resume, checkpoint, eval, eval_prompts, nonfinite, failure, end
- ``metrics.jsonl``: one line per logged step (appended across resumes; the
  last line for a step wins)
- ``loss.png``: train (and val) loss against step, written at the end
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

from tokenmill.run_dir import RunDir


class RunLog:
    def __init__(self, run_dir: Path, enabled: bool, use_mlflow: bool, params: dict):
        self.run_dir = run_dir
        self.enabled = enabled
        self.mlflow = None
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            if use_mlflow:
                self.mlflow = _start_mlflow(run_dir, params, self)

    def event(self, name: str, **fields: Any) -> None:
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), "event": name, **fields}
        _append(RunDir(self.run_dir).events, record)
        if name not in ("checkpoint",):
            print(f"[train] {name}: " + " ".join(f"{k}={_short(v)}" for k, v in fields.items()), flush=True)

    def metrics(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        _append(RunDir(self.run_dir).metrics, {"step": step, **values})
        if self.mlflow is not None:
            try:
                self.mlflow.log_metrics(values, step=step)
            except Exception as exc:  # a tracking server hiccup must not stop training
                self.event("mlflow_error", error=str(exc))
                self.mlflow = None

    def text(self, body: str, artifact_file: str) -> None:
        """A text artifact of the MLflow run (when MLflow is on)."""
        if not self.enabled or self.mlflow is None:
            return
        try:
            self.mlflow.log_text(body, artifact_file)
        except Exception as exc:  # a tracking server hiccup must not stop training
            self.event("mlflow_error", error=str(exc))
            self.mlflow = None

    def progress(
        self, step: int, max_steps: int, loss: float, lr: float, tokens_per_s: float,
        mfu: Optional[float], step_seconds: float,
    ) -> None:
        if not self.enabled:
            return
        eta = timedelta(seconds=int(step_seconds * (max_steps - step)))
        mfu_text = f"{100 * mfu:.1f}%" if mfu is not None else "n/a"
        print(
            f"step {step}/{max_steps} | loss {loss:.4f} | lr {lr:.2e} | "
            f"{tokens_per_s:,.0f} tok/s | MFU {mfu_text} | ETA {eta}",
            flush=True,
        )

    def finish(self) -> None:
        if not self.enabled:
            return
        plot_losses(self.run_dir)
        if self.mlflow is not None:
            try:
                self.mlflow.log_artifact(str(RunDir(self.run_dir).loss_plot))
                self.mlflow.end_run()
            except Exception:
                pass


def _append(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


MLFLOW_RUN_ID = "mlflow_run_id"  # <run_dir>/mlflow_run_id: the MLflow run this run logs to


def tracking_uri(run_dir: Path) -> str:
    """The user's MLFLOW_TRACKING_URI, else a file store inside the run dir (the offline default)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    # mlflow 3 wants an explicit opt-in for the file store.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return f"file:{RunDir(run_dir).mlruns.resolve()}"


def flat_params(config: dict, model_config: dict) -> dict[str, str]:
    """A run's config and model config as flat dotted key -> string, for MLflow params."""
    flat: dict[str, str] = {}

    def walk(prefix: str, node) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = str(node)

    walk("", config)
    walk("model", model_config)
    return flat


def _start_mlflow(run_dir: Path, params: dict, log: RunLog):
    """Start (or continue, after a resume) this run's MLflow run, if mlflow is installed."""
    try:
        import mlflow
    except ImportError:
        return None
    try:
        mlflow.set_tracking_uri(tracking_uri(run_dir))
        id_file = run_dir / MLFLOW_RUN_ID
        run_id = id_file.read_text().strip() if id_file.exists() else None
        run = mlflow.start_run(run_id=run_id, run_name=run_dir.name)
        if run_id is None:
            id_file.write_text(run.info.run_id)
            mlflow.log_params(params)
        return mlflow
    except Exception as exc:
        print(f"[train] mlflow disabled: {exc}", file=sys.stderr)
        return None


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; a torn last line (killed mid-write) is dropped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_losses(run_dir: Path) -> Optional[Path]:
    """loss.png from metrics.jsonl; after a resume, the last value per step wins."""
    rows = read_jsonl(RunDir(run_dir).metrics)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = {r["step"]: r["loss"] for r in rows if "loss" in r}
    val = {r["step"]: r["val_loss"] for r in rows if "val_loss" in r}
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(sorted(train), [train[s] for s in sorted(train)], label="train")
    if val:
        ax.plot(sorted(val), [val[s] for s in sorted(val)], "o-", label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    out = RunDir(run_dir).loss_plot
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out


def peak_flops(device_name: str) -> Optional[float]:
    """Dense bf16 peak FLOP/s of known GPUs (no sparsity), for MFU: the table ``tokenmill plan`` uses."""
    from tokenmill.gpus import peak_flops as table_peak

    return table_peak(device_name)
