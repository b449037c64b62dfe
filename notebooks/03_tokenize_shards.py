# Databricks notebook source
# MAGIC %md
# MAGIC # 03 · Tokenize, pack and write shards
# MAGIC
# MAGIC **tokenize** encodes `deduped` with a Hugging Face `tokenizers` tokenizer — a given
# MAGIC `tokenizer.json`, or a byte-level BPE trained on a sample of the table — appends EOS to each
# MAGIC document, and packs the token stream into `seq_len` windows with no padding (`sequences`).
# MAGIC
# MAGIC **shards** shuffles the sequences globally with a fixed seed, splits train/val, and writes
# MAGIC MosaicML `streaming` (MDS) shards plus `dataset.json` (seq_len, vocabulary, EOS id, token
# MAGIC dtype, counts) and `tokenizer.json`: everything the trainer needs, in one folder.

# COMMAND ----------

dbutils.widgets.text("output", "/Volumes/main/tokenmill/data/out", "Output folder (as in 01_etl)")
dbutils.widgets.text("catalog_schema", "", "Stage tables in catalog.schema (empty: OUT/tables)")
dbutils.widgets.text("config", "", "Run config YAML (empty: defaults)")
dbutils.widgets.text("overrides", "", "Overrides: field=value; field=value (e.g. tokenize.seq_len=2048)")
dbutils.widgets.dropdown("force", "false", ["false", "true"], "Rerun even when up to date")

# COMMAND ----------

from tokenmill import tables
from tokenmill.facts import ShardsFacts, TokenizeFacts
from tokenmill.pipeline import config_from_widgets

cfg = config_from_widgets(dbutils)
force = dbutils.widgets.get("force") == "true"


def location(name):
    return tables.stage_location(cfg.output, name, cfg.catalog_schema)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Run both stages

# COMMAND ----------

from tokenmill.pipeline import run_stages

manifest = run_stages(spark, cfg, ["tokenize", "shards"], force=force)
tok, t, s = manifest.stages["tokenize"], TokenizeFacts.of(manifest), ShardsFacts.of(manifest)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Token totals
# MAGIC Tokens produced, tokens kept in full sequences, and the tails dropped by packing.

# COMMAND ----------

import pandas as pd

display(pd.DataFrame([{
    "documents": tok.rows_in,
    "tokens produced": t.tokens,
    "sequences": t.sequences,
    "seq_len": t.seq_len,
    "tokens in sequences": t.tokens_in_sequences,
    "tokens dropped": t.tokens_dropped,
    "vocabulary": t.vocab_size,
    "tokenizer": t.tokenizer_source,
}]))
display(pd.DataFrame([{"split": name, **split, "MB": round(s.bytes[name] / 1e6, 3)} for name, split in s.splits.items()]))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Tokens by source

# COMMAND ----------

from pyspark.sql import Window
from pyspark.sql import functions as F

sequences = tables.read(spark, location("sequences"))
display(
    sequences.groupBy("source").agg(F.count(F.lit(1)).alias("sequences"), F.sum(F.size("tokens")).alias("tokens"))
    .withColumn("share %", F.round(100 * F.col("tokens") / F.sum("tokens").over(Window.partitionBy()), 1))
    .orderBy(F.desc("tokens"))
)

# COMMAND ----------

# MAGIC %md
# MAGIC ## What the model will see
# MAGIC The tokenizer round-trips text; one packed sequence decoded back, with `⏎EOS` where one
# MAGIC document ends and the next begins.

# COMMAND ----------

import json
from pathlib import Path

from tokenizers import Tokenizer

from tokenmill.shards.dataset_info import DatasetInfo

shards_dir = Path(s.location)
dataset = DatasetInfo.read(shards_dir)
tokenizer = Tokenizer.from_file(str(shards_dir / "tokenizer.json"))
probe = "Tokenizers split text into pieces: naïve café, 3.14159."
encoded = tokenizer.encode(probe)
print(f"{len(encoded.ids)} tokens: {encoded.tokens}")
assert tokenizer.decode(encoded.ids) == probe
# A sequence where one document ends and the next begins.
example = sequences.where(F.array_contains("tokens", dataset.eos_id)).orderBy("seq_id").first()
pieces, current = [], []
for token in example["tokens"]:
    if token == dataset.eos_id:
        pieces += [tokenizer.decode(current), " ⏎EOS "]
        current = []
    else:
        current.append(token)
print("".join(pieces + [tokenizer.decode(current)]))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Shuffle quality
# MAGIC The stage measures, per split, how far the share of any source strays from its overall share
# MAGIC in any window of sequences (0 = perfectly mixed), against the same measure for data sorted by source.

# COMMAND ----------

display(pd.DataFrame([{"split": split, **q} for split, q in s.shuffle_quality.items()]))
print(json.dumps(dataset.to_json(), indent=2))
