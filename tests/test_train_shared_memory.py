"""A process that trains again and again (a notebook, this test session) must
not keep streaming's shared memory and file descriptors of its finished runs."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from multiprocessing import resource_tracker
from pathlib import Path

from tokenmill.train import loop
from tokenmill.train.config import DataConfig
from train_fixture import write_fixture
from tokenmill.train.distributed import free_port
from tokenmill.train.runlog import read_jsonl
from tokenmill.train.shared_memory import StreamingMemory, segments_held_by

from processes import shared_memory_of_others
from test_train_runs import streaming_segments
from tiny_train import tiny_config


def open_descriptors() -> int:
    # Shared memory starts multiprocessing's resource tracker once per process and
    # keeps a pipe to it: started first, it is in every count, not only the first test's.
    resource_tracker.ensure_running()
    gc.collect()  # a finished run's process group is freed with its cycles
    return len(os.listdir("/proc/self/fd"))


def test_runs_in_one_process_release_their_shared_memory(tmp_path, one_rank, monkeypatch):
    shards = write_fixture(tmp_path / "shards", n_train=16, n_val=4, seq_len=16)
    before = streaming_segments()
    counts = []
    for run in range(3):
        monkeypatch.setenv("MASTER_PORT", str(free_port()))  # a fresh process group each run
        loop.train(tiny_config(shards, tmp_path / f"run{run}", max_steps=2, global_batch_size=4,
                               micro_batch_size=4, eval_batches=1))
        counts.append(open_descriptors())
        # Segments another live run on this machine holds are not this run's.
        left = streaming_segments() - before - shared_memory_of_others()
        assert not left, f"a finished run left its shared memory behind: {sorted(left)}"
    # Before, each run kept its handles and opened every earlier run's: the count grew every run.
    assert counts[2] == counts[1], counts


def test_the_scope_releases_what_a_dataset_opened(tmp_path):
    from streaming import StreamingDataset

    shards = write_fixture(tmp_path / "shards", n_train=16, n_val=4, seq_len=16)
    start = open_descriptors()
    for _ in range(2):
        with StreamingMemory():
            dataset = StreamingDataset(local=str(Path(shards) / "train"), batch_size=4)
            assert sum(1 for _ in dataset) == 16
            assert open_descriptors() > start
        del dataset
        assert open_descriptors() == start


OPEN_DATASETS = """
import os, sys, time
from pathlib import Path
from streaming import StreamingDataset
from tokenmill.train.shared_memory import one_registration_at_a_time
local, ready, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
(ready / str(os.getpid())).touch()
while len(list(ready.iterdir())) < 2:  # both processes begin at the same moment, imports done
    time.sleep(0.002)
collisions, datasets = 0, []
for _ in range(n):  # each stays registered (as in a notebook), so each search walks more prefixes
    try:
        with one_registration_at_a_time():
            datasets.append(StreamingDataset(local=local, batch_size=4))
    except FileExistsError:
        collisions += 1
print(collisions)
"""


def test_two_runs_opening_datasets_at_once_do_not_collide(tmp_path):
    # Without the lock, two such processes collided on 10 and 14 of their 40 datasets here.
    shards = write_fixture(tmp_path / "shards", n_train=16, n_val=4, seq_len=16)
    ready = tmp_path / "ready"
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_DATASETS, str(Path(shards) / "train"), str(ready), "40"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for (out, err), p in zip(results, procs):
        assert p.returncode == 0, err[-2000:]
        assert out.split()[-1] == "0", f"{out.split()[-1]} of 40 datasets collided"


def test_a_lock_held_too_long_only_delays_the_run(monkeypatch, capsys):
    import fcntl
    import tempfile

    from tokenmill.train import shared_memory

    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(shared_memory, "LOCK_WAIT_S", 0.3)
    with open(Path(tempfile.gettempdir()) / shared_memory.LOCK_FILE, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another run that never lets go
        with shared_memory.one_registration_at_a_time():
            pass
    assert "opening the dataset without it" in capsys.readouterr().err


HOLD_A_DATASET = """
import sys
from streaming import StreamingDataset
dataset = StreamingDataset(local=sys.argv[1], batch_size=4)
print("ready", flush=True)
sys.stdin.read()  # a live run: holds its segments until the test lets go
"""


def test_the_sweep_frees_a_killed_runs_segments_and_spares_live_runs(tmp_path, one_rank):
    from multiprocessing import shared_memory

    from streaming.base.constant import LOCALS

    shards = write_fixture(tmp_path / "shards", n_train=16, n_val=4, seq_len=16)
    live = subprocess.Popen([sys.executable, "-c", HOLD_A_DATASET, str(Path(shards) / "train")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    stale = Path("/dev/shm", f"999990_{LOCALS}")
    not_streamings = Path("/dev/shm", "999991_tokenmill_test")
    try:
        assert live.stdout.readline().strip() == "ready"
        live_segments = segments_held_by([live.pid])
        assert live_segments
        # A killed run's segment: made, then closed without unlink, so no process holds it.
        stale.unlink(missing_ok=True)  # left by a test run killed here before
        killed = shared_memory.SharedMemory(name=stale.name, create=True, size=64)
        killed.close()
        resource_tracker.unregister(killed._name, "shared_memory")  # else this process unlinks it at exit
        not_streamings.write_bytes(b"x")

        trainer = loop.Trainer(tiny_config(shards, tmp_path / "run", max_steps=1, global_batch_size=4,
                                           micro_batch_size=4, data=DataConfig(shards=str(shards))))
        trainer.close()

        assert not stale.exists() and not_streamings.exists()
        assert all(Path("/dev/shm", name).exists() for name in live_segments), "a live run lost its memory"
        freed = [e for e in read_jsonl(tmp_path / "run" / "events.jsonl") if e["event"] == "stale_shared_memory_freed"]
        assert stale.name in freed[0]["segments"] and not set(freed[0]["segments"]) & live_segments
    finally:
        live.communicate("", timeout=60)
        stale.unlink(missing_ok=True)
        not_streamings.unlink(missing_ok=True)
