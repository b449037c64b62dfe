# Databricks notebook source
# MAGIC %md
# MAGIC # 05 · Explore a pipeline output and write its data card
# MAGIC
# MAGIC Everything a run leaves behind: the stage tables (Delta, with versions), `manifest.json`
# MAGIC (rows in, out and dropped by reason at every stage, what each stage read), the rejects, and a
# MAGIC self-contained HTML **data card** with the plots — funnel, drops, PII, duplicate clusters,
# MAGIC lengths, source mix, shuffle quality, token totals and training curves — that can be mailed or
# MAGIC attached to a model card.

# COMMAND ----------

dbutils.widgets.text("output", "/Volumes/main/tokenmill/data/out", "Output folder")
dbutils.widgets.text("catalog_schema", "", "Stage tables in catalog.schema (empty: OUT/tables)")
dbutils.widgets.text("run_dir", "", "Training run folder, for curves (optional)")
dbutils.widgets.text("card", "", "Data card path (empty: OUT/data_card.html)")

# COMMAND ----------

from tokenmill import tables
from tokenmill.manifest import Manifest

out = dbutils.widgets.get("output")
catalog_schema = dbutils.widgets.get("catalog_schema") or None
manifest = Manifest.load(out)


def location(name):
    return tables.stage_location(out, name, catalog_schema)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Stages: counts add up
# MAGIC For every stage, kept + dropped = in (the manifest refuses a record where they do not).

# COMMAND ----------

import pandas as pd

display(pd.DataFrame([
    {"stage": name, "rows in": r.rows_in, "kept": r.rows_out, "dropped": r.rows_dropped,
     "unit": r.extra.get("rows_unit", "documents"), "wall s": r.wall_s, "finished": r.finished_at,
     "adds up": r.rows_out + r.rows_dropped == r.rows_in}
    for name, r in manifest.stages.items()
]))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Stage tables
# MAGIC Each is a Delta table: its version changes on every rewrite, and the manifest records which
# MAGIC version each stage read.

# COMMAND ----------

names = ["documents", "clean", "rejects", "signatures", "dup_clusters", "deduped", "sequences"]
inventory = []
for name in names:
    if tables.exists(spark, location(name)):
        inventory.append({"table": name, "location": location(name), "version": tables.version(spark, location(name)),
                          "rows": tables.row_count(spark, location(name))})
display(pd.DataFrame(inventory))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Rejects, by stage and reason
# MAGIC With the catalog, the same query runs as SQL: `SELECT stage, reason, count(*) FROM <catalog>.<schema>.rejects GROUP BY ALL`.

# COMMAND ----------

from pyspark.sql import functions as F

if tables.exists(spark, location("rejects")):
    rejects = tables.read(spark, location("rejects"))
    display(rejects.groupBy("stage", "reason").count().orderBy("stage", F.desc("count")))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Follow one document
# MAGIC Where a removed duplicate went: its row in `documents`, its reject reason, and the document
# MAGIC kept in its place.

# COMMAND ----------

if tables.exists(spark, location("dup_clusters")):
    clusters = tables.read(spark, location("dup_clusters"))
    dropped = clusters.where(~F.col("kept")).orderBy("cluster_id", "id").first()
    if dropped is not None:
        members = clusters.where(F.col("cluster_id") == dropped["cluster_id"]).select("id", "kept", "kind")
        docs = tables.read(spark, location("documents")).select("id", "source", F.substring("text", 1, 160).alias("text"))
        display(members.join(docs, "id").orderBy(F.desc("kept")))
        display(tables.read(spark, location("rejects")).where(F.col("id") == dropped["id"]))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Source mix before and after

# COMMAND ----------

import matplotlib.pyplot as plt

mix = {}
for name in ("documents", "clean", "deduped"):
    if tables.exists(spark, location(name)):
        counts = tables.read(spark, location(name)).groupBy("source").agg(F.sum(F.octet_length("text")).alias("n")).toPandas()
        mix[f"{name} (bytes)"] = counts.set_index("source")["n"]
if tables.exists(spark, location("sequences")):
    counts = tables.read(spark, location("sequences")).groupBy("source").agg(F.sum(F.size("tokens")).alias("n")).toPandas()
    mix["sequences (tokens)"] = counts.set_index("source")["n"]
if mix:
    shares = pd.DataFrame(mix).fillna(0)
    shares = 100 * shares / shares.sum()
    display(shares.round(1).reset_index())
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.5 * len(mix)))
    shares.T.plot.barh(stacked=True, ax=ax)
    ax.invert_yaxis()
    ax.set_xlabel("% share")
    ax.legend(ncol=6, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    display(fig)
    plt.close(fig)

# COMMAND ----------

# MAGIC %md
# MAGIC ## The data card
# MAGIC One HTML file with every figure inlined: it opens offline, from a volume or a mail attachment.

# COMMAND ----------

from tokenmill.report.card import write_card

card_path = dbutils.widgets.get("card") or f"{out.rstrip('/')}/data_card.html"
card = write_card(out, card_path, run_log=dbutils.widgets.get("run_dir") or None,
                  catalog_schema=catalog_schema, spark=spark)
print(f"data card: {card}")
show_html = globals().get("displayHTML")  # Databricks notebooks have it
if show_html is not None:
    show_html(card.read_text(encoding="utf-8"))
