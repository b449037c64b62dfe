"""Connected components in Spark, and on the driver, == a plain Python union-find."""

from __future__ import annotations

import random

from tokenmill.dedup.components import connected_components, on_driver


def union_find_labels(edges):
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent)}


def random_graph(rng, nodes, n_edges, first=0):
    """Random edges among nodes first .. first+nodes-1, then a path of 100 more nodes."""
    edges = [(first + rng.randrange(nodes), first + rng.randrange(nodes)) for _ in range(n_edges)]
    # A long path: the worst case for label propagation, a few rounds here.
    edges += [(i, i + 1) for i in range(first + nodes, first + nodes + 100)]
    return edges


def test_components_match_union_find(spark, tmp_path):
    rng = random.Random(7)
    # A sparse small graph and a larger one side by side, on disjoint node ids:
    # one run must get the components of both, each labelled by its smallest node.
    edges = random_graph(rng, 40, 30) + random_graph(rng, 1500, 1000, first=1000)
    df = spark.createDataFrame(edges, "src long, dst long")
    labels, rounds = connected_components(df, checkpoint_dir=str(tmp_path / "cc"))
    got = {r["node"]: r["label"] for r in labels.collect()}
    expected = {n: l for n, l in union_find_labels(edges).items() if any(n in e for e in edges if e[0] != e[1])}
    assert got == expected
    assert any(label < 140 for label in got.values()) and any(label >= 1000 for label in got.values())
    assert 1 <= rounds <= 12


def test_components_on_string_ids_with_local_checkpoints(spark):
    edges = [("b", "a"), ("c", "b"), ("x", "y"), ("d", "c"), ("q", "q")]
    df = spark.createDataFrame(edges, "src string, dst string")
    labels, _ = connected_components(df)
    assert sorted((r["node"], r["label"]) for r in labels.collect()) == [
        ("a", "a"), ("b", "a"), ("c", "a"), ("d", "a"), ("x", "x"), ("y", "x")]


def test_components_on_the_driver_match_union_find(spark):
    # The rounds are checked against the same union-find above; here the driver's labels.
    rng = random.Random(11)
    edges = random_graph(rng, 300, 200) + [(5000, 5000)]  # a lone self loop is no node
    df = spark.createDataFrame(edges, "src long, dst long")
    got = on_driver(df)
    assert dict(zip(*[got.toArrow().column(c).to_pylist() for c in ("node", "label")])) == {
        n: l for n, l in union_find_labels(edges).items() if n != 5000}
    assert [(f.name, f.dataType.simpleString()) for f in got.schema] == [("node", "bigint"), ("label", "bigint")]
    strings = spark.createDataFrame([("b", "a"), ("c", "b"), ("x", "y"), ("q", "q")], "src string, dst string")
    assert sorted(tuple(r) for r in on_driver(strings).collect()) == [
        ("a", "a"), ("b", "a"), ("c", "a"), ("x", "x"), ("y", "x")]
