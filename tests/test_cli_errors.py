"""Bad input on the command line: each mistake is one line on stderr and exit 2,
never a traceback."""

from __future__ import annotations

import pytest

from tokenmill.cli import main
from tokenmill.errors import UserError
from tokenmill.manifest import Manifest


def one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def train_config(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(f"run_dir: {tmp_path / 'run'}\n")
    return path


@pytest.mark.parametrize("flags, message", [
    (["--nproc", "0"], "--nproc must be >= 1, got 0"),
    (["--nproc", "-2"], "--nproc must be >= 1, got -2"),
    (["--max-restarts", "-1"], "--max-restarts must be >= 0, got -1"),
])
def test_bad_launcher_values(capsys, tmp_path, train_config, flags, message):
    err = one_line_error(capsys, ["train", "--config", str(train_config), "--shards", str(tmp_path / "s"), *flags])
    assert err == f"tokenmill train: error: {message}"
    assert not (tmp_path / "run").exists()


def test_set_below_a_scalar_field(capsys, tmp_path):
    err = one_line_error(capsys, ["run", "--output", str(tmp_path / "o"), "--input", "x", "--set", "output.x=1"])
    assert err == "tokenmill run: error: --set output.x: output is not a section (it holds a single value)"
    err = one_line_error(capsys, ["run", "--output", str(tmp_path / "o"), "--set", "etl.filters.min_words.x=1"])
    assert "--set etl.filters.min_words.x: etl.filters.min_words is not a section" in err
    err = one_line_error(capsys, ["run", "--output", str(tmp_path / "o"), "--set", "etl.nope.x=1"])
    assert err.startswith("tokenmill run: error: etl.nope: unknown field; allowed: filters, ")
    # An optional section that is unset starts empty, as in YAML; its own fields are named.
    err = one_line_error(capsys, ["run", "--output", str(tmp_path / "o"), "--set", "chat.too_long=cut"])
    assert err == "tokenmill run: error: chat.too_long: must be one of 'reject', 'truncate', got 'cut' (str)"
    # A setting that moved names its new place (one window length for every kind of data).
    err = one_line_error(capsys, ["run", "--output", str(tmp_path / "o"), "--set", "chat.seq_len=512"])
    assert err == "tokenmill run: error: chat.seq_len: this setting moved; set tokenize.seq_len instead"
    err = one_line_error(capsys, ["run", "--output", str(tmp_path / "o"), "--set", "=1"])
    assert "expected FIELD=VALUE" in err


def test_missing_and_non_yaml_config_files(capsys, tmp_path):
    out = ["--output", str(tmp_path / "o"), "--input", "x"]
    err = one_line_error(capsys, ["run", "--config", str(tmp_path / "missing.yaml"), *out])
    assert "config file not found" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("etl: [unclosed\n")
    assert "is not valid YAML" in one_line_error(capsys, ["run", "--config", str(bad), *out])
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    assert "must hold a mapping" in one_line_error(capsys, ["run", "--config", str(listed), *out])
    assert "config file not found" in one_line_error(capsys, ["train", "--config", str(tmp_path / "none.yaml")])


def test_unknown_stage_and_missing_input(capsys, tmp_path):
    err = one_line_error(capsys, ["run", "--stages", "etl,tokenise", "--output", str(tmp_path / "o")])
    assert err == "tokenmill run: error: --stages: unknown stage tokenise; allowed: etl, dedup, tokenize, shards"
    err = one_line_error(capsys, ["etl", "--output", str(tmp_path / "o")])
    assert "no input given: pass --input PATH" in err


@pytest.mark.parametrize("text", ['{"stages": {"etl": {"stage": "etl", "rows_in"', '["not", "a", "manifest"]',
                                  '{"stages": {"etl": {"stage": "etl", "rows": 3}}}'])
def test_torn_or_edited_manifest(tmp_path, text):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(UserError, match=r"manifest\.json .*(move it away|rerun)"):
        Manifest.load(tmp_path)


def test_torn_manifest_on_the_command_line(capsys, tmp_path):
    (tmp_path / "manifest.json").write_text('{"stages": ')
    err = one_line_error(capsys, ["report", str(tmp_path), "--html", str(tmp_path / "card.html")])
    assert "manifest.json" in err
