"""The tokenizer's training sample: bounded by documents and by bytes, random, stable."""

from __future__ import annotations

import pytest

from tokenmill.errors import ConfigError
from tokenmill.config.tokenize import TokenizeConfig
from tokenmill.tokenize.tokenizer import sample_texts, within_bytes

N = 400
TEXT_BYTES = 1000


@pytest.fixture(scope="module")
def table(spark):
    # Ids sort in the order of the number in the text, so a prefix is easy to spot.
    rows = [(f"doc-{i:04d}", f"{i:04d} " + "x" * (TEXT_BYTES - 5)) for i in range(N)]
    return spark.createDataFrame(rows, "id string, text string")


def _numbers(texts):
    return [int(t[:4]) for t in texts]


def test_a_byte_budget_samples_across_the_table_and_stays_within_it(table):
    texts = sample_texts(table, n_docs=N, seed=0, total=N, max_bytes=40 * TEXT_BYTES)
    numbers = _numbers(texts)
    assert 20 <= len(texts) <= 40  # about a tenth of the rows, cut where the budget is reached
    assert numbers == sorted(numbers)  # id order
    assert numbers[-1] > N // 2  # spread over the ids, not their first tenth
    assert sum(len(t) for t in texts) <= 40 * TEXT_BYTES


def test_the_sample_does_not_depend_on_partitioning(table):
    one = sample_texts(table.coalesce(1), n_docs=N, seed=3, total=N, max_bytes=50 * TEXT_BYTES)
    many = sample_texts(table.repartition(7), n_docs=N, seed=3, total=N, max_bytes=50 * TEXT_BYTES)
    assert one == many
    other_seed = sample_texts(table, n_docs=N, seed=4, total=N, max_bytes=50 * TEXT_BYTES)
    assert other_seed != one


def test_no_byte_limit_keeps_the_document_count_rule(table):
    everything = sample_texts(table, n_docs=N, seed=0, total=N, max_bytes=0)
    assert _numbers(everything) == list(range(N))
    # A budget larger than the table changes nothing.
    assert sample_texts(table, n_docs=N, seed=0, total=N, max_bytes=10 * N * TEXT_BYTES) == everything
    capped = sample_texts(table, n_docs=50, seed=0, total=N, max_bytes=0)
    assert len(capped) <= 50


def test_within_bytes_keeps_the_text_that_reaches_the_budget():
    assert within_bytes(["aa", "bb", "cc"], 3) == ["aa", "bb"]
    assert within_bytes(["aaaa", "bb"], 1) == ["aaaa"]  # never empty
    assert within_bytes(["é", "b"], 2) == ["é"]  # bytes, not characters
    with pytest.raises(ConfigError, match="train_bytes"):
        TokenizeConfig(train_bytes=-1)
