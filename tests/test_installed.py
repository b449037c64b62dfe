"""What users install: the wheel the bundle builds, installed (not editable), run
from a folder outside the checkout.

The wheel is built from the files git tracks (plus what an earlier build
leaves in ``build/lib``), with the build command of ``databricks.yml``'s
artifact, the way ``databricks bundle deploy`` builds it.
It is installed with pip into a new virtual environment; the dependencies
are those of the environment running the tests, reached through one line
of a ``.pth`` file (a folder added that way has its own ``.pth`` files
ignored, so the checkout's editable install stays off). Commands run with
that environment's ``tokenmill``, from a folder holding a decoy
``tokenmill/`` package that fails on import, with no PYTHONPATH: the driver
puts its script's folder first on ``sys.path``, and Spark starts its Python
workers in the working directory, so either would find the decoy or the
checkout if anything let them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DECOY = "the decoy tokenmill in the working directory was imported"


def tracked_files(prefix: str = "") -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--", prefix or "."], cwd=ROOT, check=True,
                         capture_output=True).stdout
    return [name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The bundle's wheel, built the bundle's way from the tracked files only (as a fresh clone has them)."""
    artifact = yaml.safe_load((ROOT / "databricks.yml").read_text())["artifacts"]["tokenmill_wheel"]
    assert (artifact["type"], artifact["path"]) == ("whl", ".")
    source = tmp_path_factory.mktemp("source")
    for name in tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes((ROOT / name).read_bytes())
    # What an earlier build in a checkout leaves behind: a module deleted since.
    (source / "build" / "lib" / "tokenmill").mkdir(parents=True)
    (source / "build" / "lib" / "tokenmill" / "deleted_since.py").write_text("STALE = True\n")
    argv = shlex.split(artifact["build"])
    assert argv[0] == "python3", artifact["build"]
    done = subprocess.run([sys.executable, *argv[1:]], cwd=source, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    wheels = list((source / "dist").glob("tokenmill-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(root), "platbase": str(root)}))
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install",
                           "--no-deps", "--no-index", "--quiet", str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return root


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory) -> Path:
    """A working folder outside the checkout, with a decoy package that must never be imported."""
    folder = tmp_path_factory.mktemp("elsewhere")
    (folder / "tokenmill").mkdir()
    (folder / "tokenmill" / "__init__.py").write_text(f"raise ImportError({DECOY!r})\n")
    return folder


def user_env(venv: Path) -> dict[str, str]:
    drop = {"PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "VIRTUAL_ENV", "PYTHONSAFEPATH"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def tokenmill(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "tokenmill"), *args], cwd=cwd, env=user_env(venv),
                          capture_output=True, text=True, timeout=600)


def test_the_wheel_holds_every_file_git_tracks_in_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    data_files = {name for name in tracked_files("tokenmill") if not name.endswith(".py")}
    assert "tokenmill/etl/data/bad_words.txt" in data_files
    assert data_files - names == set()
    assert {name for name in tracked_files("tokenmill") if name.endswith(".py")} - names == set()
    assert [name for name in names if "__pycache__" in name or name.endswith((".pyc", ".pyo"))] == []
    assert "tokenmill/deleted_since.py" not in names  # left in build/lib by an earlier build


PROBE = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    def packages(path):
        return [p for p in path if (Path(p or ".") / "tokenmill" / "__init__.py").is_file()]

    def worker(batches):
        import pyarrow as pa
        import sys
        for batch in batches:
            try:
                import tokenmill
                where = tokenmill.__file__
            except ImportError as exc:
                where = str(exc)
            yield pa.RecordBatch.from_pylist([{"where": where, "packages": json.dumps(packages(sys.path))}])

    import tokenmill
    from tokenmill.spark import get_spark

    row = get_spark(cores=1).range(1).mapInArrow(worker, "where string, packages string").first()
    print(json.dumps({"driver": tokenmill.__file__, "driver_packages": packages(sys.path),
                      "worker": row["where"], "worker_packages": json.loads(row["packages"])}))
""")


def test_driver_and_workers_import_the_installed_package_only(venv, elsewhere, tmp_path):
    """One folder on sys.path offers a ``tokenmill``: the environment's, never the checkout or the working folder."""
    probe = tmp_path / "probe.py"  # not in the working folder: Python puts a script's own folder first
    probe.write_text(PROBE)
    done = subprocess.run([str(venv / "bin" / "python"), str(probe)], cwd=elsewhere, env=user_env(venv),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    installed = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    assert seen["driver"] == str(installed / "tokenmill" / "__init__.py")
    assert seen["worker"] == seen["driver"]
    assert seen["driver_packages"] == [str(installed)]
    assert seen["worker_packages"] == [str(installed)]


def test_the_installed_pipeline_runs_outside_the_checkout(venv, elsewhere):
    made = tokenmill(venv, elsewhere, "sample", "raw", "--n-docs", "400")
    assert made.returncode == 0, made.stderr[-2000:]
    run = tokenmill(venv, elsewhere, "run", "--input", "raw", "--output", "out", "--set", "tokenize.seq_len=64",
                    "--set", "tokenize.vocab_size=512", "--set", "shards.val_fraction=0.1")
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.loads((elsewhere / "out" / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"etl", "dedup", "tokenize", "shards"}
    assert (elsewhere / "out" / "shards" / "train" / "index.json").is_file()


def test_the_installed_finetune_dry_run_outside_the_checkout(venv, elsewhere, tmp_path):
    from chat_tokenizers import CHATML

    from train_fixture import CHAT_SPECIALS, train_tokenizer, write_hf_model

    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": f"Where is parcel {i}?"},
                                         {"role": "assistant", "content": f"Parcel {i} left Lyon on Monday."}]}
            for i in range(40)]
    texts = [m["content"] for r in rows for m in r["messages"]] + ["system\nuser\nassistant\n"]
    tok = train_tokenizer(texts * 5, 512, CHAT_SPECIALS)
    tok.save(str(tmp_path / "tokenizer.json"))
    model = write_hf_model(tmp_path / "model", "llama", vocab_size=tok.get_vocab_size(), tokenizer_dir=tmp_path)
    (model / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "chat_template": CHATML, "bos_token": None,
        "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "model_max_length": 256}))
    (elsewhere / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = tokenmill(venv, elsewhere, "finetune", "--model", str(model), "--data", "chat.jsonl",
                     "--output", "ft", "--seq-len", "128", "--dry-run")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dry run" in done.stdout.lower(), done.stdout[-2000:]
    assert (elsewhere / "ft" / "manifest.json").is_file()
