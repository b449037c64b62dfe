"""End-to-end trainer runs with torchrun (gloo, CPU): exact resume after SIGKILL,
resuming a 2-rank checkpoint on 1 rank, export and generate.

One uninterrupted 2-rank run is shared by the tests of this module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import json

import pytest
import torch
import yaml

from tokenmill.typed_config import from_dict
from tokenmill.train.checkpoint import complete_checkpoints, load_model_weights
from train_fixture import write_fixture
from tokenmill.train.model import GPT, ModelConfig
from tokenmill.train.runlog import read_jsonl
from tokenmill.train.shared_memory import segments_held_by, stale_segments

from processes import descendants, kill_tree

REPO = Path(__file__).resolve().parents[1]
MAX_STEPS = 12
# How long one `tokenmill train` may take (and how long a kill test waits for its
# run to reach the step to kill at). A run takes well under a minute on an idle
# 2-core machine; the margin is for a machine busy with other work.
# TOKENMILL_TEST_TRAIN_TIMEOUT_S overrides it.
TRAIN_TIMEOUT_S = float(os.environ.get("TOKENMILL_TEST_TRAIN_TIMEOUT_S", "600"))

CONFIG = {
    "device": "cpu",  # exact-equality tests mean the CPU (gloo, fp32) even where CUDA is visible
    "seed": 7,
    "max_steps": MAX_STEPS,
    "global_batch_size": 8,
    "micro_batch_size": 4,
    "model": {"d_model": 64, "n_layers": 2, "n_heads": 4},
    "data": {"clean_stale_shm": False},
    "optim": {"lr": 3e-3, "warmup_steps": 3},
    "checkpoint": {"every_steps": 4, "keep_last": 10},
    "eval_batches": 2,
    "log_every": 4,
    "mlflow": False,
    "record_sample_ids": True,
}


def write_config(path: Path, shards: Path, run_dir: Path, **overrides) -> Path:
    cfg = {**CONFIG, **overrides, "run_dir": str(run_dir)}
    cfg["data"] = {**CONFIG["data"], "shards": str(shards)}
    path.write_text(yaml.safe_dump(cfg))
    return path


def train_command(config: Path, nproc: int) -> list[str]:
    return [sys.executable, "-m", "tokenmill.cli", "train", "--config", str(config), "--nproc", str(nproc)]


def launcher_env(**extra: str) -> dict[str, str]:
    """This environment without a torchrun rank's variables: the command starts its own ranks."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID")}
    return {**env, **extra}


def run_train(config: Path, nproc: int, timeout: float = TRAIN_TIMEOUT_S) -> subprocess.CompletedProcess:
    env = launcher_env()
    result = subprocess.run(
        train_command(config, nproc), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def events(run_dir: Path, name: str) -> list[dict]:
    return [e for e in read_jsonl(run_dir / "events.jsonl") if e["event"] == name]


def samples_by_step(run_dir: Path) -> dict[int, list[int]]:
    """step -> seq_ids used in that step, all ranks together; each step must appear once per rank."""
    by_step: dict[int, list[int]] = {}
    files = sorted((run_dir / "samples").glob("rank*.jsonl"))
    assert files
    for path in files:
        steps = [r["step"] for r in read_jsonl(path)]
        assert steps == list(range(1, len(steps) + 1)), f"{path}: steps {steps}"
        for record in read_jsonl(path):
            by_step.setdefault(record["step"], []).extend(record["ids"])
    return by_step


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    last = complete_checkpoints(run_dir / "checkpoints")[-1]
    state = torch.load(last / "trainer_state.pt", weights_only=False)
    model = GPT(from_dict(ModelConfig, state["model_config"]))
    load_model_weights(last, model)
    return model.state_dict()


def streaming_segments() -> set[str]:
    """streaming's shared-memory segments on this machine: /dev/shm/NNNNNN_<name>."""
    return {name for name in os.listdir("/dev/shm") if name[:6].isdigit() and name[6:7] == "_"}


def kill_mid_run(config: Path, run_dir: Path, nproc: int, after_step: int, delay: str = "0.3") -> None:
    """Start ``tokenmill train`` with slow steps; once rank 0 is past ``after_step``,
    SIGKILL everything (launcher, torchrun, every rank). Needs record_sample_ids."""
    env = launcher_env(TOKENMILL_STEP_DELAY=delay)  # slow steps, so the kill lands mid-run
    proc = subprocess.Popen(train_command(config, nproc), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        steps = [r["step"] for r in read_jsonl(run_dir / "samples" / "rank0.jsonl")]
        if steps and steps[-1] >= after_step:
            break
        assert proc.poll() is None, "run ended before it could be killed"
        time.sleep(0.05)
    held = segments_held_by([proc.pid, *descendants(proc.pid)])  # its own, and any it walked
    # The ranks are not our children: wait until they are gone too, so the rerun
    # does not meet their shared memory while they still look alive.
    assert kill_tree(proc.pid) == [], "processes of the killed run are still alive"
    proc.wait()
    # What the killed ranks' exit handlers would have removed: else every later
    # dataset on this machine walks (and holds a descriptor for) their segments.
    # Only those no live process holds: the ranks also mapped the segments of any
    # dataset open next to them (another test's), which must stay.
    for name in set(stale_segments()) & held:
        Path("/dev/shm", name).unlink(missing_ok=True)
    assert not events(run_dir, "end"), "the run finished before the kill"


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("shards"), n_train=256, n_val=32, seq_len=32)


@pytest.fixture(scope="module")
def reference_run(shards, tmp_path_factory) -> Path:
    """An uninterrupted 2-rank run of MAX_STEPS steps."""
    root = tmp_path_factory.mktemp("reference")
    run_dir = root / "run"
    run_train(write_config(root / "config.yaml", shards, run_dir), nproc=2)
    return run_dir


def test_reference_run_learns_and_logs(reference_run):
    ends = events(reference_run, "end")
    assert len(ends) == 1 and ends[0]["step"] == MAX_STEPS
    losses = [r["loss"] for r in read_jsonl(reference_run / "metrics.jsonl") if "loss" in r]
    assert losses[-1] < losses[0] - 1.0  # the synthetic grammar is easy to learn
    assert ends[0]["val_loss"] < 5.0
    assert [e["step"] for e in events(reference_run, "checkpoint")] == [4, 8, 12]
    assert (reference_run / "loss.png").stat().st_size > 1000
    ids = [i for step_ids in samples_by_step(reference_run).values() for i in step_ids]
    assert len(ids) == MAX_STEPS * 8 and len(set(ids)) == len(ids)  # within one epoch: no repeats


def test_sigkill_and_autoresume_match_uninterrupted_run(shards, reference_run, tmp_path):
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", shards, run_dir)
    kill_mid_run(config, run_dir, nproc=2, after_step=6, delay="0.25")
    killed_at = max(r["step"] for r in read_jsonl(run_dir / "samples" / "rank0.jsonl"))
    assert 6 <= killed_at < MAX_STEPS

    run_train(config, nproc=2)  # same command again: autoresume

    (resume,) = events(run_dir, "resume")
    assert resume["step"] in (4, 8) and resume["step"] <= killed_at
    assert events(run_dir, "end")[0]["loss"] == events(reference_run, "end")[0]["loss"]
    assert events(run_dir, "end")[0]["val_loss"] == events(reference_run, "end")[0]["val_loss"]
    ours, ref = final_weights(run_dir), final_weights(reference_run)
    assert ours.keys() == ref.keys()
    for name in ref:
        assert torch.equal(ours[name], ref[name]), name
    # Every step's samples were used exactly once, and they are the same samples.
    assert samples_by_step(run_dir) == samples_by_step(reference_run)


def test_two_rank_checkpoint_resumes_on_one_rank(shards, reference_run, tmp_path):
    run_dir = tmp_path / "run"
    # Start from the 2-rank run as it was at step 8.
    shutil.copytree(reference_run / "checkpoints" / "step_00000008", run_dir / "checkpoints" / "step_00000008")
    (run_dir / "samples").mkdir()
    for path in (reference_run / "samples").glob("rank*.jsonl"):
        rows = [r for r in read_jsonl(path) if r["step"] <= 8]
        (run_dir / "samples" / path.name).write_text("".join(f'{{"step": {r["step"]}, "ids": {r["ids"]}}}\n' for r in rows))
    config = write_config(tmp_path / "config.yaml", shards, run_dir)

    run_train(config, nproc=1)

    (resume,) = events(run_dir, "resume")
    assert (resume["step"], resume["saved_world_size"], resume["world_size"]) == (8, 2, 1)
    # Same global batches (sample ids) as the 2-rank run, so the same math up
    # to floating-point summation order.
    ours_steps, ref_steps = samples_by_step(run_dir), samples_by_step(reference_run)
    for step in range(1, MAX_STEPS + 1):
        assert sorted(ours_steps[step]) == sorted(ref_steps[step]), step
    end, ref_end = events(run_dir, "end")[0], events(reference_run, "end")[0]
    assert end["loss"] == pytest.approx(ref_end["loss"], rel=1e-4)
    ours, ref = final_weights(run_dir), final_weights(reference_run)
    for name in ref:
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-3, atol=1e-4)


def test_export_is_a_transformers_model_with_the_checkpoints_logits(reference_run, tmp_path):
    """The from-scratch MPT-style run exports as MptForCausalLM; transformers gives its logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tokenmill.cli import main
    from tokenmill.train.export import load_from_checkpoint

    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(reference_run), "--out", str(out), "--max-shard-size", "100KB"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["MptForCausalLM"] and config["eos_token_id"] == 0
    assert len(json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]) == 1 + 2 * 6 + 1
    assert len(list(out.glob("model-*.safetensors"))) > 1
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    model, state = load_from_checkpoint(reference_run)
    assert state["step"] == MAX_STEPS
    batch = torch.randint(0, model.cfg.vocab_size, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(batch).logits, model(batch), rtol=1e-5, atol=1e-5)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.eos_token_id == 0 and tok.decode(tok("The cat sees").input_ids) == "The cat sees"


def test_generate_prints_a_continuation(reference_run, tmp_path, capsys):
    from tokenmill.cli import main

    assert main(["generate", "--checkpoint", str(reference_run), "--prompt", "The cat", "--max-new-tokens", "12"]) == 0
    text = capsys.readouterr().out.strip()
    assert text.startswith("The cat") and len(text) > len("The cat")
    # Greedy decoding is deterministic.
    args = ["generate", "--checkpoint", str(reference_run), "--prompt", "A dog", "--temperature", "0"]
    main(args)
    first = capsys.readouterr().out
    main(args)
    assert capsys.readouterr().out == first
    # The exported folder generates the same text as the checkpoint.
    out = tmp_path / "hf"
    main(["export", "--checkpoint", str(reference_run), "--out", str(out)])
    capsys.readouterr()
    main(["generate", "--checkpoint", str(out), "--prompt", "A dog", "--temperature", "0"])
    assert capsys.readouterr().out == first


def test_sampling_rules(reference_run):
    from tokenmill.train.export import load_from_checkpoint
    from tokenmill.train.generate import sample

    model, _ = load_from_checkpoint(reference_run)
    prompt = [5, 6, 7]

    def argmax_steps(n):  # greedy decoding written out, as the reference
        ids, out = list(prompt), []
        with torch.no_grad():
            for _ in range(n):
                out.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
                ids.append(out[-1])
        return out

    greedy = sample(model, prompt, 6, temperature=0, top_k=0, eos_ids={None}, seed=0)
    assert greedy == argmax_steps(6)
    # top-k 1 is greedy whatever the temperature; max_new_tokens bounds the output.
    assert sample(model, prompt, 6, temperature=1.5, top_k=1, eos_ids=set(), seed=3) == greedy
    assert sample(model, prompt, 2, temperature=0, top_k=0, eos_ids=set(), seed=0) == greedy[:2]
    # Generation stops at an EOS id and does not print it.
    stop = greedy[3]
    first_stop = greedy.index(stop)
    assert sample(model, prompt, 6, temperature=0, top_k=0, eos_ids={stop}, seed=0) == greedy[:first_stop]
    # Sampling with top-k draws only from the k most likely tokens.
    with torch.no_grad():
        top3 = set(torch.topk(model(torch.tensor([prompt]))[0, -1], 3).indices.tolist())
    firsts = {sample(model, prompt, 1, temperature=5.0, top_k=3, eos_ids=set(), seed=s)[0] for s in range(40)}
    assert firsts <= top3 and len(firsts) > 1


def test_generate_rejects_a_missing_checkpoint(tmp_path, capsys):
    from tokenmill.cli import main

    assert main(["generate", "--checkpoint", str(tmp_path / "nope"), "--prompt", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_failed_ranks_give_their_exit_code_and_how_to_resume(shards, tmp_path):
    config = write_config(tmp_path / "train.yaml", shards, tmp_path / "run")
    env = launcher_env(TOKENMILL_STEP_DELAY="not-a-number")  # every rank fails once it starts its steps
    result = subprocess.run(train_command(config, 2), cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=TRAIN_TIMEOUT_S)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Root Cause (first observed failure)" in result.stderr  # torchrun's table of the failed ranks
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tokenmill train: ranks exited with code 1;") and "Run the same command again" in last
