"""Commands that write a folder delete nothing they did not write.

``tokenmill export --out`` refuses the run folder, a folder inside it or above
it, the base model folder, the working directory and its parents, a file, and
a folder of other files; it replaces an earlier export of the same run only
with --overwrite. ``tokenmill sample OUT_DIR`` replaces only an earlier
sample. Each refusal is one line, exit 2, and every file stays in place.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokenmill.cli import main

from test_cli_errors import one_line_error
from tiny_train import tiny_config


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root (relative) -> its bytes, None for a folder."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def run(llama_with_shards, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(root, run folder, base model): one training step, full fine-tuning of a tiny Llama, in this process."""
    from tokenmill.train import loop
    from tokenmill.train.config import CheckpointConfig, ModelSpec
    from tokenmill.train.distributed import free_port

    shards, base = llama_with_shards
    root = tmp_path_factory.mktemp("export_safety")
    cfg = tiny_config(shards, root / "run", model=ModelSpec(), init_from=str(base),
                      max_steps=1, global_batch_size=4, micro_batch_size=4,
                      checkpoint=CheckpointConfig(every_steps=100))
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        trainer = loop.Trainer(cfg)
        try:
            trainer.run()
        finally:
            trainer.close()
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return root, root / "run", base


def export(run_dir: Path, out, *flags: str) -> list[str]:
    return ["export", "--checkpoint", str(run_dir), "--out", str(out), *flags]


@pytest.mark.parametrize("case", ["run folder", "parent of the working directory", "user folder", "dot"])
def test_refused_targets_keep_every_file(run, tmp_path, monkeypatch, capsys, case):
    root, run_dir, base = run
    user = tmp_path / "d"
    (user / "inner").mkdir(parents=True)
    (user / "notes.txt").write_text("mine")
    (user / "inner" / "data.csv").write_text("a,b\n")
    out = {"run folder": run_dir, "parent of the working directory": "..", "user folder": user, "dot": "."}[case]
    monkeypatch.chdir(user / "inner")
    before = tree(root), tree(tmp_path)
    err = one_line_error(capsys, export(run_dir, out))
    assert err.startswith("tokenmill export: error: --out ")
    assert (tree(root), tree(tmp_path)) == before


def test_new_folder_then_overwrite(run, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    _, run_dir, _ = run
    out = tmp_path / "hf"
    out.mkdir()  # an empty folder is used
    assert main(export(run_dir, out)) == 0
    marker = json.loads((out / "tokenmill_export.json").read_text())
    assert marker["run_dir"] == str(run_dir.resolve()) and "config.json" in marker["files"]
    AutoModelForCausalLM.from_pretrained(out)  # the marker does not get in the way
    capsys.readouterr()
    before = tree(out)
    err = one_line_error(capsys, export(run_dir, out))
    assert "earlier export of this run" in err and "--overwrite" in err
    assert tree(out) == before
    assert main(export(run_dir, out, "--overwrite")) == 0
    assert tree(out) == before  # the same checkpoint again: the same bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no staging or old folder left beside it
    # A file the user added makes it more than an export: refused even with --overwrite.
    (out / "README.md").write_text("my notes")
    err = one_line_error(capsys, export(run_dir, out, "--overwrite"))
    assert "not an earlier export" in err and (out / "README.md").read_text() == "my notes"


def test_a_runs_own_export_from_before_the_marker_is_replaced(run, tmp_path, capsys):
    """The trainer exports into RUN/hf at every run's end: an older run's export there must not stop it."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(run[1], run_dir)
    own = run_dir / "hf"
    assert main(export(run_dir, own, "--overwrite")) == 0
    (own / "tokenmill_export.json").unlink()  # as exports were written before the marker
    assert main(export(run_dir, own, "--overwrite")) == 0
    assert (own / "tokenmill_export.json").is_file()
    # Outside the run, or with a file an export never writes, a folder without the marker is not ours.
    (own / "tokenmill_export.json").unlink()
    elsewhere = tmp_path / "copy"
    shutil.copytree(own, elsewhere)
    capsys.readouterr()
    assert "not an earlier export" in one_line_error(capsys, export(run_dir, elsewhere, "--overwrite"))
    (own / "notes.txt").write_text("mine")
    assert "not an earlier export" in one_line_error(capsys, export(run_dir, own, "--overwrite"))
    assert (own / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("case", ["inside the run", "base model", "inside the base model", "holds the run", "file"])
def test_run_and_base_model_folders_are_refused(run, tmp_path, capsys, case):
    root, run_dir, base = run
    (tmp_path / "a-file").write_text("x")
    out = {"inside the run": run_dir / "checkpoints" / "x", "base model": base, "inside the base model": base / "x",
           "holds the run": root, "file": tmp_path / "a-file"}[case]
    before = tree(root), tree(base), tree(tmp_path)
    err = one_line_error(capsys, export(run_dir, out))
    want = {"inside the run": "is inside the run folder", "base model": "is the run's base model folder",
            "inside the base model": "is inside the run's base model folder", "holds the run": "holds the run folder",
            "file": "is a file"}[case]
    assert want in err
    assert (tree(root), tree(base), tree(tmp_path)) == before


def test_sample_into_a_folder_of_user_files_is_refused(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["sample", str(out), "--n-docs", "400"]) == 0
    capsys.readouterr()
    sample = tree(out)
    assert main(["sample", str(out), "--n-docs", "400"]) == 0  # an earlier sample is replaced
    assert tree(out) == sample
    (out / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    err = one_line_error(capsys, ["sample", str(out), "--n-docs", "400"])
    assert "OUT_DIR" in err
    assert tree(tmp_path) == before


def test_shards_replace_only_earlier_shards(llama_with_shards, tmp_path, monkeypatch):
    from tokenmill.errors import UserError
    from tokenmill.shards import output

    shards, _ = llama_with_shards
    user = tmp_path / "mine"
    user.mkdir()
    (user / "dataset.json").write_text('{"format": "tokenmill-mds-v1"}')
    (user / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    with pytest.raises(UserError, match="is not empty and is not an earlier shards output"):
        output.clear_stale(user)  # the first thing every shards variant does
    monkeypatch.chdir(user)
    with pytest.raises(UserError, match="is the working directory"):
        output.clear_stale(Path("."))
    assert tree(tmp_path) == before
    assert output.check_output(shards) == shards.resolve()  # earlier shards: replaced by a rerun
    assert output.check_output(tmp_path / "new") == (tmp_path / "new").resolve()
