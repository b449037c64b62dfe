"""The Databricks notebooks: source format, widgets, and every notebook run end
to end on the sample corpus with local Spark and a small ``dbutils`` stand-in.

The notebooks run in order (01 -> 05), each on what the previous one wrote,
exactly as a person would run them in a workspace. Each notebook runs once, in
a module fixture that first runs the ones before it, so any test also passes
on its own (``pytest -k test_03``).
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import runpy
from pathlib import Path

import pytest

from tokenmill import tables
from tokenmill.facts import DedupFacts, EtlFacts, ShardsFacts, TokenizeFacts
from tokenmill.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01_etl", "02_dedup", "03_tokenize_shards", "04_train", "05_explore", "06_finetune"]
HEADER = "# Databricks notebook source"
SEPARATOR = "\n# COMMAND ----------\n"
# Small enough for a CPU: short sequences, a small vocabulary, enough val data for an eval.
OVERRIDES = "tokenize.seq_len=128; tokenize.vocab_size=1024; shards.val_fraction=0.05"
SLICE = ("web", "books", "code")


def source(name: str) -> str:
    return (ROOT / "notebooks" / f"{name}.py").read_text(encoding="utf-8")


def cells(text: str) -> list[str]:
    return text.split(SEPARATOR)


# --- format ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_databricks_source_format(name):
    text = source(name)
    assert text.splitlines()[0] == HEADER
    parts = cells(text)
    assert len(parts) >= 6
    markdown = [c for c in parts if c.strip().startswith("# MAGIC %md")]
    code = [c for c in parts if not c.strip().startswith(("# MAGIC", HEADER))]
    assert markdown and code
    assert parts[0].startswith(HEADER + "\n# MAGIC %md")  # opens with what the notebook does
    for cell in markdown:  # a markdown cell is MAGIC lines only
        assert all(line.startswith("# MAGIC") for line in cell.strip().splitlines()), cell[:80]
    for cell in code:
        ast.parse(cell)  # each cell is valid Python on its own
        assert "%pip" not in cell and "%run" not in cell
    defined = set(re.findall(r'dbutils\.widgets\.(?:text|dropdown)\("(\w+)"', text))
    used = set(re.findall(r'dbutils\.widgets\.get\("(\w+)"\)', text))
    if "config_from_widgets(dbutils" in text:  # reads the standard run-config widgets
        used |= {"output", "catalog_schema", "config", "overrides"}
        used |= {"inputs"} if "config_from_widgets(dbutils, inputs=True)" in text else set()
    assert used == defined, f"widgets defined but unused or used but undefined: {used ^ defined}"


# --- a dbutils stand-in ------------------------------------------------------------------


class Widgets:
    def __init__(self, values: dict[str, str]):
        self.values = values
        self.defaults: dict[str, str] = {}
        self.choices: dict[str, list[str]] = {}

    def text(self, name, default, label=None):
        self.defaults[name] = default

    def dropdown(self, name, default, choices, label=None):
        assert default in choices
        self.defaults[name] = default
        self.choices[name] = list(choices)

    def get(self, name):
        if name not in self.defaults:
            raise ValueError(f"InputWidgetNotDefined: {name}")  # as Databricks does
        value = self.values.get(name, self.defaults[name])
        if name in self.choices:
            assert value in self.choices[name], f"{name}={value!r} is not one of {self.choices[name]}"
        return value


class NotebookExit(Exception):
    pass


class Notebook:
    @staticmethod
    def exit(value):
        raise NotebookExit(value)


class DBUtils:
    def __init__(self, values):
        self.widgets = Widgets(values)
        self.notebook = Notebook()


class Display:
    """Records what a notebook displays: DataFrames as pandas, figures by type."""

    def __init__(self):
        self.items: list = []

    def __call__(self, obj, *args, **kwargs):
        if hasattr(obj, "toPandas"):
            obj = obj.toPandas()
        elif type(obj).__name__ == "Figure":
            obj = "Figure"
        self.items.append(obj)

    def frames(self):
        return [x for x in self.items if hasattr(x, "columns")]

    def figures(self) -> int:
        return sum(isinstance(x, str) and x == "Figure" for x in self.items)


def run_notebook(name: str, spark, values: dict[str, str]) -> tuple[dict, Display]:
    shim, display = DBUtils(values), Display()
    namespace = runpy.run_path(str(ROOT / "notebooks" / f"{name}.py"),
                               init_globals={"dbutils": shim, "spark": spark, "display": display})
    unknown = set(values) - set(shim.widgets.defaults)
    assert not unknown, f"{name}: values for widgets it does not define: {unknown}"
    return namespace, display


# --- end to end on the sample ---------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from tokenmill.sample import input_paths, write_sample

    os.environ.setdefault("MPLBACKEND", "Agg")
    root = tmp_path_factory.mktemp("notebooks")
    write_sample(root / "raw", n_docs=400)
    # A slice: JSONL, Parquet and code files (PII, duplicates and junk are planted in
    # web); news and forum (.gz/.zst) would double the PII scan for no new figure.
    inputs = [p for p in input_paths(root / "raw") if p.name in SLICE]
    assert len(inputs) == len(SLICE)
    return {"root": root, "out": root / "out", "run": root / "run", "inputs": ",".join(map(str, inputs))}


def stage_values(ws) -> dict[str, str]:
    return {"output": str(ws["out"]), "config": str(ROOT / "configs" / "demo.yaml"), "overrides": OVERRIDES}


@pytest.fixture(scope="module")
def ran_01(spark, workspace):
    return run_notebook("01_etl", spark, {"inputs": workspace["inputs"], **stage_values(workspace)})


@pytest.fixture(scope="module")
def ran_02(spark, workspace, ran_01):
    return run_notebook("02_dedup", spark, stage_values(workspace))


@pytest.fixture(scope="module")
def ran_03(spark, workspace, ran_02):
    """(namespace, display) and what the notebook printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = run_notebook("03_tokenize_shards", spark, stage_values(workspace))
    return result, printed.getvalue()


@pytest.fixture(scope="module")
def ran_04(spark, workspace, ran_03):
    shards = ShardsFacts.of(Manifest.load(workspace["out"])).location
    values = {
        "train_config": str(ROOT / "configs" / "train_tiny.yaml"),
        "shards": shards,
        "run_dir": str(workspace["run"]),
        "max_steps": "4",
        "overrides": "log_every=1; eval_every=2; eval_batches=1; mlflow=false",
        "nproc": "1",
    }
    return run_notebook("04_train", spark, values)


def test_01_etl(spark, workspace, ran_01):
    ns, shown = ran_01
    rec = Manifest.load(workspace["out"]).stages["etl"]
    counts, drops = shown.frames()[0], shown.frames()[1]
    assert counts.loc[0, "rows read"] == rec.rows_in and counts.loc[0, "kept"] == rec.rows_out
    assert rec.rows_out == tables.row_count(spark, str(workspace["out"] / "tables" / "clean"))
    assert dict(zip(drops["reason"], drops["rows"])) == rec.dropped
    examples = shown.frames()[2]
    assert set(examples["reason"]) == set(rec.dropped)  # every reason has examples
    assert examples.groupby("reason").size().max() <= 3
    pii = shown.frames()[3]
    assert dict(zip(pii["entity"], pii["replaced"])) == EtlFacts.of(Manifest.load(workspace["out"])).pii and len(pii) > 0
    by_source = shown.frames()[4]
    assert by_source["documents"].sum() == rec.rows_out
    assert shown.figures() == 2


def test_02_dedup(spark, workspace, ran_02):
    ns, shown = ran_02
    manifest = Manifest.load(workspace["out"])
    rec, facts = manifest.stages["dedup"], DedupFacts.of(manifest)
    summary = shown.frames()[0]
    assert summary.loc[0, "documents in"] == rec.rows_in and summary.loc[0, "kept"] == rec.rows_out
    sizes = shown.frames()[2]
    assert {str(k): v for k, v in zip(sizes["cluster_size"], sizes["count"])} == facts.cluster_size_histogram
    largest = shown.frames()[3]
    assert largest["cluster_id"].nunique() == min(3, facts.clusters)
    assert (largest.groupby("cluster_id")["kept"].sum() == 1).all()  # one kept per cluster
    assert largest.groupby("cluster_id")["kept"].first().all()  # and it is listed first


def test_03_tokenize_shards(spark, workspace, ran_03):
    (ns, shown), printed = ran_03
    manifest = Manifest.load(workspace["out"])
    tok, shards = TokenizeFacts.of(manifest), ShardsFacts.of(manifest)
    totals = shown.frames()[0]
    assert totals.loc[0, "tokens in sequences"] == tok.tokens_in_sequences and totals.loc[0, "seq_len"] == 128
    splits = shown.frames()[1].set_index("split")
    assert splits.loc["train", "sequences"] + splits.loc["val", "sequences"] == tok.sequences
    by_source = shown.frames()[2]
    assert by_source["tokens"].sum() == tok.tokens_in_sequences
    assert by_source["share %"].sum() == pytest.approx(100, abs=0.5)
    assert " ⏎EOS " in printed and '"format": "tokenmill-mds-v1"' in printed
    assert (Path(shards.location) / "dataset.json").is_file()


def test_04_train(spark, workspace, ran_04):
    ns, shown = ran_04
    checks = shown.frames()[0]
    assert list(checks["check"]) == ["config", "shards", "base model", "tokenizer", "data", "memory", "checkpoints",
                                     "dry save", "estimate", "gpus"]
    assert "FAIL" not in set(checks["status"])
    metrics = shown.frames()[1]
    assert list(metrics["step"]) == [1, 2, 3, 4] and metrics["loss"].notna().all()
    assert metrics["val_loss"].notna().sum() == 2  # steps 2 and 4
    saved = shown.frames()[3]
    assert list(saved["checkpoint"]) == ["step_00000004"]
    assert (workspace["run"] / "checkpoints" / "step_00000004" / ".metadata").is_file()


def test_04_train_stops_on_a_failed_preflight(spark, workspace):
    values = {"train_config": str(ROOT / "configs" / "train_tiny.yaml"), "shards": str(workspace["root"] / "none"),
              "run_dir": str(workspace["root"] / "run-bad"), "nproc": "1"}
    with pytest.raises(RuntimeError, match=r"pre-flight failed: shards: no dataset.json in"):
        run_notebook("04_train", spark, values)
    assert not (workspace["root"] / "run-bad" / "checkpoints" / "step_00000001").exists()


def test_05_explore(spark, workspace, ran_04):
    card = workspace["root"] / "card.html"
    values = {"output": str(workspace["out"]), "run_dir": str(workspace["run"]), "card": str(card)}
    ns, shown = run_notebook("05_explore", spark, values)
    stages = shown.frames()[0]
    assert list(stages["stage"]) == ["etl", "dedup", "tokenize", "shards"] and stages["adds up"].all()
    inventory = shown.frames()[1].set_index("table")
    assert set(inventory.index) == {"documents", "clean", "rejects", "signatures", "dup_clusters", "deduped",
                                    "sequences"}
    for name, row in inventory.iterrows():
        assert row["rows"] == tables.row_count(spark, row["location"])
    follow = shown.frames()[3]
    assert follow["kept"].iloc[0] and not follow["kept"].iloc[1:].any()
    html = card.read_text(encoding="utf-8")
    assert "could not be computed" not in html
    assert html.count("Not available") == 0  # every section has data, training curves included
    assert "4 logged steps" in html
    manifest = json.loads((workspace["out"] / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"etl", "dedup", "tokenize", "shards"}
