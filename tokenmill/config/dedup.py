"""Config of the dedup stage: exact and MinHash-LSH near-duplicate removal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tokenmill.typed_config import require

# Columns a keep rule may sort on (numeric, so "desc" works by negation).
KEEP_COLUMNS = ("quality", "n_chars", "n_words")


@dataclass(frozen=True)
class DedupConfig:
    enabled: bool = True
    # Exact duplicates: hash of the text after these normalizations.
    exact: bool = True
    exact_lowercase: bool = True
    exact_whitespace: bool = True  # collapse runs of whitespace, trim
    exact_punctuation: bool = False  # drop Unicode punctuation and symbols
    # Near duplicates: MinHash over shingles, LSH bands, connected components.
    near: bool = True
    shingle: Literal["word", "char"] = "word"  # char n-grams suit code
    ngram: int = 5
    lowercase: bool = True
    num_perm: int = 128
    seed: int = 1
    threshold: float = 0.8
    # Weights of false positives / false negatives when deriving bands x rows
    # from the threshold (datasketch's _optimal_param). Verification removes
    # false positives afterwards, so a missed pair costs more: (0.1, 0.9)
    # gives 14 x 9 of 128 (P(candidate) 0.87 at J=0.8, 0.975 at 0.85), where
    # (0.5, 0.5) gives 9 x 13 (0.40 at 0.8, 0.69 at 0.85).
    lsh_weights: tuple[float, ...] = (0.1, 0.9)
    bands: int | None = None  # set both to override the derived pair
    rows: int | None = None
    # Drop candidate pairs whose estimated Jaccard (signatures) is below
    # verify_threshold (default: threshold).
    verify: Literal["none", "estimated"] = "estimated"
    verify_threshold: float | None = None
    # Keep rule, most important first; "id asc" always breaks the last tie.
    keep: tuple[str, ...] = ("quality desc", "n_chars desc")
    # An earlier run's signatures table: dedup the new documents against it
    # (only the new documents are hashed).
    previous_signatures: str | None = None
    max_rounds: int = 60  # connected-components rounds before giving up
    # A graph of up to this many verified edges is labelled on the driver (one
    # collect and a union-find) instead of in Spark rounds, whose many small
    # jobs cost seconds each; 0: always in Spark. The labels are the same.
    driver_max_edges: int = 500_000
    # A batch of up to this many documents (signatures) goes through the whole
    # clusters phase on the driver (one collect, numpy), with the same tables
    # as the Spark jobs give; 0: always in Spark.
    driver_max_docs: int = 250_000
    sample_chars: int = 200  # text kept in a reject row

    def __post_init__(self):
        require(self.ngram >= 1, "ngram", f"must be at least 1, got {self.ngram}")
        require(1 <= self.num_perm <= 1024, "num_perm", f"must be in 1..1024, got {self.num_perm}")
        require(0.0 < self.threshold <= 1.0, "threshold", f"must be in (0, 1], got {self.threshold}")
        require(len(self.lsh_weights) == 2 and all(w >= 0 for w in self.lsh_weights) and sum(self.lsh_weights) > 0,
                "lsh_weights", f"must be two non-negative numbers [false_positive, false_negative], got {list(self.lsh_weights)}")
        require((self.bands is None) == (self.rows is None), "bands",
                "set bands and rows together (or neither, to derive them from threshold)")
        if self.bands is not None:
            require(self.bands >= 1 and self.rows >= 1 and self.bands * self.rows <= self.num_perm, "bands",
                    f"bands x rows must be positive and at most num_perm={self.num_perm}, got {self.bands} x {self.rows}")
        if self.verify_threshold is not None:
            require(0.0 <= self.verify_threshold <= 1.0, "verify_threshold",
                    f"must be in [0, 1], got {self.verify_threshold}")
        require(self.max_rounds >= 1, "max_rounds", f"must be at least 1, got {self.max_rounds}")
        require(self.driver_max_edges >= 0, "driver_max_edges", f"must be >= 0, got {self.driver_max_edges}")
        require(self.driver_max_docs >= 0, "driver_max_docs", f"must be >= 0, got {self.driver_max_docs}")
        require(self.sample_chars >= 0, "sample_chars", f"must be >= 0, got {self.sample_chars}")
        for i, rule in enumerate(self.keep):
            parts = rule.split()
            require(len(parts) == 2 and parts[0] in KEEP_COLUMNS and parts[1] in ("asc", "desc"), f"keep[{i}]",
                    f"must look like 'COLUMN asc|desc' with COLUMN one of {', '.join(KEEP_COLUMNS)}; got {rule!r}")

    @property
    def keep_rules(self) -> list[tuple[str, bool]]:
        """(column, descending) pairs of the keep rule."""
        return [(r.split()[0], r.split()[1] == "desc") for r in self.keep]

    @property
    def min_jaccard(self) -> float:
        return self.threshold if self.verify_threshold is None else self.verify_threshold

    def signature_params(self) -> str:
        """What a signature depends on; an earlier run's table must match it."""
        return (f"datasketch-2.0/affine32/{self.shingle}{self.ngram}/perm{self.num_perm}/seed{self.seed}/"
                f"lower{int(self.lowercase)}/exact{int(self.exact_lowercase)}{int(self.exact_whitespace)}"
                f"{int(self.exact_punctuation)}")
