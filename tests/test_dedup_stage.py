"""The dedup stage end to end on tiny literal `clean` tables."""

from __future__ import annotations

import json
import shutil

import pytest

from tokenmill import tables
from tokenmill.config import RunConfig, from_dict
from tokenmill.facts import DedupFacts
from tokenmill.pipeline import run_stages

COLUMNS = "id string, source string, text string, meta string, n_chars int, n_words int, quality double"

BASE = " ".join(
    f"on day {i} the river ran past the old mill and the miller counted {i * 7} sacks of grain before dawn"
    for i in range(12))


def rows_from(docs):
    return [(i, src, text, "{}", len(text), len(text.split()), q) for i, src, text, q in docs]


def write_clean(spark, out, docs):
    df = spark.createDataFrame(rows_from(docs), COLUMNS)
    tables.write(df, f"{out}/tables/clean")


def run_dedup(spark, out, **dedup):
    cfg = from_dict(RunConfig, {"output": str(out), "dedup": dedup})
    manifest = run_stages(spark, cfg, ["dedup"], force=True)
    return manifest.stages["dedup"]


def table(spark, out, name, order="id"):
    return [r.asDict() for r in tables.read(spark, f"{out}/tables/{name}").orderBy(order).collect()]


# id, source, text, quality
CORPUS = [
    ("a1", "web", "Hello World, this is a page.", 0.5),
    ("a2", "news", "hello   world, this is a page.", 0.9),   # exact (case/space) dup of a1, better quality
    ("a3", "web", "HELLO WORLD, THIS IS A PAGE.", 0.9),      # same quality as a2, same length: id breaks tie
    ("b1", "web", BASE, 0.7),
    ("b2", "forum", BASE.replace("miller counted 35", "miller weighed 35"), 0.7),  # near dup of b1 (one word)
    ("c1", "web", "an entirely different document about gardening tomatoes and beans in spring", 0.7),
    ("d1", "web", "", 0.1),
    ("d2", "web", "", 0.1),                                    # exact dup of d1 (both empty)
]


@pytest.fixture(scope="module")
def corpus_run(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("dedup-corpus")
    write_clean(spark, out, CORPUS)
    return out, run_dedup(spark, out)


def test_exact_and_near_clusters(spark, corpus_run):
    tmp_path, rec = corpus_run
    assert (rec.rows_in, rec.rows_out) == (8, 4)
    assert rec.dropped == {"duplicate_exact": 3, "duplicate_near": 1}
    clusters = [(r["id"], r["cluster_id"], r["kept"], r["kind"], round(r["jaccard"], 3))
                for r in table(spark, tmp_path, "dup_clusters")]
    b2_j = [c[4] for c in clusters if c[0] == "b2"][0]
    assert 0.8 <= b2_j < 1.0
    assert clusters == [
        ("a1", "a2", False, "exact", 1.0),
        ("a2", "a2", True, "exact", 1.0),
        ("a3", "a2", False, "exact", 1.0),
        ("b1", "b1", True, "near", 1.0),
        ("b2", "b1", False, "near", b2_j),
        ("d1", "d1", True, "exact", 1.0),
        ("d2", "d1", False, "exact", 1.0),
    ]
    assert [r["id"] for r in table(spark, tmp_path, "deduped")] == ["a2", "b1", "c1", "d1"]
    rejects = table(spark, tmp_path, "rejects")
    assert [(r["id"], r["stage"], r["reason"]) for r in rejects] == [
        ("a1", "dedup", "duplicate_exact"), ("a3", "dedup", "duplicate_exact"),
        ("b2", "dedup", "duplicate_near"), ("d2", "dedup", "duplicate_exact")]
    assert rejects[0]["sample"] == "dup of a2: Hello World, this is a page."
    x = DedupFacts.from_extra(rec.extra)
    assert (x.bands, x.rows) == (14, 9)
    assert x.removed_by_source == {"forum": {"near": 1}, "web": {"exact": 3}}
    assert x.cluster_size_histogram == {"2": 2, "3": 1}
    assert x.s_curve["0.80"] == pytest.approx(1 - (1 - 0.8 ** 9) ** 14, abs=1e-4)
    # The signatures table has every document, comparable across runs.
    assert tables.row_count(spark, f"{tmp_path}/tables/signatures") == 8


def test_keep_rule_is_configurable(spark):
    from tokenmill.config.dedup import DedupConfig
    from tokenmill.dedup.keep import best_per_group, keep_key

    df = spark.createDataFrame([("g", "x", 0.9, 10), ("g", "y", 0.9, 30), ("g", "a", 0.5, 30), ("h", "z", None, 1)],
                               "grp string, id string, quality double, n_chars int")

    def keepers(**kw):
        keyed = df.withColumn("keep_key", keep_key(DedupConfig(**kw)))
        return sorted((r["grp"], r["keeper"]) for r in best_per_group(keyed, "grp").collect())

    assert keepers() == [("g", "y"), ("h", "z")]                            # quality, then length
    assert keepers(keep=("n_chars desc",)) == [("g", "a"), ("h", "z")]      # length, then smallest id
    assert keepers(keep=("quality asc", "n_chars asc")) == [("g", "a"), ("h", "z")]
    assert keepers(keep=()) == [("g", "a"), ("h", "z")]                     # id alone


def test_exact_normalization_is_configurable(spark):
    from tokenmill.config.dedup import DedupConfig
    from tokenmill.dedup.exact import exact_key

    df = spark.createDataFrame([("p1", "Hello World, this is a page."), ("p2", "Hello  World this is a page"),
                                ("p3", "hello world this is a page")], "id string, text string")
    configs = {"default": DedupConfig(), "punct_case": DedupConfig(exact_lowercase=False, exact_punctuation=True),
               "punct": DedupConfig(exact_punctuation=True), "raw": DedupConfig(exact_whitespace=False)}
    rows = df.select("id", *[exact_key(df.text, c).alias(name) for name, c in configs.items()]).orderBy("id").collect()

    def groups(name):
        by_key = {}
        for r in rows:
            by_key.setdefault(r[name], []).append(r["id"])
        return sorted(by_key.values())

    assert groups("default") == [["p1"], ["p2", "p3"]]
    assert groups("punct_case") == [["p1", "p2"], ["p3"]]
    assert groups("punct") == [["p1", "p2", "p3"]]
    assert groups("raw") == [["p1"], ["p2"], ["p3"]]


def test_two_runs_identical(spark, tmp_path, corpus_run):
    first, _ = corpus_run
    write_clean(spark, tmp_path, CORPUS[::-1])  # row order must not matter either
    # The first run finds its clusters on the driver; this one in Spark jobs, components in rounds.
    rounds = DedupFacts.from_extra(run_dedup(spark, tmp_path, driver_max_docs=0, driver_max_edges=0).extra)
    assert not rounds.clusters_on_driver and not rounds.components_on_driver
    assert DedupFacts.from_extra(corpus_run[1].extra).clusters_on_driver
    for name in ("dup_clusters", "deduped", "signatures", "rejects"):
        assert table(spark, first, name) == table(spark, tmp_path, name)
    assert json.loads((first / "manifest.json").read_text())["stages"]["dedup"]["extra"]["removed_by_source"] == \
        json.loads((tmp_path / "manifest.json").read_text())["stages"]["dedup"]["extra"]["removed_by_source"]


def test_incremental_equals_full_recompute(spark, tmp_path, corpus_run):
    full, _ = corpus_run
    old_ids, new_ids = {"a1", "b1", "c1", "d1"}, {"a2", "a3", "b2", "d2"}
    write_clean(spark, tmp_path / "old", [d for d in CORPUS if d[0] in old_ids])
    run_dedup(spark, tmp_path / "old")
    # The new run's clean table holds only the new documents: the old ones are
    # known from their signatures alone, never re-read or re-hashed.
    write_clean(spark, tmp_path / "new", [d for d in CORPUS if d[0] in new_ids])
    rec = run_dedup(spark, tmp_path / "new", previous_signatures=str(tmp_path / "old" / "tables" / "signatures"))
    assert (rec.rows_in, DedupFacts.from_extra(rec.extra).incremental["previous_documents"]) == (4, 4)
    for name in ("dup_clusters", "signatures"):
        assert table(spark, tmp_path / "new", name) == table(spark, full, name)
    full_kept = [r["id"] for r in table(spark, full, "deduped")]
    assert [r["id"] for r in table(spark, tmp_path / "new", "deduped")] == [i for i in full_kept if i in new_ids]
    # a2 (new, better quality) now stands for a1: full recompute agrees.
    assert rec.dropped == {"duplicate_exact": 2, "duplicate_near": 1}


def test_previous_signatures_must_match(spark, tmp_path, corpus_run):
    from tokenmill.errors import UserError

    full, _ = corpus_run
    write_clean(spark, tmp_path, CORPUS[:1])
    with pytest.raises(UserError, match="num_perm"):
        run_dedup(spark, tmp_path, num_perm=64, previous_signatures=str(full / "tables" / "signatures"))
    with pytest.raises(UserError, match="no signatures table"):
        run_dedup(spark, tmp_path, previous_signatures=str(tmp_path / "nowhere"))


def test_disabled_dedup_removes_an_earlier_runs_tables_and_rejects(spark, tmp_path, corpus_run):
    out = tmp_path / "out"
    shutil.copytree(corpus_run[0], out)  # an enabled run's output, as it left it
    assert tables.exists(spark, f"{out}/tables/dup_clusters")
    assert [r for r in table(spark, out, "rejects") if r["stage"] == "dedup"]
    rec = run_dedup(spark, out, enabled=False)
    assert rec.rows_out == len(CORPUS) and rec.dropped == {}
    for name in ("dup_clusters", "signatures"):
        assert not tables.exists(spark, f"{out}/tables/{name}")
    assert [r for r in table(spark, out, "rejects") if r["stage"] == "dedup"] == []
    assert len(table(spark, out, "deduped")) == len(CORPUS)
