# Databricks notebook source
# MAGIC %md
# MAGIC # 04 · Pre-flight checks, then train
# MAGIC
# MAGIC Before a costly run, the pre-flight checklist confirms that the shards are complete and
# MAGIC readable, that tokenizer, vocabulary, EOS id and `seq_len` agree with the model, that the
# MAGIC checkpoint folder is writable with room to spare (and a checkpoint saves and loads back
# MAGIC bit-exact there), what the run will cost, and that the GPUs and NCCL are visible.
# MAGIC
# MAGIC Training then runs the FSDP trainer on the shards, either with `torchrun` on this driver or
# MAGIC with Spark's `TorchDistributor` (one rank per GPU task across the cluster). With
# MAGIC `checkpoint.autoresume` (the default), running this notebook again continues from the latest
# MAGIC complete checkpoint.
# MAGIC
# MAGIC **Cluster.** A Databricks Runtime for Machine Learning with GPUs for real runs; the tiny
# MAGIC preset (`configs/train_tiny.yaml`) also trains on CPU.

# COMMAND ----------

dbutils.widgets.text("train_config", "../configs/train_tiny.yaml", "Trainer config YAML")
dbutils.widgets.text("shards", "/Volumes/main/tokenmill/data/out/shards", "Shards folder (from 03)")
dbutils.widgets.text("run_dir", "/Volumes/main/tokenmill/data/runs/notebook", "Run folder (checkpoints, logs)")
dbutils.widgets.text("max_steps", "", "Max steps (empty: the config's)")
dbutils.widgets.text("overrides", "", "Overrides: field=value; field=value (e.g. optim.lr=3e-4)")
dbutils.widgets.text("nproc", "", "Ranks (empty: GPUs on this machine, or 1)")
dbutils.widgets.dropdown("launcher", "torchrun", ["torchrun", "spark"], "Start ranks with")
dbutils.widgets.text("expect_gpus", "0", "Fail pre-flight unless this many GPUs are visible")
dbutils.widgets.text("gpu", "", "GPU kind for the estimate (empty: detect)")
dbutils.widgets.text("usd_per_gpu_hour", "", "Price per GPU-hour (empty: list price)")

# COMMAND ----------

from tokenmill.config import parse_overrides, replace
from tokenmill.train import launch
from tokenmill.train.config import load_config

overrides = parse_overrides(dbutils.widgets.get("overrides").split(";"))
overrides.update({
    "data.shards": dbutils.widgets.get("shards") or None,
    "run_dir": dbutils.widgets.get("run_dir") or None,
    "max_steps": int(dbutils.widgets.get("max_steps")) if dbutils.widgets.get("max_steps") else None,
})
cfg = replace(load_config(dbutils.widgets.get("train_config")), overrides)
nproc = int(dbutils.widgets.get("nproc") or 0) or launch.default_nproc()
# Every rank, and the pre-flight checks, read this one resolved file.
resolved = launch.write_resolved(cfg)
print(f"config: {resolved}\nshards: {cfg.data.shards}\nranks:  {nproc}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Pre-flight checklist
# MAGIC A failed item stops the notebook here, before any GPU time is spent.

# COMMAND ----------

import pandas as pd

from tokenmill import preflight

options = preflight.Options(
    nproc=nproc,
    expect_gpus=int(dbutils.widgets.get("expect_gpus") or 0),
    gpu=dbutils.widgets.get("gpu") or None,
    usd_per_gpu_hour=float(dbutils.widgets.get("usd_per_gpu_hour")) if dbutils.widgets.get("usd_per_gpu_hour") else None,
)
checks = preflight.run_checks(str(resolved), options=options)
display(pd.DataFrame([{"check": c.name, "status": c.status.upper(), "detail": c.detail} for c in checks]))
failed = [c for c in checks if c.status == "fail"]
if failed:
    raise RuntimeError("pre-flight failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Train

# COMMAND ----------

launch.check(cfg, nproc)
if dbutils.widgets.get("launcher") == "spark":
    result = launch.run_spark(cfg, nproc)  # TorchDistributor; rank 0's result comes back
    print(result)
else:
    code = launch.run_torchrun(resolved, nproc, max_restarts=0)
    if code != 0:
        raise RuntimeError(f"training exited with code {code}; see {cfg.run_path / 'events.jsonl'} "
                           "and run this cell again to resume from the latest checkpoint")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Training curves
# MAGIC From `RUN_DIR/metrics.jsonl` (after a resume the last line for a step wins). The same values
# MAGIC go to MLflow when it is installed.

# COMMAND ----------

import matplotlib.pyplot as plt

from tokenmill.train.runlog import read_jsonl

rows = read_jsonl(cfg.run_path / "metrics.jsonl")
metrics = pd.DataFrame(rows).groupby("step").last().reset_index() if rows else pd.DataFrame()
display(metrics.tail(10))
if len(metrics):
    panels = [c for c in ("loss", "lr", "tokens_per_s") if c in metrics]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3), squeeze=False)
    for ax, column in zip(axes[0], panels):
        ax.plot(metrics["step"], metrics[column], label=column)
        if column == "loss" and "val_loss" in metrics:
            val = metrics.dropna(subset=["val_loss"])
            ax.plot(val["step"], val["val_loss"], "o-", label="val_loss")
        ax.set_xlabel("step")
        ax.set_title(column)
        ax.legend()
    display(fig)
    plt.close(fig)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Events and checkpoints

# COMMAND ----------

from tokenmill.train import checkpoint

events = pd.DataFrame(read_jsonl(cfg.run_path / "events.jsonl"))
display(events.tail(15))
saved = checkpoint.complete_checkpoints(cfg.run_path / "checkpoints")
display(pd.DataFrame([{"checkpoint": p.name, "MB": round(sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 1e6, 2)}
                      for p in saved]))
