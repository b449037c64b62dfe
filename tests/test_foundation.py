"""Config loading, the manifest's accounting rule and Delta stage tables."""

from __future__ import annotations

import json

import pytest
from deltalake import DeltaTable

from tokenmill import tables
from tokenmill.cli import main as cli_main
from tokenmill.config import RunConfig, from_dict, load_run_config
from tokenmill.errors import ConfigError
from tokenmill.manifest import AccountingError, Manifest, StageRecord


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"^tokenize\.seq_len: must be an integer, got 'a'"):
        from_dict(RunConfig, {"tokenize": {"seq_len": "a"}})
    with pytest.raises(ConfigError, match=r"^inputs\[0\]\.format: must be one of"):
        from_dict(RunConfig, {"inputs": [{"path": "x", "format": "csv"}]})
    with pytest.raises(ConfigError, match=r"^etl\.nonsense: unknown field"):
        from_dict(RunConfig, {"etl": {"nonsense": 1}})


def test_config_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inputs: [a, {path: b, source: web}]\noutput: o\n")
    cfg = load_run_config(path, {"output": "p"})
    assert [i.path for i in cfg.inputs] == ["a", "b"]
    assert cfg.inputs[1].source == "web"
    assert cfg.output == "p"


def test_bad_flag_and_bad_config_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("etl: {preset: poetry}\n")
    assert cli_main(["run", "--config", str(bad), "--input", "x", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tokenmill run: error: etl.preset: must be one of 'auto', 'prose', 'code', got 'poetry' (str)"]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["run", "--no-such-flag"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "tokenmill: error: unrecognized arguments: --no-such-flag"
    ]


def test_manifest_refuses_lost_rows(tmp_path):
    with pytest.raises(AccountingError):
        StageRecord("etl", rows_in=10, rows_out=7, dropped={"too_short": 2})
    m = Manifest.load(tmp_path)
    m.record(StageRecord("etl", rows_in=10, rows_out=7, dropped={"too_short": 3, "never": 0}))
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert data["stages"]["etl"]["dropped"] == {"too_short": 3}
    assert Manifest.load(tmp_path).stages["etl"].rows_out == 7


def test_delta_table_versions_and_rows(spark, tmp_path):
    location = str(tmp_path / "tables" / "t")
    df = spark.createDataFrame([(1, "a", [1, 2]), (2, "b", [3])], "id long, text string, toks array<int>")
    assert tables.write(df, location) == 0
    assert tables.write(df.limit(1), location) == 1
    # delta-rs opens it on its own: two versions, one row now.
    table = DeltaTable(location)
    assert table.version() == 1
    assert [h["version"] for h in table.history()] == [1, 0]
    assert table.to_pyarrow_table().num_rows == 1
    assert tables.row_count(spark, location) == 1
    assert sorted(r.id for r in tables.read(spark, location).collect()) == [1]


def test_delta_replace_where_keeps_other_stages_rows(spark, tmp_path):
    location = str(tmp_path / "rejects")
    schema = "id string, stage string"
    tables.write(spark.createDataFrame([("a", "etl"), ("b", "etl")], schema), location, replace_where=("stage", "etl"))
    tables.write(spark.createDataFrame([("c", "dedup")], schema), location, replace_where=("stage", "dedup"))
    tables.write(spark.createDataFrame([("d", "etl")], schema), location, replace_where=("stage", "etl"))
    rows = sorted((r.id, r.stage) for r in tables.read(spark, location).collect())
    assert rows == [("c", "dedup"), ("d", "etl")]


def test_empty_table_keeps_its_schema(spark, tmp_path):
    location = str(tmp_path / "empty")
    tables.write(spark.createDataFrame([], "id string, n long"), location)
    assert tables.row_count(spark, location) == 0
    assert tables.read(spark, location).columns == ["id", "n"]
