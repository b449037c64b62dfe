"""Clean documents: fix encodings, normalize, filter, strip PII — one Arrow pass.

``normalize`` repairs text with ftfy (mojibake, HTML entities, terminal
escapes, surrogates), applies Unicode NFC, removes control characters and
tidies whitespace. Prose gets its spaces collapsed; code keeps its
indentation and only loses trailing spaces and runs of blank lines.

``clean_and_redact`` runs normalize -> filters -> PII in one ``mapInArrow``
pass (one trip of the text through Python instead of three). Every input
row comes out once: kept rows with ``reason`` null and PII replaced,
dropped rows with their ``reason`` and a short PII-free ``sample``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from typing import NamedTuple, Optional

from tokenmill.typed_config import to_dict
from tokenmill.config.etl import EtlConfig
from tokenmill.etl.filters import Reason, bad_words_regex, judge, load_bad_words


class CleanRow(NamedTuple):
    """One output row of ``clean_and_redact``: the single definition of its shape."""

    id: Optional[str]
    source: Optional[str]
    text: Optional[str]  # cleaned and PII-free; None for a dropped row
    meta: Optional[str]
    n_chars: int
    n_words: int
    quality: float
    reason: Optional[str]  # None: kept
    sample: Optional[str]  # PII-free head of a dropped row
    pii: Optional[dict]  # placeholders written, by entity type
    preset: Optional[str] = None  # prose or code: the rules this row was cleaned by


# Spark type of each CleanRow field, in order.
CLEAN_TYPES = {"id": "string", "source": "string", "text": "string", "meta": "string", "n_chars": "int",
               "n_words": "int", "quality": "double", "reason": "string", "sample": "string",
               "pii": "map<string,int>", "preset": "string"}
assert tuple(CLEAN_TYPES) == CleanRow._fields
CLEAN_SCHEMA = ", ".join(f"{name} {kind}" for name, kind in CLEAN_TYPES.items())
# The columns of tables/clean: a kept row without its verdict.
CLEAN_COLUMNS = [name for name in CleanRow._fields if name not in ("reason", "sample", "pii", "preset")]

# C0 and C1 controls except tab and newline (CR is folded into newline first).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_INLINE_SPACE = re.compile(r"[^\S\n]+")  # whitespace other than newline
_BLANK_LINES = re.compile(r"\n{3,}")
_ZERO_WIDTH = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff]")


@lru_cache(maxsize=2)
def ftfy_config(preset: str):
    import ftfy

    # Keep typographic quotes and full-width characters: they are text, not damage.
    # Code keeps literal entities (they are often part of string literals).
    return ftfy.TextFixerConfig(
        unescape_html=(preset != "code"), uncurl_quotes=False, fix_character_width=False,
        explain=False, normalization="NFC",
    )


def _needs_ftfy(text: str) -> bool:
    """ASCII text without '&' or ESC has nothing ftfy would change that we do not do below."""
    return not text.isascii() or "&" in text or "\x1b" in text


# What ftfy may change in a line: anything but tab, form feed and printable
# ASCII other than '&' (HTML entities). Checked against ftfy for every ASCII
# character (tests/test_etl_clean.py).
_FTFY_TOUCHES = re.compile(r"[^\t\x0c\x20-\x25\x27-\x7e]")


def fix_lines(text: str, config) -> str:
    """``ftfy.fix_text(text, config)``, run only on the lines that need it.

    ftfy fixes every line (up to and including its newline) on its own, and
    with ``unescape_html`` set (not "auto") nothing carries from one line to
    the next, so lines of plain printable ASCII are left as they are and the
    runs of the others go to ftfy together: the same text, much sooner for a
    file with a few non-ASCII lines among thousands.
    """
    import ftfy

    lines = text.split("\n")
    out: list[str] = []
    start = None  # first line of the run waiting for ftfy
    for i, line in enumerate(lines):
        if _FTFY_TOUCHES.search(line):
            start = i if start is None else start
            continue
        if start is not None:
            out.append(ftfy.fix_text("\n".join(lines[start:i]) + "\n", config))
            start = None
        out.append(line + "\n")
    if start is not None:
        out.append(ftfy.fix_text("\n".join(lines[start:]), config))
    else:
        out[-1] = out[-1][:-1]  # the last line has no newline of its own
    return "".join(out)


def normalize(text: str, preset: str = "prose", fix_text: bool = True) -> str:
    """ftfy + NFC + control characters + whitespace."""
    if fix_text and _needs_ftfy(text):
        text = fix_lines(text, ftfy_config(preset))
    elif not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii():
        text = _ZERO_WIDTH.sub("", text)
    text = _CONTROL.sub("", text)
    if preset == "code":
        # Trailing whitespace off every line (str.rstrip: the same characters as the
        # regex [^\S\n], without its retries at every indentation run).
        text = "\n".join(line.rstrip() for line in text.rstrip().split("\n"))
        text = _BLANK_LINES.sub("\n\n", text).lstrip("\n")
        return text
    text = _INLINE_SPACE.sub(" ", text)
    text = text.replace(" \n", "\n").replace("\n ", "\n")
    return _BLANK_LINES.sub("\n\n", text).strip()


# Fields of a record that may name the file its text came from (JSONL of source files).
NAME_FIELDS = ("path", "file_path", "filepath", "filename", "file_name", "name")


def row_preset(meta: str | None, default: str, doc_id: str | None = None,
               code_extensions: tuple[str, ...] = ()) -> str:
    """The preset for one row.

    The preset ingest recorded in meta (an input's ``preset``, a code text
    file) wins. Else a ``prose`` or ``code`` default applies; ``auto`` picks
    code when the row's id or a file-name field of its record ends in a code
    extension, prose otherwise.
    """
    parsed = None
    if meta and '"preset"' in meta:
        parsed = _json_object(meta)
        if parsed.get("preset") in ("prose", "code"):
            return parsed["preset"]
    if default != "auto":
        return default
    names = [doc_id] if doc_id else []
    if meta and any(f'"{field}"' in meta for field in NAME_FIELDS):
        parsed = parsed if parsed is not None else _json_object(meta)
        names += [parsed[f] for f in NAME_FIELDS if isinstance(parsed.get(f), str)]
    return "code" if any(name.lower().endswith(code_extensions) for name in names) else "prose"


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Cleaner:
    """Per-worker state: bad-words regex and the PII redactor, built once."""

    def __init__(self, cfg: EtlConfig):
        from tokenmill.etl.pii import redactor

        self.cfg = cfg
        fc = cfg.filters
        self.bad_words = bad_words_regex(load_bad_words(fc.bad_words_file)) if fc.bad_words else None
        self.redactor = redactor(cfg.pii)
        self.code_extensions = tuple(e.lower() for e in cfg.ingest.text_extensions_code)

    def sample(self, text: str | None) -> str:
        if not text:
            return ""
        head = text[: self.cfg.reject_sample_chars * 2]
        return self.redactor.redact(head)[0][: self.cfg.reject_sample_chars]

    def row(self, doc_id, source, text, meta) -> CleanRow:
        """One output row for one document."""
        preset = row_preset(meta, self.cfg.preset, doc_id, self.code_extensions)
        if text is None:
            return CleanRow(doc_id, source, None, meta, n_chars=0, n_words=0, quality=0.0, reason=Reason.NULL_TEXT,
                            sample="", pii=None, preset=preset)
        text = normalize(text, preset, self.cfg.fix_text)
        verdict = judge(text, preset, self.cfg.filters, self.bad_words)
        if verdict.reason is not None:
            return CleanRow(doc_id, source, None, meta, n_chars=len(text), n_words=verdict.n_words, quality=0.0,
                            reason=verdict.reason, sample=self.sample(text), pii=None, preset=preset)
        redacted, counts = self.redactor.redact(text)
        return CleanRow(doc_id, source, redacted, meta, n_chars=len(redacted), n_words=verdict.n_words,
                        quality=verdict.quality, reason=None, sample=None, pii=counts or None, preset=preset)


_CLEANERS: dict[str, Cleaner] = {}


def cleaner(cfg: EtlConfig) -> Cleaner:
    """The worker's Cleaner for this config, built on first use (Python workers are reused)."""
    key = json.dumps(to_dict(cfg), sort_keys=True, default=str)
    if key not in _CLEANERS:
        _CLEANERS[key] = Cleaner(cfg)
    return _CLEANERS[key]


def _arrow_type(kind: str):
    import pyarrow as pa

    simple = {"string": pa.string(), "int": pa.int32(), "double": pa.float64()}
    return simple[kind] if kind in simple else pa.map_(pa.string(), pa.int32())


def _to_batch(rows: list[CleanRow]):
    import pyarrow as pa

    columns = list(zip(*rows)) if rows else [[] for _ in CleanRow._fields]
    arrays = []
    for (name, kind), values in zip(CLEAN_TYPES.items(), columns):
        if kind.startswith("map<"):
            values = [None if v is None else list(v.items()) for v in values]
        arrays.append(pa.array(values, _arrow_type(kind)))
    return pa.RecordBatch.from_arrays(arrays, names=list(CleanRow._fields))


def clean_and_redact(df, cfg: EtlConfig):
    """documents (id, source, text, meta, ...) -> CLEAN_SCHEMA rows, one per input row."""
    def run(batches):
        c = cleaner(cfg)
        for batch in batches:
            ids = batch.column("id").to_pylist()
            sources = batch.column("source").to_pylist()
            texts = batch.column("text").to_pylist()
            metas = batch.column("meta").to_pylist()
            yield _to_batch([c.row(*r) for r in zip(ids, sources, texts, metas)])

    return df.select("id", "source", "text", "meta").mapInArrow(run, CLEAN_SCHEMA)


def redact_samples(df, cfg: EtlConfig):
    """Reject rows (id, source, reason, sample) with PII removed from ``sample`` and truncated."""
    def run(batches):
        import pyarrow as pa

        c = cleaner(cfg)
        for batch in batches:
            samples = [c.sample(s) for s in batch.column("sample").to_pylist()]
            idx = batch.schema.get_field_index("sample")
            yield batch.set_column(idx, "sample", pa.array(samples, pa.string()))

    return df.select("id", "source", "reason", "sample").mapInArrow(
        run, "id string, source string, reason string, sample string")
