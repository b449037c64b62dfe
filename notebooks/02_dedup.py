# Databricks notebook source
# MAGIC %md
# MAGIC # 02 · Dedup: exact and near duplicates
# MAGIC
# MAGIC Reads `clean` and removes
# MAGIC
# MAGIC - **exact duplicates**: same hash of the normalised text (case and whitespace folded);
# MAGIC - **near duplicates**: MinHash signatures over word 5-grams, LSH bands pick candidate pairs,
# MAGIC   pairs are verified against the Jaccard threshold, and connected components (computed in
# MAGIC   Spark) form clusters. One document per cluster is kept: the highest `quality`, then the longest.
# MAGIC
# MAGIC Phases write their own tables, so each can be inspected: `signatures`, `dup_clusters`
# MAGIC (one row per document in a cluster of two or more), then `deduped`. Removed documents go to
# MAGIC `rejects` with reason `duplicate_exact` or `duplicate_near` and the id of their cluster.

# COMMAND ----------

dbutils.widgets.text("output", "/Volumes/main/tokenmill/data/out", "Output folder (as in 01_etl)")
dbutils.widgets.text("catalog_schema", "", "Stage tables in catalog.schema (empty: OUT/tables)")
dbutils.widgets.text("config", "", "Run config YAML (empty: defaults)")
dbutils.widgets.text("overrides", "", "Overrides: field=value; field=value (e.g. dedup.threshold=0.7)")
dbutils.widgets.dropdown("force", "false", ["false", "true"], "Rerun even when up to date")

# COMMAND ----------

from tokenmill import tables
from tokenmill.facts import DedupFacts
from tokenmill.pipeline import config_from_widgets

cfg = config_from_widgets(dbutils)
force = dbutils.widgets.get("force") == "true"


def location(name):
    return tables.stage_location(cfg.output, name, cfg.catalog_schema)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Run the stage

# COMMAND ----------

from tokenmill.pipeline import run_stages

manifest = run_stages(spark, cfg, ["dedup"], force=force)
rec = manifest.stages["dedup"]

# COMMAND ----------

# MAGIC %md
# MAGIC ## How much was removed, and from where

# COMMAND ----------

import pandas as pd

x = DedupFacts.of(manifest)
display(pd.DataFrame([{
    "documents in": rec.rows_in,
    "kept": rec.rows_out,
    **{reason: n for reason, n in rec.dropped.items()},
    "clusters": x.clusters,
    "LSH bands x rows": f"{x.bands} x {x.rows}",
    "Jaccard threshold": x.threshold,
}]))
removed = x.removed_by_source
display(pd.DataFrame(
    [{"source": s, **kinds} for s, kinds in sorted(removed.items())]
).fillna(0) if removed else pd.DataFrame(columns=["source"]))

# COMMAND ----------

# MAGIC %md
# MAGIC The LSH S-curve: the probability that a pair with Jaccard similarity *s* becomes a candidate.
# MAGIC A steep rise around the threshold means few missed duplicates and few wasted comparisons.

# COMMAND ----------

import matplotlib.pyplot as plt

curve = {float(k): v for k, v in x.s_curve.items()}
if curve:
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(sorted(curve), [curve[k] for k in sorted(curve)], "o-", color="#3b6ea8")
    ax.axvline(x.threshold, color="#c4484f", linestyle="--", label=f"threshold {x.threshold}")
    ax.set_xlabel("Jaccard similarity")
    ax.set_ylabel("P(candidate)")
    ax.legend()
    display(fig)
    plt.close(fig)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Duplicate clusters
# MAGIC Cluster sizes, then the largest clusters side by side: the kept document first.

# COMMAND ----------

from pyspark.sql import functions as F

clusters = tables.read(spark, location("dup_clusters"))
sizes = clusters.select("cluster_id", "cluster_size").distinct().groupBy("cluster_size").count().orderBy("cluster_size")
display(sizes)
hist = sizes.toPandas()
if len(hist):
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(hist["cluster_size"].astype(str), hist["count"], color="#c4484f")
    ax.set_xlabel("documents in the cluster")
    ax.set_ylabel("clusters")
    display(fig)
    plt.close(fig)

# COMMAND ----------

clean = tables.read(spark, location("clean"))
largest = [r["cluster_id"] for r in
           clusters.select("cluster_id", "cluster_size").distinct().orderBy(F.desc("cluster_size"), "cluster_id").limit(3).collect()]
display(
    clusters.where(F.col("cluster_id").isin(largest)).select("cluster_id", "kind", "kept", "id")
    .join(clean.select("id", "source", "quality", F.substring("text", 1, 200).alias("text")), "id")
    .select("cluster_id", "kind", "kept", "id", "source", "quality", "text")
    .orderBy("cluster_id", F.desc("kept"), "id")
)
