"""``tokenmill register``: a finished run and its Hugging Face export into MLflow.

``log_and_register(run_dir, export_dir, lineage, register_to)`` logs, into the
tracking URI the user set (``MLFLOW_TRACKING_URI``; else the run dir's own
file store, as the trainer does):

- the run: the MLflow run the trainer logged to (``<run_dir>/mlflow_run_id``)
  when that store has it; else a new run with the resolved config as params
  and ``metrics.jsonl`` as metrics;
- the lineage (data manifest, tokenizer, chat template, base model and their
  sha256) as run tags, a ``lineage.json`` artifact and the model's metadata;
- the export as an ``mlflow.transformers`` model (task text-generation), which
  loads back with ``mlflow.pyfunc.load_model`` or ``mlflow.transformers.load_model``;
- with ``register_to``: a version of that registered model, in the registry
  of the tracking URI. When the tracking URI is Databricks the registry is
  Unity Catalog and the name must be ``catalog.schema.model``. Offline, use a
  database store, ``MLFLOW_TRACKING_URI=sqlite:///PATH/mlflow.db`` (the full
  ``mlflow`` package); with no URI set the run dir's file store holds it.

What was logged is kept in ``<run_dir>/registration.json``; calling it again
with the same export, lineage, URI and name returns that record instead of a
second version.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tokenmill.errors import UserError
from tokenmill.run_dir import RunDir
from tokenmill.train.runlog import MLFLOW_RUN_ID, flat_params, read_jsonl, tracking_uri

REGISTRATION_FILE = "registration.json"
MODEL_NAME = "model"  # the artifact name of the logged model inside its run
TAG_PREFIX = "tokenmill.lineage."
DATABASE_SCHEMES = ("sqlite", "mysql", "postgresql", "mssql")
UC_NAME = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Lineage:
    """Where a model came from, by content: each sha256 names exact bytes."""

    data_manifest_sha256: Optional[str]  # the pipeline output's manifest.json
    tokenizer_sha256: str  # tokenizer.json the shards were made with
    chat_template_sha256: Optional[str]  # the template rendered into the shards (chat data only)
    base_model: Optional[str]  # init_from: the open model's folder; None when trained from scratch
    base_family: Optional[str]
    base_weights_sha256: Optional[str]  # over the base model's safetensors files

    def as_tags(self) -> dict[str, str]:
        return {TAG_PREFIX + k: str(v) for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Registration:
    tracking_uri: str
    run_id: str
    model_uri: str  # the logged model (models:/m-...)
    registered_name: Optional[str]
    version: Optional[str]

    @property
    def load_uri(self) -> str:
        """What to pass to mlflow.pyfunc.load_model: the registered version, else the logged model."""
        if self.version is None:
            return self.model_uri
        return f"models:/{self.registered_name}/{self.version}"


# ----- lineage -----------------------------------------------------------------------------

def lineage_of_run(run_dir: Path, data_manifest: Optional[Path] = None) -> Lineage:
    """The lineage of a training run from its files (dataset.json, tokenizer.json, checkpoint state).

    ``data_manifest`` defaults to the manifest.json next to the run's shards
    (``OUT/manifest.json`` for shards in ``OUT/shards``), when there is one.
    """
    from tokenmill.shards import dataset_info
    from tokenmill.hashing import file_sha256

    state = trainer_state(run_dir)
    dataset = _read_json(run_dir / dataset_info.FILE)
    if data_manifest is None:
        data_manifest = _manifest_next_to(state["config"]["data"]["shards"])
    elif not data_manifest.is_file():
        raise UserError(f"--data-manifest: no file at {data_manifest}")
    tokenizer_sha = dataset.get("tokenizer_sha256")
    if not tokenizer_sha:
        if not RunDir(run_dir).tokenizer.is_file():
            raise UserError(f"{run_dir}: no tokenizer.json or dataset.json; is it a training run dir?")
        tokenizer_sha = file_sha256(RunDir(run_dir).tokenizer)
    base = state.get("base") or {}
    return Lineage(
        data_manifest_sha256=file_sha256(data_manifest) if data_manifest else None,
        tokenizer_sha256=tokenizer_sha,
        chat_template_sha256=dataset.get("template_sha256"),
        base_model=base.get("init_from"),
        base_family=base.get("family"),
        base_weights_sha256=base.get("sha256") or _weights_sha256_if_present(base.get("init_from")),
    )


def trainer_state(run_dir: Path) -> dict:
    from tokenmill.train.checkpoint import latest_checkpoint, read_trainer_state

    latest = latest_checkpoint(RunDir(run_dir).checkpoints)
    if latest is None:
        raise UserError(f"{run_dir}: no complete checkpoint; register a run after `tokenmill train` has finished")
    return read_trainer_state(latest)


def _manifest_next_to(shards: str) -> Optional[Path]:
    if not shards or "://" in shards:
        return None
    path = Path(shards).parent / "manifest.json"
    return path if path.is_file() else None


def _weights_sha256_if_present(init_from: Optional[str]) -> Optional[str]:
    """Full fine-tuning does not hash its base while training: hash it now if it is still there."""
    if not init_from or not Path(init_from, "config.json").is_file():
        return None
    from tokenmill.train.base_model import weights_sha256
    from tokenmill.train.hf_io import open_checkpoint

    return weights_sha256(open_checkpoint(init_from))


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


# ----- MLflow --------------------------------------------------------------------------------

def log_and_register(run_dir: Path, export_dir: Path, lineage: Lineage,
                     register_to: Optional[str]) -> Registration:
    """Log the run, its lineage and its HF export to MLflow; with ``register_to``, register a version."""
    mlflow = import_mlflow()
    export_sha = check_export(export_dir)
    uri = tracking_uri(run_dir)
    registry = registry_uri(uri)
    if register_to is not None:
        check_model_name(register_to, registry)
    check_store(uri)
    key = {"tracking_uri": uri, "registry_uri": registry, "register_to": register_to,
           "export_sha256": export_sha, "lineage": dataclasses.asdict(lineage)}
    mlflow.set_tracking_uri(uri)
    if registry is not None:
        mlflow.set_registry_uri(registry)
    done = _previous_registration(mlflow, run_dir, key)
    if done is not None:
        return done
    try:
        result = _log(mlflow, run_dir, export_dir, lineage, register_to, export_sha)
    except mlflow.exceptions.MlflowException as exc:
        raise UserError(f"MLflow ({uri}): {_first_line(exc)}") from None
    (run_dir / REGISTRATION_FILE).write_text(json.dumps({**key, "result": dataclasses.asdict(result)}, indent=2) + "\n")
    return result


def import_mlflow():
    try:
        import mlflow
    except ImportError:
        raise UserError("registration needs MLflow: pip install 'tokenmill[mlflow]'") from None
    return mlflow


def check_export(export_dir: Path) -> str:
    """The export's weights sha256, after checking it is a Hugging Face model folder."""
    from tokenmill.train.base_model import weights_sha256
    from tokenmill.train.hf_io import open_checkpoint

    if not (export_dir / "config.json").is_file():
        raise UserError(f"{export_dir}: no config.json; export the run first "
                        f"(tokenmill export --checkpoint RUN --out {export_dir})")
    if not (export_dir / "tokenizer.json").is_file():
        raise UserError(f"{export_dir}: no tokenizer.json; a registered model needs its tokenizer")
    return weights_sha256(open_checkpoint(export_dir))


def registry_uri(tracking: str) -> Optional[str]:
    """MLFLOW_REGISTRY_URI if set; Unity Catalog for a Databricks tracking URI; else the tracking store."""
    if os.environ.get("MLFLOW_REGISTRY_URI"):
        return os.environ["MLFLOW_REGISTRY_URI"]
    if tracking.startswith("databricks"):
        return "databricks-uc"
    return None


def check_model_name(name: str, registry: Optional[str]) -> None:
    if registry is not None and registry.startswith("databricks-uc"):
        if not UC_NAME.match(name):
            raise UserError(f"--register-to: Unity Catalog names are catalog.schema.model, got {name!r}")
        return
    if not name.strip() or "/" in name or ":" in name:
        raise UserError(f"--register-to: a model name must be non-empty without '/' or ':', got {name!r}")


def check_store(uri: str) -> None:
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if scheme in DATABASE_SCHEMES:
        try:
            import sqlalchemy  # noqa: F401  (mlflow-skinny has no database store)
        except ImportError:
            raise UserError(f"the tracking URI {uri} needs the full mlflow package: "
                            f"pip install 'tokenmill[mlflow]'") from None


def _previous_registration(mlflow, run_dir: Path, key: dict) -> Optional[Registration]:
    """The recorded registration of this same export, if it is still in the store."""
    record = _read_json(run_dir / REGISTRATION_FILE)
    if not record or {k: record.get(k) for k in key} != key:
        return None
    result = Registration(**record["result"])
    try:
        mlflow.get_run(result.run_id)
        if result.version is not None:
            mlflow.MlflowClient().get_model_version(result.registered_name, result.version)
    except mlflow.exceptions.MlflowException:
        return None
    return result


def _log(mlflow, run_dir: Path, export_dir: Path, lineage: Lineage, register_to: Optional[str],
         export_sha: str) -> Registration:
    run_id, fresh = _existing_run_id(mlflow, run_dir)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_dir.name) as run:
        if fresh:
            (run_dir / MLFLOW_RUN_ID).write_text(run.info.run_id)
            _log_run_history(mlflow, run.info.run_id, run_dir)
        mlflow.set_tags({**lineage.as_tags(), "tokenmill.export_sha256": export_sha})
        mlflow.log_dict(dataclasses.asdict(lineage), "lineage.json")
        # An absolute path: a relative one such as "run/hf" reads as a hub repo id, and MLflow would
        # try to download its model card.
        info = mlflow.transformers.log_model(
            str(export_dir.resolve()), name=MODEL_NAME, task="text-generation", signature=_signature(),
            pip_requirements=_requirements(), metadata={"lineage": dataclasses.asdict(lineage)},
        )
        version = None
        if register_to is not None:
            tags = {**lineage.as_tags(), "tokenmill.export_sha256": export_sha}
            version = mlflow.register_model(info.model_uri, register_to, tags=tags).version
    return Registration(mlflow.get_tracking_uri(), run.info.run_id, info.model_uri, register_to,
                        str(version) if version is not None else None)


def _existing_run_id(mlflow, run_dir: Path) -> tuple[Optional[str], bool]:
    """(the trainer's MLflow run id if this store has it, whether a new run must be made)."""
    id_file = run_dir / MLFLOW_RUN_ID
    if not id_file.is_file():
        return None, True
    run_id = id_file.read_text().strip()
    try:
        mlflow.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return None, True  # logged to another tracking store (or MLflow was off): log it again here
    return run_id, False


def _log_run_history(mlflow, run_id: str, run_dir: Path) -> None:
    """Params from the final checkpoint's resolved config; metrics from metrics.jsonl."""
    from mlflow.entities import Metric

    state = trainer_state(run_dir)
    mlflow.log_params(flat_params(state["config"], state["model_config"]))
    by_step: dict[int, dict] = {}  # train and val lines share steps; after a resume the last value wins
    for row in read_jsonl(RunDir(run_dir).metrics):
        by_step.setdefault(row["step"], {}).update(row)
    # metrics.jsonl has no times: one millisecond per step keeps them in order (MLflow's latest value).
    start = int(time.time() * 1000) - len(by_step)
    metrics = [Metric(k, float(v), start + i, step) for i, (step, r) in enumerate(sorted(by_step.items()))
               for k, v in r.items() if k != "step" and isinstance(v, (int, float))]
    client = mlflow.MlflowClient()
    for first in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
        client.log_batch(run_id, metrics=metrics[first:first + 1000])


def _signature():
    """Text in, text out, ``max_new_tokens`` as a parameter: Unity Catalog requires a signature."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string")]), outputs=Schema([ColSpec("string")]),
                          params=ParamSchema([ParamSpec("max_new_tokens", "long", 64)]))


def _requirements() -> list[str]:
    """Pinned to this environment; stated rather than inferred (inference loads the model again)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("torch", "transformers", "tokenizers", "safetensors")]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ----- the command ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="the training run dir")
    parser.add_argument("--export", help="its Hugging Face export (default: the run's export.out, else RUN/hf)")
    parser.add_argument("--data-manifest", help="the pipeline output's manifest.json "
                                                "(default: the one next to the run's shards)")
    parser.add_argument("--register-to", help="registered model name; on Databricks catalog.schema.model")


def default_export_dir(run_dir: Path) -> Path:
    out = (trainer_state(run_dir)["config"].get("export") or {}).get("out")
    return RunDir(run_dir).export_out(out)


def main(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise UserError(f"--run: no run dir at {run_dir}")
    export_dir = Path(args.export) if args.export else default_export_dir(run_dir)
    lineage = lineage_of_run(run_dir, Path(args.data_manifest) if args.data_manifest else None)
    result = log_and_register(run_dir, export_dir, lineage, args.register_to)
    print(f"logged run {result.run_id} to {result.tracking_uri}, model {result.model_uri}")
    if result.version is not None:
        print(f"registered {result.registered_name} version {result.version}: "
              f"mlflow.pyfunc.load_model({result.load_uri!r})")
    return 0
