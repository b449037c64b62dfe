"""The clusters phase on the driver gives the Spark jobs' tables, on inputs made to disagree.

(The Spark path with components in rounds is compared in test_dedup_stage.)"""

from __future__ import annotations

import random

import pytest

from tokenmill.dedup import clusters, driver, lsh
from tokenmill.config.dedup import DedupConfig
from tokenmill.dedup.job import signatures_of

COLUMNS = "id string, source string, text string, n_chars int, n_words int, quality double"
WORDS = [f"w{i}" for i in range(400)]


def corpus(seed: int) -> list[tuple]:
    """Families of near copies, exact copies (case and spacing), ties, odd qualities, empty and short texts."""
    rng = random.Random(seed)
    docs = []
    for family in range(8):
        base = [rng.choice(WORDS) for _ in range(rng.randint(60, 120))]
        for copy in range(rng.randint(1, 5)):
            words = list(base)
            for _ in range(rng.randint(0, 2)):  # a few edits: most copies stay above Jaccard 0.8
                words[rng.randrange(len(words))] = rng.choice(WORDS)
            text = " ".join(words)
            if rng.random() < 0.3:
                text = text.upper().replace(" ", "  ")  # an exact copy under the default normalization
            docs.append(text)
    docs += ["", "", "short", "short", "SHORT"]
    qualities = [0.5, 0.5, 0.9, None, float("nan"), -0.0, 0.0]
    ids = rng.sample(range(10_000), len(docs))
    rows = []
    for doc_id, text in zip(ids, docs):
        # Ids of mixed length and case: string order is not number order.
        rows.append((f"{'D' if doc_id % 3 else 'd'}{doc_id}", rng.choice(["web", "code"]), text, len(text),
                     len(text.split()), rng.choice(qualities)))
    return rows


def both_paths(spark, rows, cfg: DedupConfig):
    clean = spark.createDataFrame(rows, COLUMNS)
    sigs = signatures_of(clean, cfg).localCheckpoint()
    bands, rows_per_band = lsh.lsh_params(cfg)
    in_spark, spark_stats = clusters.assign(sigs, cfg, bands, rows_per_band)
    here, driver_stats = driver.assign(sigs, cfg, bands, rows_per_band)
    assert here.schema == in_spark.schema
    return sorted(in_spark.collect()), sorted(here.collect()), spark_stats, driver_stats


CONFIGS = {
    "keep by words then quality, punctuation-blind": {"keep": ("n_words asc", "quality desc"),
                                                      "exact_punctuation": True},
    "characters, no exact groups, verify none": {"shingle": "char", "ngram": 4, "exact": False,
                                                 "verify": "none", "threshold": 0.6},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_driver_clusters_equal_the_spark_jobs(spark, name):
    cfg = DedupConfig(**CONFIGS[name])
    rows = corpus(seed=len(name))
    in_spark, here, spark_stats, driver_stats = both_paths(spark, rows, cfg)
    assert len(here) == len(rows)
    assert here == in_spark
    assert (driver_stats.candidate_edges, driver_stats.verified_edges) == \
        (spark_stats.candidate_edges, spark_stats.verified_edges)
    assert driver_stats.clusters_on_driver and not spark_stats.clusters_on_driver
    # The inputs are made to have something to agree on.
    kinds = {r["kind"] for r in here}
    if cfg.exact:
        assert "exact" in kinds
    assert ("near" in kinds) == cfg.near
    assert any(not r["kept"] for r in here)


def test_keep_order_follows_spark_for_nan_and_signed_zero(spark):
    """NaN sorts above every number and -0.0 ties with 0.0 (then the id decides), as in Spark."""
    text = "one two three four five six seven eight nine ten"
    rows = [("b", "s", text, 1, 1, float("nan")), ("a", "s", text, 1, 1, float("nan")),
            ("c", "s", text, 1, 1, 0.0), ("d", "s", text, 1, 1, -0.0)]
    cfg = DedupConfig(keep=("quality asc",))
    in_spark, here, _, _ = both_paths(spark, rows, cfg)
    assert here == in_spark
    assert {r["cluster_id"] for r in here} == {"c"}  # 0.0 and -0.0 tie; "c" < "d"; NaN last


def test_an_empty_batch(spark):
    in_spark, here, _, driver_stats = both_paths(spark, [], DedupConfig())
    assert here == in_spark == []
    assert (driver_stats.candidate_edges, driver_stats.verified_edges) == (0, 0)
