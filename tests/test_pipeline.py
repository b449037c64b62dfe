"""The pipeline runner: records, skips up-to-date stages, reruns on change."""

from __future__ import annotations

import sys
import types

import pytest

from tokenmill import pipeline
from tokenmill.config import load_run_config
from tokenmill.manifest import Manifest, StageRecord


@pytest.fixture
def counting_stage(monkeypatch):
    """A stage 'dedup' that copies tables/clean to tables/deduped and counts its runs."""
    runs = []

    def run(ctx):
        runs.append(1)
        df = ctx.read("clean")
        rows_in = df.count()
        version = ctx.write(df.where("id != 'b'"), "deduped")
        return StageRecord(
            "dedup", rows_in=rows_in, rows_out=rows_in - 1, dropped={"duplicate": 1},
            inputs={"clean": ctx.signature("clean")}, outputs={"deduped": f"delta:v{version}"},
        )

    module = types.ModuleType("fake_dedup_stage")
    module.STAGE_SPEC = pipeline.StageSpec(name="dedup", inputs=("clean",), outputs=("deduped",), run=run)
    monkeypatch.setitem(sys.modules, "fake_dedup_stage", module)
    monkeypatch.setitem(pipeline.STAGES, "dedup", "fake_dedup_stage")
    return runs


def test_rerun_skips_until_input_or_config_changes(spark, tmp_path, counting_stage, capsys):
    out = str(tmp_path / "out")
    cfg = load_run_config(None, {"output": out})
    clean = spark.createDataFrame([("a", "x"), ("b", "y")], "id string, text string")
    ctx = pipeline.StageContext(spark, cfg, out, Manifest.load(out))
    ctx.write(clean, "clean")

    pipeline.run_stages(spark, cfg, ["dedup"])
    pipeline.run_stages(spark, cfg, ["dedup"])
    assert len(counting_stage) == 1, "second run must be skipped"
    assert "rows in" in capsys.readouterr().out

    pipeline.run_stages(spark, cfg, ["dedup"], force=True)
    assert len(counting_stage) == 2

    ctx.write(clean.union(spark.createDataFrame([("c", "z")], clean.schema)), "clean")
    pipeline.run_stages(spark, cfg, ["dedup"])
    assert len(counting_stage) == 3, "a new input version must rerun the stage"
    assert Manifest.load(out).stages["dedup"].rows_in == 3

    changed = load_run_config(None, {"output": out, "dedup.enabled": False})
    pipeline.run_stages(spark, changed, ["dedup"])
    assert len(counting_stage) == 4, "a config change must rerun the stage"


def test_old_table_files_are_vacuumed_after_a_stage(spark, tmp_path, counting_stage):
    def parquet_files(name):
        return sorted(p for p in (tmp_path / "out" / "tables" / name).rglob("*.parquet"))

    out = str(tmp_path / "out")
    clean = spark.createDataFrame([("a", "x"), ("b", "y")], "id string, text string")
    keep_all = load_run_config(None, {"output": out})
    pipeline.StageContext(spark, keep_all, out, Manifest.load(out)).write(clean, "clean")
    for _ in range(2):  # the default retention (a week) keeps an earlier version's files
        pipeline.run_stages(spark, keep_all, ["dedup"], force=True)
    one_version = len(parquet_files("deduped")) // 2
    assert one_version >= 1
    now = load_run_config(None, {"output": out, "vacuum_retention_hours": 0})
    pipeline.run_stages(spark, now, ["dedup"], force=True)
    assert len(parquet_files("deduped")) == one_version
    assert sorted(r.id for r in spark.read.format("parquet").load(
        [str(p) for p in parquet_files("deduped")]).collect()) == ["a"]
    pipeline.run_stages(spark, now, ["dedup"])
    assert len(counting_stage) == 3, "a vacuumed output is still up to date"
