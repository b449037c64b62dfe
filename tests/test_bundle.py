"""The Databricks Asset Bundle, checked offline: our own schema, the task graph,
and every command it runs exists in pyproject.toml and answers --help."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import bundle_schema

from tokenmill import cli

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["etl", "dedup", "tokenize", "shards"]


@pytest.fixture(scope="module")
def bundle():
    return bundle_schema.load_bundle(ROOT)


@pytest.fixture(scope="module")
def job(bundle):
    jobs = bundle["resources"]["jobs"]
    assert sorted(jobs) == ["tokenmill_finetune", "tokenmill_pipeline"]
    return jobs["tokenmill_pipeline"]


@pytest.fixture(scope="module")
def all_tasks(bundle) -> list[dict]:
    return [t for job in bundle["resources"]["jobs"].values() for t in job["tasks"]]


def tasks_by_key(job) -> dict:
    return {t["task_key"]: t for t in job["tasks"]}


def test_bundle_passes_our_schema_and_reference_checks():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(bundle_schema.SCHEMA)  # the schema itself is well-formed
    assert bundle_schema.check_bundle(ROOT) == []


def test_task_graph_is_the_stage_chain_then_preflight_then_train(job):
    tasks = tasks_by_key(job)
    deps = {k: [d["task_key"] for d in t.get("depends_on", [])] for k, t in tasks.items()}
    assert deps == {
        "etl": [],
        "dedup": ["etl"],
        "tokenize": ["dedup"],
        "shards": ["tokenize"],
        "data_card": ["shards"],
        "preflight": ["shards"],
        "train": ["preflight"],
    }
    order = bundle_schema.task_order(job)
    assert [k for k in order if k in STAGES] == STAGES
    assert order.index("preflight") < order.index("train")
    for key in STAGES + ["data_card"]:
        assert tasks[key]["job_cluster_key"] == "cpu"
        assert tasks[key]["python_wheel_task"]["parameters"][0] == ("report" if key == "data_card" else key)
    for key in ("preflight", "train"):
        assert tasks[key]["job_cluster_key"] == "gpu"
    train = tasks["train"]["python_wheel_task"]["parameters"]
    assert train[0] == "train" and "--spark" in train  # ranks through TorchDistributor


def test_clusters_schedule_targets_and_variables(bundle, job):
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    assert set(clusters) == {"cpu", "gpu"}
    assert "gpu-ml" in bundle["variables"]["gpu_spark_version"]["default"]
    assert clusters["gpu"]["spark_version"] == "${var.gpu_spark_version}"
    assert clusters["gpu"]["spark_conf"]["spark.task.resource.gpu.amount"] == "1"
    schedule = job["schedule"]
    assert schedule["quartz_cron_expression"] == "0 30 2 * * ?"  # 02:30 every night
    assert schedule["timezone_id"] == "UTC"
    targets = bundle["targets"]
    assert {t: targets[t]["mode"] for t in targets} == {"dev": "development", "prod": "production"}
    assert bundle_schema.resolved_variables(bundle, "dev")["schedule_pause"] == "PAUSED"
    assert bundle_schema.resolved_variables(bundle, "prod")["schedule_pause"] == "UNPAUSED"
    assert {"catalog", "schema", "volume"} <= set(bundle["variables"])
    etl = tasks_by_key(job)["etl"]["python_wheel_task"]["parameters"]
    assert "/Volumes/${var.catalog}/${var.schema}/${var.volume}/${var.raw_dir}" in etl
    assert "catalog_schema=${var.catalog}.${var.schema}" in etl


def _substitute(text: str, variables: dict) -> str:
    """Fill ${var.x} with the dev value and workspace paths with a stand-in."""
    def value(match):
        name = match.group(1)
        if name.startswith("var."):
            return str(variables[name[4:]])
        return "/Workspace/Users/someone/.bundle/tokenmill/dev/files"

    return bundle_schema.ANY_REFERENCE.sub(value, text)


def test_every_wheel_task_names_our_entry_point_and_valid_flags(bundle, all_tasks):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    variables = bundle_schema.resolved_variables(bundle, "dev")
    for task in all_tasks:
        wheel = task["python_wheel_task"]
        assert wheel["package_name"] == project["name"]
        assert project["scripts"][wheel["entry_point"]] == "tokenmill.cli:main"
        assert task["libraries"] == [{"whl": "../dist/*.whl"}]
        params = [_substitute(p, variables) for p in wheel["parameters"]]
        command = params[0]
        assert command in cli.COMMANDS, f"task {task['task_key']}: unknown command {command!r}"
        # Parse exactly as the cluster will: an unknown flag or bad value exits 2.
        parsed = cli.build_parser(command).parse_args(params)
        assert parsed.command == command


def test_every_command_answers_help(all_tasks):
    tokenmill = Path(sys.executable).with_name("tokenmill")
    exe = str(tokenmill) if tokenmill.exists() else shutil.which("tokenmill")
    assert exe, "the tokenmill entry point is not installed (pip install -e .)"
    commands = sorted({t["python_wheel_task"]["parameters"][0] for t in all_tasks})
    assert commands, "no wheel task in the bundle"
    for command in commands:
        done = subprocess.run([exe, command, "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"tokenmill {command} --help failed:\n{done.stderr}"
        assert f"usage: tokenmill {command}" in done.stdout


def test_finetune_job_runs_the_one_command_on_a_gpu_node_and_registers_to_unity_catalog(bundle):
    job = bundle["resources"]["jobs"]["tokenmill_finetune"]
    (task,) = job["tasks"]
    cluster = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}[task["job_cluster_key"]]
    assert cluster["spark_version"] == "${var.gpu_spark_version}" and cluster["num_workers"] == 0
    params = task["python_wheel_task"]["parameters"]
    assert params[0] == "finetune"
    name = _substitute(params[params.index("--register-to") + 1], bundle_schema.resolved_variables(bundle, "dev"))
    assert name == "main.tokenmill_dev.support_assistant"  # catalog.schema.model
    assert params[params.index("--nproc") + 1] == "${var.gpus_per_node}"  # ranks on this one node


def _broken_copy(tmp_path: Path, edit) -> Path:
    shutil.copy(ROOT / "databricks.yml", tmp_path / "databricks.yml")
    (tmp_path / "resources").mkdir()
    data = yaml.safe_load((ROOT / "resources" / "tokenmill_job.yml").read_text())
    edit(data["resources"]["jobs"]["tokenmill_pipeline"])
    (tmp_path / "resources" / "tokenmill_job.yml").write_text(yaml.safe_dump(data))
    return tmp_path


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda j: j["tasks"][1].update(depend_on=j["tasks"][1].pop("depends_on")),
         r"tasks\[1\]\.depend_on: unknown key"),
        (lambda j: j["schedule"].update(quartz_cron_expression="30 2 * * *"),
         r"schedule\.quartz_cron_expression: '30 2 \* \* \*' does not match"),
        (lambda j: j["schedule"].update(pause_status=False),  # unquoted OFF/NO in YAML
         r"schedule\.pause_status: must be one of \['PAUSED', 'UNPAUSED'\], got False"),
        (lambda j: j["tasks"][0]["python_wheel_task"]["parameters"].append("${var.catalgo}"),
         r"\$\{var\.catalgo\} is used but not declared"),
        (lambda j: j["tasks"][0].update(depends_on=[{"task_key": "train"}]),
         r"depends_on cycle: etl -> train -> preflight -> shards -> tokenize -> dedup -> etl"),
        (lambda j: j["tasks"][2].update(job_cluster_key="cpus"),
         r"tokenize: job_cluster_key 'cpus' is not defined"),
        (lambda j: j["tasks"][3].pop("python_wheel_task"),
         r"tasks\[3\]: needs exactly one of \['python_wheel_task', 'notebook_task'\]"),
        (lambda j: j["job_clusters"][0]["new_cluster"].update(num_workers="two"),
         r"new_cluster\.num_workers: must be integer, got str 'two'"),
    ],
)
def test_schema_catches_common_mistakes(tmp_path, edit, expected):
    errors = bundle_schema.check_bundle(_broken_copy(tmp_path, edit))
    assert any(re.search(expected, e) for e in errors), errors


def test_targets_in_an_included_file_are_merged_and_checked(tmp_path):
    root = _broken_copy(tmp_path, lambda job: None)
    extra = {"targets": {"dev": {"variables": {"schema": "tokenmill_scratch"}},
                         "qa": {"mode": "staging", "variables": {"catalgo": "qa"}}}}
    (root / "resources" / "qa_targets.yml").write_text(yaml.safe_dump(extra))
    bundle = bundle_schema.load_bundle(root)
    assert bundle_schema.resolved_variables(bundle, "dev")["schema"] == "tokenmill_scratch"
    assert bundle["targets"]["dev"]["mode"] == "development"  # databricks.yml's keys stay
    errors = bundle_schema.check_bundle(root)
    assert any(re.search(r"targets\.qa\.mode: must be one of", e) for e in errors), errors
    assert "targets.qa.variables.catalgo: not declared under variables" in errors, errors
