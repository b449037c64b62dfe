# Databricks notebook source
# MAGIC %md
# MAGIC # 06 · Fine-tune an open model on your own conversations
# MAGIC
# MAGIC What `tokenmill finetune` does, one step per cell: the data stages (validation, cleaning and
# MAGIC PII redaction of every message, exact and near duplicates removed, the model's own chat
# MAGIC template and loss mask, packing, shards), what the run would train on and cost, the
# MAGIC pre-flight checklist, training from the model's weights (full or LoRA), the Hugging Face
# MAGIC export and, with a name, a registered model version in MLflow (Unity Catalog:
# MAGIC `catalog.schema.model`).
# MAGIC
# MAGIC Every rejected row is counted by reason in `tables/rejects`. Running the notebook again skips
# MAGIC the stages that are up to date and resumes training from the latest complete checkpoint.
# MAGIC
# MAGIC **Cluster.** A Databricks Runtime for Machine Learning with GPUs for real models; a tiny model
# MAGIC also trains on CPU. Set *dry run* to stop after the estimate, before any GPU time is spent.

# COMMAND ----------

dbutils.widgets.text("model", "/Volumes/main/tokenmill/data/models/Llama-3.2-1B-Instruct", "Hugging Face model folder")
dbutils.widgets.text("data", "/Volumes/main/tokenmill/data/raw/conversations.jsonl", "Inputs (comma-separated)")
dbutils.widgets.text("output", "/Volumes/main/tokenmill/data/finetune", "Output folder (data and run)")
dbutils.widgets.dropdown("task", "chat", ["chat", "instruction", "continued"], "Rows hold")
dbutils.widgets.dropdown("method", "full", ["full", "lora"], "Train")
dbutils.widgets.text("epochs", "", "Epochs (empty: 1, or the steps)")
dbutils.widgets.text("steps", "", "Steps (empty: from the epochs)")
dbutils.widgets.text("lr", "", "Peak learning rate (empty: the preset's)")
dbutils.widgets.text("seq_len", "", "Tokens per packed window (empty: the preset's)")
dbutils.widgets.text("nproc", "", "Ranks (empty: GPUs on this machine, or 1)")
dbutils.widgets.text("data_config", "", "Data config YAML (empty: the finetune preset)")
dbutils.widgets.text("train_config", "", "Trainer config YAML (empty: the finetune preset)")
dbutils.widgets.text("data_overrides", "", "Data config overrides: field=value; ...")
dbutils.widgets.text("train_overrides", "", "Trainer overrides: field=value; ... (e.g. lora.rank=32)")
dbutils.widgets.text("register_to", "", "Register as (empty: do not register)")
dbutils.widgets.dropdown("dry_run", "false", ["false", "true"], "Dry run (data and estimate only)")

# COMMAND ----------

from pathlib import Path

from tokenmill import finetune, finetune_report
from tokenmill.train import launch


def optional(text, kind):
    """An empty widget is None (the preset's value)."""
    return kind(text.strip()) if text.strip() else None


def settings(text):
    """field=value; field=value -> the FIELD=VALUE overrides of --data-set / --set."""
    return tuple(s.strip() for s in text.split(";") if s.strip())


opts = finetune.FinetuneOptions(
    model=Path(dbutils.widgets.get("model")),
    data=tuple(p.strip() for p in dbutils.widgets.get("data").split(",") if p.strip()),
    output=Path(dbutils.widgets.get("output")),
    task=dbutils.widgets.get("task"),
    method=dbutils.widgets.get("method"),
    epochs=optional(dbutils.widgets.get("epochs"), float),
    steps=optional(dbutils.widgets.get("steps"), int),
    lr=optional(dbutils.widgets.get("lr"), float),
    seq_len=optional(dbutils.widgets.get("seq_len"), int),
    nproc=optional(dbutils.widgets.get("nproc"), int) or launch.default_nproc(),
    register_to=optional(dbutils.widgets.get("register_to"), str),
    dry_run=dbutils.widgets.get("dry_run") == "true",
    data_set=settings(dbutils.widgets.get("data_overrides")),
    train_set=settings(dbutils.widgets.get("train_overrides")),
    data_config=Path(dbutils.widgets.get("data_config") or finetune.DATA_PRESET),
    train_config=Path(dbutils.widgets.get("train_config") or finetune.TRAIN_PRESET),
)
run_cfg = finetune.run_config(opts)
finetune.check_before_data(opts, run_cfg)  # flags, --set and the model's context, before any Spark work
print(f"model:  {opts.model}\ninputs: {', '.join(opts.data)}\noutput: {opts.output}\nranks:  {opts.nproc}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Data: validate, clean, deduplicate, template, mask, pack, shard
# MAGIC The stages run on this cluster's Spark session; stages that are up to date are skipped.

# COMMAND ----------

manifest = finetune.run_data_stages(run_cfg)
info = finetune.shards_info(opts)
cfg = finetune.train_config(opts, int(info.splits["train"]["sequences"]))
display(spark.createDataFrame(
    [(name, rec.rows_in, rec.rows_out, sum(rec.dropped.values())) for name, rec in manifest.stages.items()],
    "stage string, rows_in long, rows_out long, dropped long"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## What the run trains on, and what it costs
# MAGIC Rows kept and rejected by reason, token lengths, target tokens per epoch, packing efficiency
# MAGIC and the GPU-hours of the training run.

# COMMAND ----------

print(finetune_report.dry_run(manifest, info, cfg, opts))
if opts.dry_run:
    dbutils.notebook.exit("dry run: nothing trained")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Pre-flight checklist, then training
# MAGIC A failed item stops the notebook before training starts.

# COMMAND ----------

finetune.preflight(cfg, opts)
finetune.train(cfg, opts)
exported = finetune.hf_dir(cfg)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Registration and the result
# MAGIC The export opens with `transformers` and vLLM; a registered version loads with
# MAGIC `mlflow.pyfunc.load_model("models:/NAME/VERSION")`.

# COMMAND ----------

registration = finetune.register(opts.register_to, exported, cfg, opts) if opts.register_to else None
print(finetune_report.finished(cfg, exported, opts, registration))
