"""Config of the etl stage: inputs, cleaning, quality filters, PII."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tokenmill.typed_config import require

Preset = Literal["prose", "code"]
# The stage default: "auto" picks code for a row whose id or file name ends in
# one of ingest.text_extensions_code, prose for any other.
StagePreset = Literal["auto", "prose", "code"]


@dataclass(frozen=True)
class InputSpec:
    """One raw input: a file, a folder of files, a Delta table or a catalog table."""

    path: str
    format: Literal["auto", "jsonl", "parquet", "text", "delta", "table"] = "auto"
    source: str | None = None  # label; defaults to the path's last folder name
    text_field: str = "text"
    id_field: str | None = "id"
    preset: Preset | None = None  # None: code files -> code, else the stage default

    def __post_init__(self):
        require(bool(self.path), "path", "must name a file, folder or table")
        require(bool(self.text_field), "text_field", "must name the column or JSON field holding the text")


@dataclass(frozen=True)
class IngestConfig:
    # Rows larger than this are rejected as too_long before any parsing (never held twice).
    max_doc_bytes: int = 8_000_000
    # invalid UTF-8 in a JSONL line or text file: reject the row, or repair it with U+FFFD.
    invalid_utf8: Literal["reject", "replace"] = "reject"
    # A text file whose first 8 KiB hold a NUL byte or >30% undecodable bytes is binary.
    text_extensions_code: tuple[str, ...] = (
        ".py", ".js", ".ts", ".java", ".c", ".h", ".cc", ".cpp", ".hpp", ".go", ".rs", ".rb",
        ".sh", ".scala", ".kt", ".swift", ".php", ".cs", ".sql", ".r", ".jl", ".lua", ".pl",
    )

    def __post_init__(self):
        require(self.max_doc_bytes > 0, "max_doc_bytes", "must be > 0")


@dataclass(frozen=True)
class FilterConfig:
    """Quality thresholds; Gopher rules (Rae et al. 2021, MassiveText) for prose."""

    min_chars: int = 1
    max_chars: int = 1_000_000
    # prose (Gopher)
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_fraction: float = 0.9
    max_ellipsis_lines_fraction: float = 0.3
    min_alpha_words_fraction: float = 0.8
    min_stop_words: int = 2
    max_dup_line_fraction: float = 0.3
    max_dup_para_fraction: float = 0.3
    max_dup_line_char_fraction: float = 0.2
    max_dup_para_char_fraction: float = 0.2
    # top n-gram character fraction, n -> max fraction
    max_top_ngram_char_fraction: dict[int, float] = field(
        default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    # code
    code_min_chars: int = 20
    code_max_line_length: int = 1000
    code_min_alnum_fraction: float = 0.25
    # bad words: a document with more than this many hits is dropped (0: any hit drops)
    bad_words: bool = True
    bad_words_file: str | None = None  # one word per line; None: the bundled short list
    max_bad_words: int = 0

    def __post_init__(self):
        require(self.min_chars >= 0, "min_chars", "must be >= 0")
        require(self.max_chars > self.min_chars, "max_chars", "must be > min_chars")
        require(0 <= self.min_words <= self.max_words, "min_words", "must be between 0 and max_words")
        for name in ("max_symbol_word_ratio", "max_bullet_lines_fraction", "max_ellipsis_lines_fraction",
                     "min_alpha_words_fraction", "max_dup_line_fraction", "max_dup_para_fraction",
                     "max_dup_line_char_fraction", "max_dup_para_char_fraction", "code_min_alnum_fraction"):
            v = getattr(self, name)
            require(0.0 <= v <= 1.0, name, f"must be between 0 and 1, got {v}")
        for n, v in self.max_top_ngram_char_fraction.items():
            require(1 <= n <= 10 and 0.0 <= v <= 1.0, "max_top_ngram_char_fraction",
                    f"keys must be n in 1..10 and values in [0, 1], got {n}: {v}")
        require(self.max_bad_words >= 0, "max_bad_words", "must be >= 0")


PII_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IP_ADDRESS", "IBAN_CODE", "US_SSN",
                "CRYPTO", "URL")


@dataclass(frozen=True)
class PiiConfig:
    enabled: bool = True
    entities: tuple[str, ...] = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IP_ADDRESS",
                                 "IBAN_CODE", "US_SSN", "CRYPTO")
    # presidio's own phone regions; fewer regions run faster.
    phone_regions: tuple[str, ...] = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")
    # Findings scoring below this are kept as text. 0 redacts all that presidio reports.
    score_threshold: float = 0.0
    # entity -> placeholder; entities not named here get "<ENTITY>".
    placeholders: dict[str, str] = field(default_factory=lambda: {
        "EMAIL_ADDRESS": "<EMAIL>", "PHONE_NUMBER": "<PHONE>", "CREDIT_CARD": "<CREDIT_CARD>",
        "IP_ADDRESS": "<IP>", "IBAN_CODE": "<IBAN>", "US_SSN": "<SSN>", "CRYPTO": "<CRYPTO>",
        "URL": "<URL>", "PERSON": "<PERSON>", "LOCATION": "<LOCATION>",
    })
    # An installed spaCy model (package name or path) adds its NER entities; None: patterns only.
    ner_model: str | None = None
    ner_entities: tuple[str, ...] = ("PERSON", "LOCATION")
    # Characters of context handed to presidio around candidates whose PII can reach
    # past the trigger (IBAN country code before its account number).
    window: int = 48

    def __post_init__(self):
        for e in self.entities:
            require(e in PII_ENTITIES, "entities", f"unknown entity {e!r}; allowed: {', '.join(PII_ENTITIES)}")
        require(0.0 <= self.score_threshold <= 1.0, "score_threshold", "must be between 0 and 1")
        require(self.window >= 16, "window", "must be >= 16")
        require(not (self.enabled and "PHONE_NUMBER" in self.entities and not self.phone_regions),
                "phone_regions", "must name at least one region (e.g. US) when PHONE_NUMBER is on")


@dataclass(frozen=True)
class EtlConfig:
    # An input's own preset wins, then a code text file's; else this, per row.
    preset: StagePreset = "auto"
    ingest: IngestConfig = field(default_factory=IngestConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    pii: PiiConfig = field(default_factory=PiiConfig)
    # ftfy's fixes (mojibake, HTML entities, terminal escapes); off keeps text as read.
    fix_text: bool = True
    # Characters of a dropped row kept in rejects (PII removed first).
    reject_sample_chars: int = 200
    # Partitions for clean+PII; 0: about 16 MB of text each, at least the core count.
    partitions: int = 0

    def __post_init__(self):
        require(self.reject_sample_chars >= 0, "reject_sample_chars", "must be >= 0")
        require(self.partitions >= 0, "partitions", "must be >= 0")
