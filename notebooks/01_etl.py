# Databricks notebook source
# MAGIC %md
# MAGIC # 01 · ETL: ingest, clean, filter, strip PII
# MAGIC
# MAGIC Reads raw corpora (JSONL, `.jsonl.gz`, `.jsonl.zst`, Parquet, text files, Delta tables or
# MAGIC Unity Catalog tables) into one schema, repairs text (ftfy, NFC, control characters,
# MAGIC whitespace), applies the quality rules and replaces PII with typed placeholders such as
# MAGIC `<EMAIL_ADDRESS>`. It writes three stage tables:
# MAGIC
# MAGIC | table | rows |
# MAGIC |---|---|
# MAGIC | `documents` | every input document that could be read |
# MAGIC | `clean` | documents that passed every rule, PII replaced |
# MAGIC | `rejects` | every dropped row with its stage, reason and a sample of its text |
# MAGIC
# MAGIC Nothing disappears silently: kept + dropped (by reason) = read, and the figures are recorded in
# MAGIC `OUT/manifest.json`. Rerunning with unchanged inputs and config skips the stage.
# MAGIC
# MAGIC **Setup.** Attach a cluster with the `tokenmill` wheel installed (the asset bundle's job does
# MAGIC this), or open the notebook from a Git folder holding this repository. On Databricks, put raw
# MAGIC files and the output on a volume (`/Volumes/<catalog>/<schema>/<volume>/...`) and set
# MAGIC `catalog_schema` to keep the stage tables in Unity Catalog.

# COMMAND ----------

dbutils.widgets.text("inputs", "/Volumes/main/tokenmill/data/raw", "Inputs (comma-separated paths or tables)")
dbutils.widgets.text("output", "/Volumes/main/tokenmill/data/out", "Output folder")
dbutils.widgets.text("catalog_schema", "", "Stage tables in catalog.schema (empty: OUT/tables)")
dbutils.widgets.text("config", "", "Run config YAML (empty: defaults)")
dbutils.widgets.text("overrides", "", "Overrides: field=value; field=value")
dbutils.widgets.dropdown("force", "false", ["false", "true"], "Rerun even when up to date")

# COMMAND ----------

from tokenmill import tables
from tokenmill.facts import EtlFacts
from tokenmill.pipeline import config_from_widgets

cfg = config_from_widgets(dbutils, inputs=True)
force = dbutils.widgets.get("force") == "true"


def location(name):
    return tables.stage_location(cfg.output, name, cfg.catalog_schema)


print(f"inputs: {[i.path for i in cfg.inputs]}\noutput: {cfg.output}\ntables: {location('<name>')}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Run the stage
# MAGIC Progress lines (tasks done, rate, ETA) appear below while Spark works; the stage ends with a
# MAGIC one-screen summary.

# COMMAND ----------

from tokenmill.pipeline import run_stages

manifest = run_stages(spark, cfg, ["etl"], force=force)
rec, facts = manifest.stages["etl"], EtlFacts.of(manifest)

# COMMAND ----------

# MAGIC %md
# MAGIC ## What was kept and what was dropped
# MAGIC Every dropped row has a reason; the counts below add up to the rows read.

# COMMAND ----------

import pandas as pd

display(pd.DataFrame([{
    "rows read": rec.rows_in,
    "kept": rec.rows_out,
    "dropped": rec.rows_dropped,
    "kept %": round(100 * rec.rows_out / max(1, rec.rows_in), 1),
    "text MB": round(facts.text_bytes / 1e6, 2),
    "wall s": rec.wall_s,
}]))
display(pd.DataFrame(sorted(rec.dropped.items(), key=lambda kv: -kv[1]), columns=["reason", "rows"]))

# COMMAND ----------

# MAGIC %md
# MAGIC Examples of rejected rows, a few per reason — check that the rules drop what they should.

# COMMAND ----------

from pyspark.sql import Window
from pyspark.sql import functions as F

rejects = tables.read(spark, location("rejects")).where(F.col("stage") == "etl")
per_reason = Window.partitionBy("reason").orderBy("id")
display(
    rejects.withColumn("n", F.row_number().over(per_reason)).where("n <= 3")
    .select("reason", "source", "id", F.substring("sample", 1, 160).alias("sample"))
    .orderBy("reason", "id")
)

# COMMAND ----------

# MAGIC %md
# MAGIC ## PII replaced, by type

# COMMAND ----------

import matplotlib.pyplot as plt

pii = facts.pii
display(pd.DataFrame(sorted(pii.items(), key=lambda kv: -kv[1]), columns=["entity", "replaced"]))
if pii:
    fig, ax = plt.subplots(figsize=(7, 0.4 + 0.3 * len(pii)))
    names = sorted(pii, key=pii.get)
    ax.barh(names, [pii[n] for n in names], color="#8a6bb8")
    ax.set_xlabel("occurrences replaced")
    display(fig)
    plt.close(fig)

# COMMAND ----------

# MAGIC %md
# MAGIC ## The clean documents
# MAGIC By source: how many, how long, and their quality score (0 to 1, higher is better; dedup keeps
# MAGIC the best-scored copy of a duplicate).

# COMMAND ----------

clean = tables.read(spark, location("clean"))
by_source = clean.groupBy("source").agg(
    F.count(F.lit(1)).alias("documents"),
    F.round(F.sum("n_chars") / 1e6, 3).alias("M chars"),
    F.expr("percentile_approx(n_chars, 0.5)").alias("median chars"),
    F.round(F.avg("quality"), 3).alias("mean quality"),
).orderBy(F.desc("documents"))
display(by_source)

# COMMAND ----------

import numpy as np

# A bounded sample is enough for the shape of the distributions.
n_clean = clean.count()
sample = clean.select("n_chars", "quality").sample(fraction=min(1.0, 20000 / max(1, n_clean)), seed=0).toPandas()
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
axes[0].hist(np.log10(sample["n_chars"].clip(lower=1)), bins=40, color="#3b6ea8")
axes[0].set_xlabel("log10(characters per document)")
axes[1].hist(sample["quality"], bins=40, range=(0, 1), color="#5a9e5a")
axes[1].set_xlabel("quality score")
for ax in axes:
    ax.set_ylabel("documents")
display(fig)
plt.close(fig)

# COMMAND ----------

display(clean.where(F.col("text").rlike("<[A-Z_]+>")).select("id", "source", F.substring("text", 1, 300).alias("text")).limit(5))
