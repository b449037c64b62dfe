"""One reading of every location scheme: which are remote, and where plain files go."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenmill import locations
from tokenmill.errors import UserError
from tokenmill.train import data


@pytest.mark.parametrize("location, scheme, remote", [
    ("build/out", None, False),
    ("/data/out", None, False),
    ("file:///data/out", "file", False),
    ("/Volumes/main/raw/vol/out", None, False),
    ("dbfs:/Volumes/main/raw/vol/out", "dbfs", True),
    ("dbfs:/tmp/out", "dbfs", True),
    ("s3://bucket/out", "s3", True),
    ("abfss://box@acct.dfs.core.windows.net/out", "abfss", True),
    ("gs://bucket/out", "gs", True),
])
def test_schemes(location, scheme, remote):
    assert locations.scheme(location) == scheme
    assert locations.is_remote(location) is remote
    assert data.is_remote(location) is remote  # the trainer reads locations the same way


def test_plain_and_file_uri_paths_are_the_same_absolute_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert locations.local_dir("out") == tmp_path / "out"  # absolute: executors have another working folder
    assert locations.local_dir(f"file://{tmp_path}/out") == tmp_path / "out"
    assert locations.local_dir(f"file:{tmp_path}/out") == tmp_path / "out"
    assert locations.local_dir("/Volumes/c/s/v/out") == Path("/Volumes/c/s/v/out")
    assert locations.join("s3://b/out/", "tables", "clean") == "s3://b/out/tables/clean"


def test_dbfs_uris_map_to_their_databricks_mounts():
    assert locations.fuse_path("dbfs:/Volumes/c/s/v/out") == Path("/Volumes/c/s/v/out")
    assert locations.fuse_path("dbfs:/tmp/out") == Path("/dbfs/tmp/out")
    assert locations.fuse_path("s3://b/x") is None


@pytest.mark.parametrize("location", ["s3://bucket/out", "gs://b/out", "abfss://c@a.dfs.core.windows.net/o"])
def test_object_store_outputs_say_where_plain_files_cannot_go(location):
    with pytest.raises(UserError, match="not a folder this machine can open"):
        locations.local_dir(location)


def test_object_store_file_inputs_are_a_clear_error():
    from tokenmill.config.etl import EtlConfig, InputSpec
    from tokenmill.etl.ingest import plan_input

    with pytest.raises(UserError, match="give a local, file:// or /Volumes"):
        plan_input(InputSpec(path="s3://bucket/raw/web"), EtlConfig())
