"""Shared fixtures. One local Spark session serves the whole test run."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENMILL_PROGRESS_S", "0")
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
# The tests run many short Spark jobs on tiny data: a JVM that only
# uses the quick C1 compiler (no C2 optimizing in the background) and the
# serial collector spends about half the CPU time of the default one here.
# Child processes (a `tokenmill run` a test starts) inherit it.
os.environ.setdefault("TOKENMILL_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
# The models trained here are tiny: one intra-op thread does each op faster than
# two that synchronise on every matmul (torchrun's ranks run with one already).
# Set before torch is imported; Spark's Python workers and other children inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def spark():
    from tokenmill.spark import get_spark

    session = get_spark("tokenmill-tests", cores=2)
    session.conf.set("spark.sql.shuffle.partitions", "4")
    yield session


@pytest.fixture(scope="session")
def llama_with_shards(tmp_path_factory):
    """(shards, a tiny Llama checkpoint that uses their tokenizer), shared by the fine-tuning tests."""
    from train_fixture import write_fixture, write_hf_model

    root = tmp_path_factory.mktemp("llama_with_shards")
    shards = write_fixture(root / "shards", n_train=96, n_val=8, seq_len=32)
    return shards, write_hf_model(root / "model", "llama", vocab_size=512, tokenizer_dir=shards)


@pytest.fixture
def one_rank(monkeypatch):
    """A 1-rank gloo process group in this process, removed afterwards."""
    import torch.distributed as dist

    from tokenmill.train.distributed import free_port

    for name, value in {
        "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
    }.items():
        monkeypatch.setenv(name, value)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.fixture
def make_trainer(one_rank):
    """``make_trainer(cfg)``: a Trainer in this process as one rank, closed afterwards."""
    from tokenmill.train import loop

    made = []

    def make(cfg):
        made.append(loop.Trainer(cfg))
        return made[-1]

    yield make
    for trainer in made:
        trainer.close()
