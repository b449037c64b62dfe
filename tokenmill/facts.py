"""What one stage tells the next, as typed values.

A stage's record in ``manifest.json`` keeps its figures in ``extra`` (plain
JSON). The facts a later stage or the data card relies on are read through
these dataclasses: the producer builds one and writes ``to_extra()``, the
consumer calls ``of(manifest)``, so a renamed or missing key fails in one
place with a message that says what to rerun.

A variant of the stages (chat data, ``tokenmill/chat``) records facts of its
own: a class with ``VARIANT`` set, whose records carry that name under
``variant``. A reader that has to know which kind of data a record
describes asks ``find(manifest)``: the facts when the record is of that
class's variant, else None. Base records carry no tag, so their JSON stays
as it was.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from tokenmill.errors import UserError
from tokenmill.manifest import Manifest

F = TypeVar("F", bound="StageFacts")
VARIANT_KEY = "variant"  # the key of a variant's name in a record's extra


@dataclass(frozen=True)
class StageFacts:
    STAGE: ClassVar[str] = ""
    VARIANT: ClassVar[str | None] = None  # None: the base stage's facts (plain text)

    def to_extra(self) -> dict[str, Any]:
        extra = dataclasses.asdict(self)
        return extra if self.VARIANT is None else {**extra, VARIANT_KEY: self.VARIANT}

    @classmethod
    def from_extra(cls: type[F], extra: dict[str, Any]) -> F:
        """The facts in a record's ``extra``; a field with a default may be absent (older records)."""
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.name not in extra and not _has_default(f)]
        if missing:
            raise UserError(f"the {cls.STAGE} record in manifest.json lacks {', '.join(missing)}: "
                            f"rerun `tokenmill {cls.STAGE} --force`")
        return cls(**{f.name: extra[f.name] for f in fields if f.name in extra})

    @classmethod
    def of(cls: type[F], manifest: Manifest) -> F:
        rec = manifest.stages.get(cls.STAGE)
        if rec is None:
            raise UserError(f"no {cls.STAGE} record in the manifest: run `tokenmill {cls.STAGE}` first")
        return cls.from_extra(rec.extra)

    @classmethod
    def find(cls: type[F], manifest: Manifest) -> F | None:
        """The facts when the stage's record was written by this class's variant, else None
        (no record, or one of another kind of data)."""
        rec = manifest.stages.get(cls.STAGE)
        if rec is None or rec.extra.get(VARIANT_KEY) != cls.VARIANT:
            return None
        return cls.from_extra(rec.extra)


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


@dataclass(frozen=True)
class EtlFacts(StageFacts):
    STAGE = "etl"

    ingest: dict[str, Any]  # rows_in, rows_out, dropped by reason
    clean: dict[str, Any]  # rows_in, rows_out, dropped by reason
    pii: dict[str, int]  # placeholders written, by entity type
    text_bytes: int
    mb_per_s: float
    partitions: int
    versions: dict[str, int]  # table -> Delta version written
    presets: dict[str, int] = dataclasses.field(default_factory=dict)  # rows cleaned by prose / code rules


@dataclass(frozen=True)
class TokenizeFacts(StageFacts):
    STAGE = "tokenize"

    rows_unit: str
    input_table: str
    tokenizer_sha256: str
    tokenizer_source: str  # a tokenizer.json path, or "trained"
    vocab_size: int
    dtype: str  # token dtype in the sequences and the shards
    eos_id: int
    bos_id: int | None
    seq_len: int
    pack_groups: int
    sequences: int
    tokens: int
    tokens_in_sequences: int
    tokens_dropped: int
    tokenizer_train_s: float = 0.0  # sampling + training; 0 when tokenize.tokenizer is given


@dataclass(frozen=True)
class DedupFacts(StageFacts):
    STAGE = "dedup"

    bands: int
    rows: int  # rows per LSH band
    num_perm: int
    threshold: float
    shingle: str  # e.g. "word 5-grams"
    verify: str
    s_curve: dict[str, float]  # "0.80" -> P(candidate | Jaccard 0.80)
    candidate_edges: int
    verified_edges: int
    component_rounds: int
    clusters: int
    cluster_size_histogram: dict[str, int]  # "size" -> clusters of that size
    removed_by_source: dict[str, dict[str, int]]  # source -> kind (exact/near) -> documents
    documents_hashed: int
    enabled: bool = True
    components_on_driver: bool = False  # a small graph, labelled by a union-find on the driver
    clusters_on_driver: bool = False  # a small batch: the whole clusters phase on the driver
    incremental: dict[str, Any] | None = None  # previous_signatures, previous_documents

    @classmethod
    def disabled(cls) -> "DedupFacts":
        """The record of a run with ``dedup.enabled: false``: nothing hashed, nothing removed."""
        return cls(bands=0, rows=0, num_perm=0, threshold=0.0, shingle="", verify="none", s_curve={},
                   candidate_edges=0, verified_edges=0, component_rounds=0, clusters=0,
                   cluster_size_histogram={}, removed_by_source={}, documents_hashed=0, enabled=False)


@dataclass(frozen=True)
class ShardFolderFacts(StageFacts):
    """What every variant of the shards stage records: where it wrote, and the fields of
    S/dataset.json that every format has. A reader of only these reads any shards record."""

    STAGE = "shards"

    location: str  # the local shards folder
    remote: str | None  # the remote copy, if any
    # As in S/dataset.json.
    format: str
    column: str
    dtype: str
    seq_len: int
    vocab_size: int
    eos_id: int
    bos_id: int | None
    tokenizer_sha256: str
    splits: dict[str, dict[str, int]]  # split -> counts (sequences, tokens, shards, ...)


@dataclass(frozen=True)
class ShardsFacts(ShardFolderFacts):
    """The shards of plain text (tokenmill-mds-v1): splits hold sequences, tokens, shards."""

    # The stage's own figures.
    rows_unit: str
    bytes: dict[str, int]  # split -> bytes written
    partitions: dict[str, int]  # split -> writer partitions
    compression: str
    seed: int
    shuffle_quality: dict[str, dict[str, Any]]  # split -> window, max_share_deviation, worst_source, ...
    tokens_produced: int
    tokens_dropped: int
    lineage: dict[str, Any]

    @property
    def train_tokens(self) -> int:
        return int(self.splits["train"]["tokens"])
