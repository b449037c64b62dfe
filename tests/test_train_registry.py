"""Registration: a fine-tuned tiny Llama's run, lineage and HF export logged to a local
MLflow registry (sqlite), and the registered version loaded back: it generates and
gives transformers' logits on the export folder."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import mlflow
import pytest
import sqlalchemy  # noqa: F401  the full mlflow package (the mlflow extra): a database store
import torch

from tokenmill.errors import UserError
from tokenmill.train import registry
from tokenmill.train.config import TrainConfig
from tokenmill.train.runlog import read_jsonl
from tokenmill.typed_config import from_dict
from test_train_epochs import run_one_rank
from test_train_runs import REPO

STEPS = 2


def mlflow_env(root) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "MLFLOW_EXPERIMENT_NAME": "finetunes",
            "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step fine-tune of a random tiny Llama on SFT shards, logged to a sqlite tracking store."""
    from train_fixture import write_hf_model, write_sft_fixture

    root = tmp_path_factory.mktemp("registry")
    shards = write_sft_fixture(root / "data" / "shards", n_train=16, n_val=4, seq_len=64)
    (root / "data" / "manifest.json").write_text(json.dumps({"stages": {"shards": {"rows_out": 20}}}))
    # Several safetensors files, so the hash depends on their order as well as their bytes.
    base = write_hf_model(root / "base", "llama", vocab_size=512, tokenizer_dir=shards, max_shard_size="200KB")
    env = mlflow_env(root)
    # Artifacts under tmp, not in the working directory (sqlite stores default to ./mlruns).
    mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).create_experiment(
        "finetunes", artifact_location=(root / "artifacts").as_uri())
    config = {
        "device": "cpu", "seed": 3, "max_steps": STEPS, "global_batch_size": 4, "micro_batch_size": 2,
        "init_from": str(base), "data": {"shards": str(shards), "clean_stale_shm": False},
        "optim": {"lr": 1e-3, "warmup_steps": 1}, "checkpoint": {"every_steps": 100},
        "eval_batches": 1, "log_every": 1, "mlflow": True, "export_hf": True, "run_dir": str(root / "run"),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        run_one_rank(mp, from_dict(TrainConfig, config))  # the trainer of `tokenmill train`, in this process
    return root


@pytest.fixture
def env(trained, monkeypatch):
    for k, v in mlflow_env(trained).items():
        monkeypatch.setenv(k, v)
    return trained


def test_lineage_names_the_data_tokenizer_template_and_base_by_content(env):
    from tokenmill.chat.template import CHATML

    root = env
    lineage = registry.lineage_of_run(root / "run")
    assert lineage.data_manifest_sha256 == hashlib.sha256((root / "data" / "manifest.json").read_bytes()).hexdigest()
    assert lineage.tokenizer_sha256 == hashlib.sha256((root / "data/shards/tokenizer.json").read_bytes()).hexdigest()
    assert lineage.chat_template_sha256 == hashlib.sha256(CHATML.encode()).hexdigest()
    assert lineage.base_model == str(root / "base") and lineage.base_family == "llama"
    # As documented: sha256 over the safetensors files, each file's name then its bytes, in name order.
    weights = hashlib.sha256()
    files = sorted((root / "base").glob("*.safetensors"))
    assert len(files) > 1
    for file in files:
        weights.update(file.name.encode() + file.read_bytes())
    assert lineage.base_weights_sha256 == weights.hexdigest()


def test_registered_version_loads_back_generates_and_gives_the_exports_logits(env):
    from transformers import AutoModelForCausalLM

    run_dir, export = env / "run", env / "run" / "hf"
    lineage = registry.lineage_of_run(run_dir)
    result = registry.log_and_register(run_dir, export, lineage, "tiny-chat")
    assert result.version == "1" and result.load_uri == "models:/tiny-chat/1"
    # The trainer's own MLflow run, with its metrics, now holds the lineage and the model.
    assert result.run_id == (run_dir / "mlflow_run_id").read_text().strip()
    client = mlflow.MlflowClient()
    assert [m.step for m in client.get_metric_history(result.run_id, "loss")] == list(range(1, STEPS + 1))
    run = client.get_run(result.run_id)
    assert run.data.tags["tokenmill.lineage.base_weights_sha256"] == lineage.base_weights_sha256
    version = client.get_model_version("tiny-chat", "1")
    assert version.tags["tokenmill.lineage.tokenizer_sha256"] == lineage.tokenizer_sha256

    components = mlflow.transformers.load_model(result.load_uri, return_type="components")
    reference = AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32).eval()
    ids = torch.randint(0, 512, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(components["model"].float()(ids).logits, reference(ids).logits)
    prompt = "What does the cat do?"
    answer = mlflow.pyfunc.load_model(result.load_uri).predict([prompt], params={"max_new_tokens": 6})
    new_ids = components["tokenizer"](answer[0])["input_ids"][len(components["tokenizer"](prompt)["input_ids"]):]
    assert answer[0].startswith(prompt) and len(new_ids) > 0

    # The same export again: the recorded registration, not a second version.
    assert registry.log_and_register(run_dir, export, lineage, "tiny-chat") == result
    assert len(client.search_model_versions("name='tiny-chat'")) == 1


def test_a_run_the_store_does_not_know_is_logged_from_its_files(env, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(env / "run", run_dir, ignore=shutil.ignore_patterns("mlruns"))
    (run_dir / "mlflow_run_id").write_text("0" * 32)  # logged to another store
    (run_dir / "registration.json").unlink(missing_ok=True)
    result = registry.log_and_register(run_dir, run_dir / "hf", registry.lineage_of_run(run_dir), None)
    assert result.version is None and result.load_uri == result.model_uri
    assert (run_dir / "mlflow_run_id").read_text() == result.run_id != "0" * 32
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert run.data.params["max_steps"] == str(STEPS) and run.data.params["model.vocab_size"] == "512"
    latest = {}  # each metric's value at its last logged step
    for row in read_jsonl(run_dir / "metrics.jsonl"):
        latest.update({k: v for k, v in row.items() if k != "step"})
    assert run.data.metrics == pytest.approx(latest) and "val_loss" in latest


# ----- bad input: one line each ------------------------------------------------------------

def test_unity_catalog_needs_three_part_names(env, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "databricks")
    with pytest.raises(UserError, match=r"Unity Catalog names are catalog\.schema\.model, got 'tiny'"):
        registry.log_and_register(env / "run", env / "run" / "hf", registry.lineage_of_run(env / "run"), "tiny")


def test_bad_names_missing_export_and_missing_packages_are_user_errors(env, monkeypatch, tmp_path):
    run_dir = env / "run"
    lineage = registry.lineage_of_run(run_dir)
    with pytest.raises(UserError, match="without '/' or ':'"):
        registry.log_and_register(run_dir, run_dir / "hf", lineage, "a/b")
    with pytest.raises(UserError, match="no config.json; export the run first"):
        registry.log_and_register(run_dir, tmp_path, lineage, "tiny")
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # mlflow-skinny: no database store
    with pytest.raises(UserError, match=r"sqlite:///.*mlflow.db needs the full mlflow package"):
        registry.log_and_register(run_dir, run_dir / "hf", lineage, "tiny")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(UserError, match=r"registration needs MLflow: pip install 'tokenmill\[mlflow\]'"):
        registry.log_and_register(run_dir, run_dir / "hf", lineage, "tiny")


def test_register_command_prints_one_line_for_a_missing_run(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tokenmill.cli", "register", "--run", str(tmp_path / "nope")],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"tokenmill register: error: --run: no run dir at {tmp_path / 'nope'}"]
