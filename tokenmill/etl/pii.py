"""Find PII with presidio's pattern recognizers and replace it with typed placeholders.

presidio's ``AnalyzerEngine.analyze`` runs every recognizer over the whole
document, tries phone numbers in 8 regions and re-scores by context; most
text holds no PII, so most of that work finds nothing. Here the same
presidio recognizers run only on *candidate windows*: short stretches
around what a cheap regex says could be PII (an ``@``, a run of digits, a
dotted quad, ``::``, an IBAN or wallet prefix), widened to whitespace so
the recognizers' word-boundary rules see the same neighbours as in the
whole document. No recognizer can match text that holds none of these
triggers. The context enhancer only changes scores, so it is skipped: with
``score_threshold: 0`` (presidio's default) it cannot change what is
redacted.

With ``ner_model`` naming an installed spaCy pipeline (a package name or a
path), its entities (PERSON, LOCATION, ...) are added; that runs on the
whole document and is much slower.

Nothing here touches the network: tldextract (used by the e-mail
recognizer) is told to use its bundled suffix list before it is imported.
Engines are built once per Python worker (``redactor`` caches them).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from tokenmill.config import to_dict
from tokenmill.errors import ConfigError
from tokenmill.etl.config import PiiConfig

# tldextract reads this when imported; "" means: never download, use the bundled list.
os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""

# What could be PII of each type: cheap regexes, each run once over the whole text.
# Python's re is fast on a literal first character and slow on alternations, so
# they stay separate and simple. IBANs are found through the digit runs of their
# account numbers (every BBAN has 5+ digits in a row), the window reaching the
# country code.
DIGIT_RUN = r"\d[\d\s().+\-/]{4,}"  # phones, cards, SSNs, IPv4, IBAN account numbers
TRIGGERS: dict[str, tuple[str, ...]] = {
    "EMAIL_ADDRESS": (r"@\w",),
    "PHONE_NUMBER": (DIGIT_RUN,),
    "CREDIT_CARD": (DIGIT_RUN,),
    "US_SSN": (DIGIT_RUN,),
    "IBAN_CODE": (DIGIT_RUN,),
    "IP_ADDRESS": (DIGIT_RUN, r"::", r":[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:"),
    "CRYPTO": (r"[13][a-zA-HJ-NP-Z0-9]{25}", r"bc1[a-zA-HJ-NP-Z0-9]{25}"),
    "URL": (r"://", r"www\.", r"\w\.[a-zA-Z]{2,}"),
}
# A digit run is a candidate when it holds 5+ digits or looks like a dotted quad.
MIN_RUN_DIGITS = 5
NER_LABELS = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION",
              "ORG": "ORGANIZATION", "NORP": "NRP"}
NER_SCORE = 0.85
NER_CHUNK = 100_000
MAX_WIDEN = 256  # how far a window may grow to reach whitespace


@dataclass(frozen=True, order=True)
class Finding:
    start: int
    end: int
    entity: str
    score: float


def _recognizers(pcfg: PiiConfig) -> list:
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        CryptoRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UrlRecognizer,
        UsSsnRecognizer,
    )

    make = {
        "EMAIL_ADDRESS": EmailRecognizer,
        "PHONE_NUMBER": lambda: PhoneRecognizer(supported_regions=tuple(pcfg.phone_regions)),
        "CREDIT_CARD": CreditCardRecognizer,
        "IP_ADDRESS": IpRecognizer,
        "IBAN_CODE": IbanRecognizer,
        "US_SSN": UsSsnRecognizer,
        "CRYPTO": CryptoRecognizer,
        "URL": UrlRecognizer,
    }
    return [(entity, make[entity]()) for entity in pcfg.entities]


def _load_ner(model: str):
    try:
        import spacy
    except ImportError:
        raise ConfigError("etl.pii.ner_model", "needs spaCy installed (pip install spacy)") from None
    try:
        return spacy.load(model)
    except OSError:
        raise ConfigError("etl.pii.ner_model",
                          f"spaCy model {model!r} is not installed; install it or set ner_model: null") from None


class Redactor:
    """Finds and replaces PII in texts. Build through ``redactor(cfg)`` (one per worker)."""

    def __init__(self, pcfg: PiiConfig):
        self.cfg = pcfg
        self.recognizers = _recognizers(pcfg) if pcfg.enabled else []
        patterns = sorted({t for e, _ in self.recognizers for t in TRIGGERS[e]})
        self.triggers = [(re.compile(t), t == DIGIT_RUN) for t in patterns]
        self.nlp = _load_ner(pcfg.ner_model) if pcfg.enabled and pcfg.ner_model else None
        self.placeholders = dict(pcfg.placeholders)

    # --- finding -------------------------------------------------------------------

    def windows(self, text: str) -> list[tuple[int, int]]:
        """Merged [start, end) stretches around trigger matches, widened to whitespace."""
        w = self.cfg.window
        n = len(text)
        hits: list[tuple[int, int]] = []
        for pattern, is_digit_run in self.triggers:
            for m in pattern.finditer(text):
                if is_digit_run and not _digit_candidate(m.group()):
                    continue
                hits.append((max(0, m.start() - w), min(n, m.end() + w)))
        if not hits:
            return []
        hits.sort()
        out: list[list[int]] = []
        for s, e in hits:
            if out and s <= out[-1][1]:
                out[-1][1] = max(out[-1][1], e)
            else:
                out.append([s, e])
        widened: list[tuple[int, int]] = []
        for s, e in out:
            s, e = _widen(text, s, e)
            if widened and s <= widened[-1][1]:
                widened[-1] = (widened[-1][0], max(widened[-1][1], e))
            else:
                widened.append((s, e))
        return widened

    def find(self, text: str) -> list[Finding]:
        """All findings (overlaps included), like presidio's analyze() on the whole text."""
        found: set[Finding] = set()
        for s, e in self.windows(text):
            window = text[s:e]
            for entity, rec in self.recognizers:
                for r in rec.analyze(window, [entity], None):
                    if r.score >= self.cfg.score_threshold and r.score > 0:
                        found.add(Finding(s + r.start, s + r.end, r.entity_type, float(r.score)))
        if self.nlp is not None:
            found.update(self._ner(text))
        return _remove_contained(sorted(found))

    def _ner(self, text: str) -> list[Finding]:
        wanted = set(self.cfg.ner_entities)
        out = []
        for offset, chunk in _chunks(text, NER_CHUNK):
            for ent in self.nlp(chunk).ents:
                label = NER_LABELS.get(ent.label_, ent.label_)
                if label in wanted:
                    out.append(Finding(offset + ent.start_char, offset + ent.end_char, label, NER_SCORE))
        return out

    # --- replacing -----------------------------------------------------------------

    def placeholder(self, entity: str) -> str:
        return self.placeholders.get(entity, f"<{entity}>")

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """(text with placeholders, replaced spans by entity)."""
        if not self.recognizers and self.nlp is None:
            return text, {}
        chosen = _resolve_overlaps(self.find(text))
        if not chosen:
            return text, {}
        counts: dict[str, int] = {}
        parts, pos = [], 0
        for f in chosen:
            parts.append(text[pos:f.start])
            parts.append(self.placeholder(f.entity))
            pos = f.end
            counts[f.entity] = counts.get(f.entity, 0) + 1
        parts.append(text[pos:])
        return "".join(parts), counts


def _digit_candidate(run: str) -> bool:
    digits = sum(c.isdigit() for c in run)
    return digits >= MIN_RUN_DIGITS or run.count(".") >= 3


def _widen(text: str, s: int, e: int) -> tuple[int, int]:
    """Move s left and e right to whitespace (or the text's ends), at most MAX_WIDEN chars."""
    lo = max(0, s - MAX_WIDEN)
    while s > lo and not text[s - 1].isspace():
        s -= 1
    n = len(text)
    hi = min(n, e + MAX_WIDEN)
    while e < hi and not text[e].isspace():
        e += 1
    return s, e


def _chunks(text: str, size: int):
    """(offset, piece) pieces of at most ``size`` chars, cut at newlines when possible."""
    pos, n = 0, len(text)
    while pos < n:
        end = min(n, pos + size)
        if end < n:
            cut = text.rfind("\n", pos, end)
            end = cut + 1 if cut > pos else end
        yield pos, text[pos:end]
        pos = end


def _remove_contained(found: list[Finding]) -> list[Finding]:
    """presidio's remove_duplicates: drop a finding inside another of the same type
    with at least its score (same span: keep the higher score)."""
    out = []
    for f in found:
        if any(g is not f and g.entity == f.entity and g.start <= f.start and f.end <= g.end
               and (g.score > f.score or (g.score == f.score and (g.end - g.start) > (f.end - f.start)))
               for g in found):
            continue
        out.append(f)
    return out


def _resolve_overlaps(found: list[Finding]) -> list[Finding]:
    """Non-overlapping findings, higher score then longer span first; in text order."""
    chosen: list[Finding] = []
    for f in sorted(found, key=lambda f: (-f.score, -(f.end - f.start), f.start)):
        if all(f.end <= g.start or g.end <= f.start for g in chosen):
            chosen.append(f)
    return sorted(chosen)


_REDACTORS: dict[str, Redactor] = {}


def redactor(pcfg: PiiConfig) -> Redactor:
    """The worker's Redactor for this config, built on first use (Python workers are reused)."""
    key = json.dumps(to_dict(pcfg), sort_keys=True)
    if key not in _REDACTORS:
        _REDACTORS[key] = Redactor(pcfg)
    return _REDACTORS[key]


# --- DataFrame functions ---------------------------------------------------------------


def redact_column(df, column: str, pcfg: PiiConfig):
    """``df`` with PII in ``column`` replaced (used for reject samples)."""
    import pyarrow as pa

    names = df.columns
    schema = df.schema

    def run(batches):
        r = redactor(pcfg)
        for batch in batches:
            values = batch.column(column).to_pylist()
            fixed = [None if v is None else r.redact(v)[0] for v in values]
            idx = batch.schema.get_field_index(column)
            yield batch.set_column(idx, column, pa.array(fixed, pa.string()))

    return df.mapInArrow(run, schema).select(*names)
