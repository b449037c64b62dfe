"""End to end on the bundled sample corpus: dedup finds every planted duplicate, and only those."""

from __future__ import annotations

import json

from pyspark.sql import functions as F

from tokenmill import tables
from tokenmill.config import RunConfig, from_dict
from tokenmill.pipeline import run_stages
from tokenmill.config.etl import EtlConfig, InputSpec
from tokenmill.etl.ingest import ingest
from tokenmill.sample import MIN_N_DOCS, write_sample


def planted_keys(row) -> tuple[str, str]:
    """The sample's doc key: the row's id when it had one, else PATH:LINE or PATH
    (relative to the sample folder; ingest records it under the folder's name)."""
    meta = json.loads(row["meta"] or "{}")
    where = meta.get("file", "").removeprefix("raw/")
    return (f"{where}:{meta['line']}" if "line" in meta else where), row["id"]


def test_sample_planted_duplicates_all_found(spark, tmp_path):
    truth = write_sample(tmp_path / "raw", n_docs=MIN_N_DOCS)
    # The raw rows as `clean` (etl's own ingest, without its slow PII pass):
    # dedup must find the planted duplicates whatever etl later changes.
    docs = ingest(spark, (InputSpec(str(tmp_path / "raw")),), EtlConfig()).where(F.col("reason").isNull() & F.col("text").isNotNull())
    clean = docs.select("id", "source", "text", "meta", F.length("text").alias("n_chars"),
                        F.size(F.split("text", r"\s+")).alias("n_words"), F.lit(0.5).alias("quality"))
    tables.write(clean, str(tmp_path / "out/tables/clean"))
    cfg = from_dict(RunConfig, {"output": str(tmp_path / "out")})
    manifest = run_stages(spark, cfg, ["dedup"])
    rec = manifest.stages["dedup"]

    clusters = tables.read(spark, str(tmp_path / "out/tables/dup_clusters")).select("id", "cluster_id", "kept", "kind")
    clean = tables.read(spark, str(tmp_path / "out/tables/clean")).select("id", "meta")
    cluster_of, kind_of = {}, {}
    for r in clean.join(clusters, "id", "left").collect():
        for key in planted_keys(r):
            cluster_of[key] = r["cluster_id"]
            kind_of[key] = (r["kept"], r["kind"])

    checked = 0
    for kind in ("exact_duplicates", "near_duplicates"):
        for planted in truth[kind]:
            members = [m["doc"] for m in planted["docs"]]
            assert all(m in cluster_of for m in members), (kind, planted)
            found = {cluster_of[m] for m in members}
            assert len(found) == 1 and None not in found, (kind, planted, found)
            dropped = [kind_of[m] for m in members if not kind_of[m][0]]
            assert len(dropped) == len(members) - 1
            if kind == "exact_duplicates":
                assert {k for _, k in dropped} == {"exact"}
            checked += 1
    assert checked == len(truth["exact_duplicates"]) + len(truth["near_duplicates"])
    # Nothing else is a duplicate in the sample: every drop is a planted one.
    planted_drops = sum(len(c["docs"]) - 1 for k in ("exact_duplicates", "near_duplicates") for c in truth[k])
    assert rec.rows_in - rec.rows_out == planted_drops
    assert rec.rows_out + sum(rec.dropped.values()) == rec.rows_in
