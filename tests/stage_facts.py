"""Complete stage facts for hand-made manifests, with the figures a test cares about as overrides."""

from __future__ import annotations

from typing import Any

from tokenmill.chat.facts import ChatEtlFacts
from tokenmill.facts import DedupFacts, EtlFacts, ShardsFacts


def etl_extra(**overrides: Any) -> dict[str, Any]:
    facts = EtlFacts(ingest={"rows_in": 0, "rows_out": 0, "dropped": {}},
                     clean={"rows_in": 0, "rows_out": 0, "dropped": {}},
                     pii={}, text_bytes=0, mb_per_s=0.0, partitions=1, versions={})
    return {**facts.to_extra(), **overrides}


def chat_etl_extra(**overrides: Any) -> dict[str, Any]:
    """A chat run's etl record: the base etl figures, the row kind and the validation step."""
    facts = ChatEtlFacts(**EtlFacts.from_extra(etl_extra()).__dict__, task="chat",
                         validate={"rows_in": 0, "rows_out": 0, "dropped": {}})
    return {**facts.to_extra(), **overrides}


def dedup_extra(**overrides: Any) -> dict[str, Any]:
    facts = DedupFacts(bands=9, rows=13, num_perm=128, threshold=0.8, shingle="word 5-grams",
                       verify="estimated", s_curve={}, candidate_edges=0, verified_edges=0,
                       component_rounds=0, clusters=0, cluster_size_histogram={}, removed_by_source={},
                       documents_hashed=0)
    return {**facts.to_extra(), **overrides}


def shards_extra(**overrides: Any) -> dict[str, Any]:
    facts = ShardsFacts(location="shards", remote=None, format="tokenmill-mds-v1", column="tokens", dtype="uint16", seq_len=16,
                        vocab_size=300, eos_id=0, bos_id=None, tokenizer_sha256="",
                        splits={"train": {"sequences": 0, "tokens": 0, "shards": 0},
                                "val": {"sequences": 0, "tokens": 0, "shards": 0}},
                        rows_unit="sequences",
                        bytes={"train": 0, "val": 0}, partitions={"train": 1, "val": 1},
                        compression="zstd", seed=0, shuffle_quality={}, tokens_produced=0,
                        tokens_dropped=0, lineage={})
    return {**facts.to_extra(), **overrides}
