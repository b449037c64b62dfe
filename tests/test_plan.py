"""tokenmill plan: the compute budget's figures, its input parsing and its errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tokenmill import cli
from tokenmill.errors import UserError
from tokenmill.plan import RunEstimate, failure_budget, parse_size, plan, run_estimate, tokens_from_manifest

from stage_facts import shards_extra


def test_published_figure_30b_on_600b_tokens():
    """~3,000 H100-days and ~$500k at $7 per H100-hour, within 15% (the talk's own accuracy)."""
    p = plan(30e9, 600e9, gpu="h100", usd_per_gpu_hour=7)
    assert p["flops"] == pytest.approx(1.08e23)
    assert p["gpu_days"] == pytest.approx(1.08e23 / (989e12 * 0.4) / 86400)
    assert p["gpu_days"] == pytest.approx(3000, rel=0.15)
    assert p["cost_usd"] == pytest.approx(500_000, rel=0.15)
    # "3,000 GPU-days becomes 6 days on 512 GPUs"
    assert p["wall_days"] == pytest.approx(6, rel=0.15)


def test_defaults_are_the_published_setup():
    p = plan(30e9, 600e9)
    i = p["inputs"]
    assert (i["gpu"], i["mfu"], i["usd_per_gpu_hour"], i["gpus"]) == ("h100", 0.4, 7.0, 512)
    assert p["cost_usd"] == pytest.approx(p["gpu_days"] * 24 * 7)


def test_cli_json_matches_plan(capsys):
    assert cli.main(["plan", "--params", "30B", "--tokens", "600B", "--gpu", "h100", "--mfu", "0.4",
                     "--usd-per-gpu-hour", "7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == json.loads(json.dumps(plan(30e9, 600e9)))
    assert round(out["gpu_days"], 1) == 3159.8 and round(out["cost_usd"]) == 530839


def test_cli_table_is_readable(capsys):
    assert cli.main(["plan", "--params", "30B", "--tokens", "600B"]) == 0
    text = capsys.readouterr().out
    assert "3,159.8 GPU-days = 6.2 days on 512 GPUs" in text
    assert "$530,839 at $7/GPU-hour" in text
    assert "3.16 expected" in text and "every 2.8 h" in text


@pytest.mark.parametrize("text,value", [
    ("30B", 30e9), ("125M", 125e6), ("1.5T", 1.5e12), ("7e9", 7e9), ("600_000", 6e5),
    ("2k", 2e3), ("13b", 13e9), (" 70 B ", 70e9), ("1,000", 1e3), ("8G", 8e9), ("1.2e3M", 1.2e9),
])
def test_parse_size(text, value):
    assert parse_size(text, "--params") == value


@pytest.mark.parametrize("text", ["", "abc", "-5B", "0", "1.5X", "nan", "inf", "B", "0.5"])
def test_parse_size_rejects_with_the_flag_name(text):
    with pytest.raises(UserError, match=r"^--tokens: "):
        parse_size(text, "--tokens")


def test_missing_side_is_chinchilla_optimal():
    p = plan(params=7e9)
    assert p["inputs"]["tokens"] == 140e9 and p["inputs"]["tokens_from"] == "chinchilla"
    p = plan(tokens=2e12)
    assert p["inputs"]["params"] == 100e9 and p["inputs"]["params_from"] == "chinchilla"
    p = plan(params=7e9, tokens=1e12)
    assert p["tokens_per_param"] == pytest.approx(1e12 / 7e9) and p["chinchilla_tokens"] == 140e9
    with pytest.raises(UserError, match="--params/--tokens"):
        plan()


def test_same_compute_alternatives_trade_serving_cost_for_loss():
    p = plan(30e9, 600e9)
    rows = p["same_compute"]
    assert [r["tokens_per_param"] for r in rows] == [20, 40, 100, 200]
    for r in rows:
        assert 6 * r["params"] * r["tokens"] == pytest.approx(p["flops"])
        assert r["tokens"] / r["params"] == pytest.approx(r["tokens_per_param"])
        assert r["cost_usd"] == p["cost_usd"]
    assert rows[0]["params"] == pytest.approx(30e9)
    serve = [r["serve_flops_per_token"] for r in rows]
    loss = [r["loss_estimate"] for r in rows]
    assert serve == sorted(serve, reverse=True) and serve[-1] == pytest.approx(2 * rows[-1]["params"])
    assert loss == sorted(loss)  # compute-optimal (20/param) has the lowest loss at equal compute


def test_same_model_alternatives_cost_more_and_lose_less():
    rows = plan(30e9, 600e9)["same_model"]
    assert [r["tokens"] for r in rows] == [600e9, 1.2e12, 3e12, 6e12]
    assert rows[3]["cost_usd"] == pytest.approx(10 * rows[0]["cost_usd"])
    loss = [r["loss_estimate"] for r in rows]
    assert loss == sorted(loss, reverse=True)


def test_failures_and_young_interval_for_the_published_run():
    f = plan(30e9, 600e9)["failures"]
    assert f["expected_failures"] == pytest.approx(3159.8 / 1000, rel=1e-4)
    assert f["cluster_mtbf_hours"] == 24 * 1000 / 512 == 46.875
    assert f["checkpoint_interval_hours"] == pytest.approx(math.sqrt(2 * (5 / 60) * 46.875))
    assert f["checkpoints"] == 53
    lost = f["hours_lost_by_cause"]
    assert lost["checkpointing"] == pytest.approx(53 * 5 / 60)
    assert lost["recompute"] == pytest.approx(f["expected_failures"] * f["checkpoint_interval_hours"] / 2)
    assert lost["restarts"] == pytest.approx(f["expected_failures"] * 0.25)
    assert f["hours_lost"] == pytest.approx(sum(lost.values()))


def test_young_interval_minimizes_lost_time():
    def lost(interval_h: float) -> float:  # checkpoint writes + half an interval per failure
        train_h, delta, mtbf = 2000.0, 0.1, 40.0
        return train_h / interval_h * delta + train_h / mtbf * interval_h / 2

    tau = failure_budget(2000.0 * 100, 100, 0.1, 0.25, 24 * 1000 / 100 / 40)["checkpoint_interval_hours"]
    assert tau == pytest.approx(math.sqrt(2 * 0.1 * 40))
    assert all(lost(tau) < lost(tau * k) for k in (0.5, 0.8, 1.25, 2.0))


def test_short_run_checkpoints_once():
    f = plan(125e6, gpus=8)["failures"]
    assert f["checkpoints"] == 1 and f["expected_failures"] < 0.01


def test_manifest_token_count(tmp_path, capsys):
    nested = tmp_path / "manifest.json"
    splits = {"train": {"sequences": 1, "tokens": 2_000_000, "shards": 1}, "val": {"sequences": 1, "tokens": 1, "shards": 1}}
    nested.write_text(json.dumps({"stages": {"shards": {"extra": shards_extra(splits=splits)}}}))
    assert tokens_from_manifest(nested) == 2e6
    top = tmp_path / "top.json"
    top.write_text(json.dumps({"tokens": 123456}))
    assert tokens_from_manifest(top) == 123456
    assert cli.main(["plan", "--manifest", str(nested), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["inputs"]["tokens"] == 2e6 and out["inputs"]["params"] == 1e5


@pytest.mark.parametrize("content,message", [
    (json.dumps({"stages": {"etl": {}}}), "no token count"),
    (json.dumps({"stages": {"shards": {"extra": {"splits": {}}}}}), "the shards record in manifest.json lacks location, remote, format"),
    (json.dumps({"tokens": "many"}), "no token count"),
    (json.dumps({"tokens": True}), "no token count"),
    (json.dumps([1, 2]), "no token count"),
    ("{not json", "not valid JSON"),
])
def test_bad_manifest(tmp_path, content, message):
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(UserError, match=f"^--manifest: .*{message}"):
        tokens_from_manifest(path)


def test_missing_manifest_and_both_sources_exit_2(tmp_path, capsys):
    assert cli.main(["plan", "--manifest", str(tmp_path / "nope.json")]) == 2
    assert "--manifest: file not found" in capsys.readouterr().err
    assert cli.main(["plan", "--tokens", "1B", "--manifest", str(tmp_path / "m.json")]) == 2
    assert "give one of them" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs,flag", [
    ({"mfu": 0}, "--mfu"), ({"mfu": 1.5}, "--mfu"), ({"gpus": 0}, "--gpus"),
    ({"usd_per_gpu_hour": -1}, "--usd-per-gpu-hour"), ({"checkpoint_minutes": 0}, "--checkpoint-minutes"),
    ({"restart_minutes": float("nan")}, "--restart-minutes"), ({"gpu": "tpu9"}, "--gpu"),
    ({"failures_per_1000_gpu_days": 0}, "--failures-per-1000-gpu-days"), ({"peak_tflops": -3}, "--peak-tflops"),
])
def test_bad_values_name_their_flag(kwargs, flag):
    with pytest.raises(UserError, match=f"^{flag}: "):
        plan(30e9, 600e9, **kwargs)


def test_gpu_table_and_custom_peak():
    a100 = plan(30e9, 600e9, gpu="a100", usd_per_gpu_hour=7)
    assert a100["gpu_days"] == pytest.approx(plan(30e9, 600e9)["gpu_days"] * 989 / 312)
    custom = plan(30e9, 600e9, gpu="mygpu", peak_tflops=500, usd_per_gpu_hour=3)
    assert custom["inputs"]["peak_flops"] == 500e12 and custom["cost_usd"] == pytest.approx(custom["gpu_days"] * 72)


def test_cli_bad_flag_is_one_line_exit_2(capsys):
    assert cli.main(["plan", "--params", "30Q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--params" in err


def test_plan_imports_nothing_heavy():
    code = ("import sys, tokenmill.plan; "
            "print(sorted(m for m in ('pyspark', 'torch', 'numpy', 'pandas', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("device, key", [
    ("NVIDIA A10G", "a10g"), ("NVIDIA A100-SXM4-80GB", "a100"), ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA L4", "l4"), ("NVIDIA L40S", "l40s"), ("NVIDIA GB200", "gb200"),
    ("NVIDIA B200", "b200"), ("Tesla V100-SXM2-16GB", "v100"), ("AMD Instinct MI300X", "mi300x"),
])
def test_one_peak_table_for_mfu_plan_and_preflight(device, key):
    from tokenmill import gpus, plan as plan_module
    from tokenmill.train.runlog import peak_flops

    assert gpus.gpu_for_device(device) == key
    assert peak_flops(device) == plan_module.GPUS[key].peak_flops == gpus.GPUS[key].peak_flops
    assert peak_flops("Some New Accelerator") is None


def test_run_estimate_is_plan_for_a_configured_run():
    """The trainer's FLOPs per token stand for 6 N; no GPU given prices the default one and says so."""
    e = run_estimate(params=125_000_000, flops_per_token=6 * 130e6, tokens=2_000_000, gpu=None, gpus=4, mfu=0.5)
    p = plan(params=130e6, tokens=2_000_000, gpu="h100", mfu=0.5, gpus=4)
    assert isinstance(e, RunEstimate)
    assert (e.params, e.tokens, e.gpu, e.gpu_assumed, e.gpus, e.usd_per_gpu_hour) == (125_000_000, 2_000_000, "h100",
                                                                                     True, 4, 7.0)
    assert e.flops == p["flops"] and e.gpu_hours == p["gpu_hours"] and e.cost_usd == p["cost_usd"]
    assert e.wall_hours == pytest.approx(p["wall_days"] * 24)
    assert e.checkpoint_interval_hours == p["failures"]["checkpoint_interval_hours"]
    priced = run_estimate(125_000_000, 6 * 130e6, 2_000_000, gpu="a10g", gpus=1, mfu=0.5, usd_per_gpu_hour=2.0)
    assert (priced.gpu, priced.gpu_assumed, priced.usd_per_gpu_hour) == ("a10g", False, 2.0)
