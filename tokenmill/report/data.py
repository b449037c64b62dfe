"""Gather the data card's figures from ``OUT/manifest.json``, the stage tables,
the shards and (optionally) a training run log.

Every section is computed on its own: a stage that has not run, or a table
without the column a figure needs, leaves that section empty with a reason,
never the whole card. Aggregations run in Spark (histogram buckets, counts by
source), so only small results come back to the driver.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from tokenmill import locations, tables
from tokenmill.chat.facts import ChatTokenizeFacts
from tokenmill.facts import DedupFacts, EtlFacts, ShardsFacts
from tokenmill.manifest import Manifest
from tokenmill.run_dir import RunDir
from tokenmill.shards.dataset_info import FILE as DATASET_FILE, DatasetInfo

# Stage tables, in pipeline order, that hold one row per document.
DOC_TABLES = ("documents", "clean", "deduped")
# Samples read from the train split to judge the shuffle (storage order).
SHUFFLE_SAMPLES = 20000


@dataclass
class Section:
    """One part of the card: its figures, or why it is empty."""

    data: Any = None
    missing: str = ""

    @property
    def ok(self) -> bool:
        return self.data is not None and not self.missing


@dataclass
class CardData:
    out: str
    manifest: dict = field(default_factory=dict)
    sections: dict[str, Section] = field(default_factory=dict)


class Tables:
    """The stage tables of one output; starts Spark only when a table exists."""

    def __init__(self, out: str, catalog_schema: Optional[str], spark_factory: Callable[[], Any]):
        self.out = out
        self.catalog_schema = catalog_schema
        self._factory = spark_factory
        self._spark = None
        self._by_source: dict[str, dict] = {}

    @property
    def spark(self):
        if self._spark is None:
            self._spark = self._factory()
        return self._spark

    def location(self, name: str) -> str:
        return tables.stage_location(self.out, name, self.catalog_schema)

    def exists(self, name: str) -> bool:
        location = self.location(name)
        if not tables.is_catalog_name(location) and not (Path(location) / "_delta_log").is_dir():
            return False  # no Spark needed to know a local table is absent
        return tables.exists(self.spark, location)

    def read(self, name: str):
        return tables.read(self.spark, self.location(name))

    def by_source(self, name: str) -> dict[str, dict[str, int]]:
        """{source: {docs, bytes}} of a document table: one Spark job, shared by
        the funnel and the source mix."""
        if name not in self._by_source:
            from pyspark.sql import functions as F

            rows = self.read(name).groupBy("source").agg(
                F.count(F.lit(1)).alias("docs"), F.sum(F.octet_length("text")).alias("bytes")
            ).collect()
            self._by_source[name] = {
                r["source"]: {"docs": int(r["docs"]), "bytes": int(r["bytes"] or 0)} for r in rows
            }
        return self._by_source[name]


def gather(
    out: str,
    spark_factory: Callable[[], Any],
    catalog_schema: Optional[str] = None,
    run_log: Optional[str] = None,
    shards: Optional[str] = None,
) -> CardData:
    manifest = Manifest.load(locations.local_dir(out))
    card = CardData(out=str(out), manifest=manifest.to_dict())
    t = Tables(str(out), catalog_schema, spark_factory)
    shards_dir = Path(shards) if shards else default_shards_dir(manifest, str(out))
    steps = {
        "funnel": lambda: funnel(manifest, t),
        "drops": lambda: drops(manifest),
        "pii": lambda: pii_by_type(manifest, t),
        "clusters": lambda: cluster_sizes(manifest, t),
        "doc_lengths": lambda: doc_lengths(t),
        "token_lengths": lambda: token_lengths(manifest, t, shards_dir),
        "sources": lambda: source_mix(t),
        "shuffle": lambda: shuffle_quality(shards_dir, t, manifest),
        "tokens": lambda: token_totals(manifest, shards_dir),
        "finetune": lambda: finetune_data(manifest),
        "stage_figures": lambda: stage_figures(manifest),
        "training": lambda: training_curves(run_log),
    }
    for name, step in steps.items():
        try:
            card.sections[name] = step()
        except Exception as exc:  # one broken section must not lose the card
            card.sections[name] = Section(missing=f"could not be computed: {type(exc).__name__}: {exc}")
    return card


def default_shards_dir(manifest: Manifest, out: str) -> Path:
    """Where the shards stage says it wrote, else OUT/shards.

    Only the location is read: the shards record of a chat run holds other
    figures than a text run's (``ShardsFacts``, ``ChatShardsFacts``), and both
    name where they wrote.
    """
    rec = manifest.stages.get("shards")
    location = (rec.extra.get("location") if rec else None) or locations.join(out, "shards")
    return locations.local_path(location)


# --- sections ----------------------------------------------------------------------


def funnel(manifest: Manifest, t: Tables) -> Section:
    """Documents and bytes after each step: input, etl, dedup, tokenize."""
    stages = manifest.stages
    if not stages:
        return Section(missing="no stage has run yet (OUT/manifest.json has no stages)")
    rows = []
    if "etl" in stages:
        rows.append({"step": "input", "docs": stages["etl"].rows_in, "table": "documents"})
        rows.append({"step": "after etl", "docs": stages["etl"].rows_out, "table": "clean"})
    if "dedup" in stages:
        rows.append({"step": "after dedup", "docs": stages["dedup"].rows_out, "table": "deduped"})
    if "tokenize" in stages:
        rows.append({"step": "tokenized", "docs": stages["tokenize"].rows_out, "table": None})
    if not rows:
        return Section(missing="etl and dedup have not run")
    for row in rows:
        name = row.pop("table")
        row["bytes"] = text_bytes(t, name) if name else None
    return Section(rows)


def text_bytes(t: Tables, name: str) -> Optional[int]:
    if not t.exists(name):
        return None
    return sum(v["bytes"] for v in t.by_source(name).values())


def drops(manifest: Manifest) -> Section:
    rows = [
        {"stage": stage, "reason": reason, "rows": n}
        for stage, rec in manifest.stages.items()
        for reason, n in rec.dropped.items()
    ]
    if not manifest.stages:
        return Section(missing="no stage has run yet")
    return Section(rows)


def pii_by_type(manifest: Manifest, t: Tables) -> Section:
    """PII replaced, by entity type: etl's record (``EtlFacts.pii``)."""
    if "etl" not in manifest.stages:
        return Section(missing="etl has not run")
    counts = EtlFacts.of(manifest).pii
    return Section(dict(sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: -kv[1])))


def cluster_sizes(manifest: Manifest, t: Tables) -> Section:
    """Duplicate clusters: {"hist": {cluster size: clusters}, "compared": documents dedup read,
    "enabled": whether dedup ran its phases}. The histogram comes from tables/dup_clusters
    (one row per member), else from the dedup record; it is empty when no duplicate was found."""
    if "dedup" not in manifest.stages:
        return Section(missing="dedup has not run")
    facts = DedupFacts.of(manifest)
    data = {"hist": {}, "compared": manifest.stages["dedup"].rows_in, "enabled": facts.enabled}
    if not facts.enabled or not data["compared"]:
        return Section(data)
    if not t.exists("dup_clusters"):
        recorded = facts.cluster_size_histogram  # {"size": clusters}
        data["hist"] = {int(k): int(v) for k, v in sorted(recorded.items(), key=lambda kv: int(kv[0]))}
        if data["hist"] or not facts.clusters:
            return Section(data)
        return Section(missing="no dup_clusters table")
    df = t.read("dup_clusters")
    if not {"cluster_id", "cluster_size"} <= set(df.columns):
        return Section(missing=f"dup_clusters lacks cluster_id or cluster_size (columns: {df.columns})")
    hist = df.select("cluster_id", "cluster_size").distinct().groupBy("cluster_size").count().collect()
    data["hist"] = {int(r["cluster_size"]): int(r["count"]) for r in sorted(hist, key=lambda r: r["cluster_size"])}
    return Section(data)


def _log2_histogram(df, column) -> dict[int, int]:
    """{k: rows with 2**k <= value < 2**(k+1)}, computed in Spark (value 0 -> k = -1)."""
    from pyspark.sql import functions as F

    bucket = F.when(column <= 0, F.lit(-1)).otherwise(F.floor(F.log2(column))).cast("int")
    rows = df.select(bucket.alias("b")).groupBy("b").count().collect()
    return {int(r["b"]): int(r["count"]) for r in sorted(rows, key=lambda r: r["b"])}


def doc_lengths(t: Tables) -> Section:
    """Characters per document, log2 buckets, for each document table present."""
    from_tables = {}
    for name in DOC_TABLES:
        if not t.exists(name):
            continue
        from pyspark.sql import functions as F

        df = t.read(name)
        column = F.col("n_chars") if "n_chars" in df.columns else F.length("text")
        from_tables[name] = _log2_histogram(df, column)
    if not from_tables:
        return Section(missing="no document table yet (etl has not run)")
    return Section(from_tables)


def token_lengths(manifest: Manifest, t: Tables, shards_dir: Path) -> Section:
    """Tokens per document, from the distances between EOS tokens in the packed sequences."""
    if "tokenize" not in manifest.stages:
        return Section(missing="tokenize has not run")
    if ChatTokenizeFacts.find(manifest):  # padded windows of whole examples: no EOS-delimited stream
        return Section(missing="a chat run's tokens per example are in the fine-tuning section below")
    info = _dataset_info(shards_dir)
    if info is None or not t.exists("sequences"):
        return Section(missing="no sequences table with dataset.json")
    hist = _eos_span_histogram(t.read("sequences"), info.eos_id)
    if not hist:
        return Section(missing="no EOS token in tables/sequences")
    return Section({"source": "distances between EOS tokens in tables/sequences", "hist": hist})


def _eos_span_histogram(sequences, eos: int) -> dict[int, int]:
    """Tokens per document (its EOS included) from the packed sequences.

    Sequence ids are ``group << 32 | index``: consecutive indices of a group
    are one contiguous token stream that starts with a fresh document, so a
    document's length is the distance from the previous EOS in its group
    (the first one's is its position + 1). Only EOS positions are exploded.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    positions = F.filter(
        F.transform(F.col("tokens"), lambda x, i: F.when(x == eos, i)), lambda p: p.isNotNull()
    )
    eos_at = sequences.select(
        F.shiftright("seq_id", 32).alias("g"),
        (F.col("seq_id").bitwiseAND(F.lit(0xFFFFFFFF)) * F.size("tokens")).alias("base"),
        F.explode(positions).alias("pos"),
    ).select("g", (F.col("base") + F.col("pos")).alias("p"))
    previous = F.lag("p").over(Window.partitionBy("g").orderBy("p"))
    lengths = eos_at.select((F.col("p") - F.coalesce(previous, F.lit(-1))).alias("n"))
    return _log2_histogram(lengths, F.col("n"))


def source_mix(t: Tables) -> Section:
    """Documents and bytes by source for each document table, tokens for sequences."""
    from pyspark.sql import functions as F

    mix = {}
    for name in DOC_TABLES:
        if t.exists(name):
            mix[name] = t.by_source(name)
    if t.exists("sequences"):
        df = t.read("sequences")
        if "source" in df.columns:
            rows = df.groupBy("source").agg(
                F.count(F.lit(1)).alias("sequences"), F.sum(F.size("tokens")).alias("tokens")
            ).collect()
            mix["sequences"] = {
                r["source"]: {"sequences": int(r["sequences"]), "tokens": int(r["tokens"] or 0)} for r in rows
            }
    if not mix:
        return Section(missing="no stage table yet")
    return Section(mix)


def _dataset_info(shards_dir: Path) -> Optional[DatasetInfo]:
    """The shards' dataset.json, None where the shards stage has not written one."""
    return DatasetInfo.read(shards_dir) if (shards_dir / DATASET_FILE).is_file() else None


def shuffle_quality(shards_dir: Path, t: Tables, manifest: Optional[Manifest] = None) -> Section:
    """How well the train split's storage order hides the pre-shuffle order.

    - Spearman rank correlation of storage position vs ``seq_id`` (the order
      tokenize wrote): ~0 for a good shuffle, 1 for none.
    - Rate of neighbours from the same source, against the rate expected
      from the source shares alone (sum of squared shares).
    """
    train = shards_dir / "train"
    if not (train / "index.json").is_file():
        return Section(missing=f"no shards at {shards_dir} (the shards stage has not run)")
    from tokenmill.shards.reader import iter_split

    seq_ids, sources = [], []
    for row in iter_split(train, limit=SHUFFLE_SAMPLES):
        seq_ids.append(int(row["seq_id"]) if "seq_id" in row else None)
        sources.append(row.get("source"))
    if not seq_ids or seq_ids[0] is None:
        return Section(missing="the shards have no seq_id column")
    result: dict[str, Any] = {"samples": len(seq_ids), "seq_ids": seq_ids[:5000]}
    if manifest is not None and "shards" in manifest.stages:
        # The shards stage's own measure, per split; a chat run's shards record has none.
        facts = ShardsFacts.find(manifest)
        result["stage"] = facts.shuffle_quality if facts else {}
    result["spearman"] = spearman(list(range(len(seq_ids))), seq_ids)
    if sources[0] is None and t.exists("sequences"):
        sources = _sources_for(t, seq_ids)
    pairs = [(a, b) for a, b in zip(sources, sources[1:]) if a is not None and b is not None]
    known = [s for s in sources if s is not None]
    if pairs and len(known) >= len(sources) / 2:  # too few known sources say nothing
        result["adjacent_same_source"] = sum(a == b for a, b in pairs) / len(pairs)
        shares: dict = {}
        for s in known:
            shares[s] = shares.get(s, 0) + 1
        result["expected_same_source"] = sum((n / len(known)) ** 2 for n in shares.values())
    return Section(result)


def _sources_for(t: Tables, seq_ids: list[int]) -> list:
    from pyspark.sql import functions as F

    df = t.read("sequences")
    if "source" not in df.columns:
        return []
    wanted = t.spark.createDataFrame([(i,) for i in seq_ids], "seq_id long")
    rows = df.select("seq_id", "source").join(F.broadcast(wanted), "seq_id").collect()
    by_id = {int(r["seq_id"]): r["source"] for r in rows}
    return [by_id.get(i) for i in seq_ids]


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman rank correlation (no ties expected: positions and unique ids)."""
    import numpy as np

    if len(x) < 3:
        return float("nan")
    rx = np.argsort(np.argsort(np.asarray(x)))
    ry = np.argsort(np.argsort(np.asarray(y)))
    r = np.corrcoef(rx, ry)[0, 1]
    return float(r) if math.isfinite(r) else float("nan")


def token_totals(manifest: Manifest, shards_dir: Path) -> Section:
    info = _dataset_info(shards_dir)
    if info is None:
        return Section(missing=f"no dataset.json in {shards_dir} (the shards stage has not run)")
    splits = {
        name: {k: split.get(k) for k in ("sequences", "tokens", "shards")}
        for name, split in info.splits.items()
    }
    return Section({
        "splits": splits,
        "seq_len": info.seq_len,
        "vocab_size": info.vocab_size,
        "eos_id": info.eos_id,
        "dtype": info.dtype,
        "total_tokens": sum(int(s.get("tokens") or 0) for s in splits.values()),
    })


def finetune_data(manifest: Manifest) -> Optional[Section]:
    """A chat / instruction run: rows in, examples kept, rejects by stage and reason,
    tokens per example and packing efficiency (from the tokenize record). None for other runs."""
    x = ChatTokenizeFacts.find(manifest)
    if x is None:
        return None  # the card has no fine-tuning section
    rec, etl = manifest.stages["tokenize"], manifest.stages.get("etl")
    rejects = sorted(({"stage": stage, "reason": reason, "rows": n} for stage, r in manifest.stages.items()
                      for reason, n in r.dropped.items()), key=lambda row: -row["rows"])
    return Section({"task": x.task, "template": x.template_name, "seq_len": x.seq_len,
                    "rows_in": etl.rows_in if etl else None, "examples": rec.rows_out, "rejects": rejects,
                    "truncated": x.truncated_examples, "lengths": x.lengths, "packing": x.packing})


def stage_figures(manifest: Manifest) -> Section:
    """Each stage's scalar ``extra`` figures and wall time, flattened to dotted keys."""
    if not manifest.stages:
        return Section(missing="no stage has run yet")
    figures = {}
    for stage, rec in manifest.stages.items():
        flat = {"wall_s": rec.wall_s, "rows_in": rec.rows_in, "rows_out": rec.rows_out}
        _flatten(rec.extra, "", flat)
        figures[stage] = flat
    return Section(figures)


def _flatten(value: Any, prefix: str, into: dict) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), into)
    elif isinstance(value, (int, float, str, bool)) or value is None:
        into[prefix] = value
    elif isinstance(value, (list, tuple)) and len(value) <= 8 and all(
        isinstance(v, (int, float, str)) for v in value
    ):
        into[prefix] = ", ".join(str(v) for v in value)


def training_curves(run_log: Optional[str]) -> Section:
    """metrics.jsonl of a run (a file, or a run dir holding it); last line per step wins."""
    if not run_log:
        return Section(missing="no run log given (--run-log RUN_DIR/metrics.jsonl)")
    path = Path(run_log)
    if path.is_dir():
        path = RunDir(path).metrics
    if not path.is_file():
        return Section(missing=f"run log not found: {path}")
    by_step: dict[int, dict] = {}
    bad = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            by_step.setdefault(int(row["step"]), {}).update(row)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            bad += 1  # a line torn by a crash mid-write
    if not by_step:
        return Section(missing=f"{path} has no metric lines")
    steps = sorted(by_step)
    series: dict[str, list] = {}
    for key in sorted({k for row in by_step.values() for k in row if k != "step"}):
        points = [(s, by_step[s][key]) for s in steps if isinstance(by_step[s].get(key), (int, float))]
        if points:
            series[key] = points
    return Section({"path": str(path), "steps": len(steps), "series": series, "bad_lines": bad})
