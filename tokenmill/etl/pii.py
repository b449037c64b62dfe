"""Find PII with presidio's pattern recognizers and replace it with typed placeholders.

presidio's ``AnalyzerEngine.analyze`` runs every recognizer over the whole
document, tries phone numbers in 8 regions and re-scores by context; most
text holds no PII, so most of that work finds nothing. Here the same
presidio recognizers run only on *candidate windows*: short stretches
around what a cheap regex says could be PII of their type (see ``TRIGGERS``:
an ``@``, a run of digits, ``::``, a wallet prefix). Phone, card, SSN and
IPv4 recognizers see only the digit run and two characters either side;
the others see windows widened to whitespace, so their word-boundary rules
meet the same neighbours as in the whole document. No recognizer can match
text that holds none of its triggers. The context enhancer only changes
scores, so it is skipped: with ``score_threshold: 0`` (presidio's default)
it cannot change what is redacted; with a higher threshold a finding that
context would have lifted over it stays unredacted.

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
# they stay separate and simple.
DIGIT_RUN = r"\d[\d\s().+\-/]{4,}"  # phones, cards, SSNs, IPv4, IBAN account numbers


@dataclass(frozen=True)
class Trigger:
    """Where a recognizer must look: around matches of ``patterns``.

    ``margin`` characters are added on each side (``None``: the config's
    ``window``); ``widen`` then grows the window to whitespace, so the
    recognizers' word-boundary rules see the same neighbours as in the whole
    text. Without ``widen`` the margin itself supplies those neighbours: the
    digit-run recognizers' patterns lie inside the run.
    """

    patterns: tuple[str, ...]
    margin: int | None
    widen: bool


DIGITS_TIGHT = Trigger((DIGIT_RUN,), 2, False)
TRIGGERS: dict[str, tuple[Trigger, ...]] = {
    "EMAIL_ADDRESS": (Trigger((r"@\w",), 0, True),),
    # phonenumbers (8 regions) is the costliest recognizer: give it only the runs.
    "PHONE_NUMBER": (DIGITS_TIGHT,),
    "CREDIT_CARD": (DIGITS_TIGHT,),
    "US_SSN": (DIGITS_TIGHT,),
    # An IBAN is found through the digit run of its account number (every BBAN
    # has 5+ digits in a row); the window reaches back to the country code.
    "IBAN_CODE": (Trigger((DIGIT_RUN,), None, True),),
    "IP_ADDRESS": (DIGITS_TIGHT, Trigger((r"::", r":[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:"), 0, True)),
    "CRYPTO": (Trigger((r"[13][a-zA-HJ-NP-Z0-9]{25}", r"bc1[a-zA-HJ-NP-Z0-9]{25}"), 0, True),),
    "URL": (Trigger((r"://", r"www\.", r"\w\.[a-zA-Z]{2,}"), 0, True),),
}
# A digit run is a candidate when it holds 5+ digits or looks like a dotted quad.
MIN_RUN_DIGITS = 5
NER_LABELS = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION",
              "ORG": "ORGANIZATION", "NORP": "NRP"}
NER_SCORE = 0.85
NER_CHUNK = 100_000
MEMO_SIZE = 200_000  # windows remembered per worker (short strings: a few tens of MB at most)
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
        "PHONE_NUMBER": lambda: RegionPhones(PhoneRecognizer, pcfg.phone_regions),
        "CREDIT_CARD": CreditCardRecognizer,
        "IP_ADDRESS": IpRecognizer,
        "IBAN_CODE": IbanRecognizer,
        "US_SSN": UsSsnRecognizer,
        "CRYPTO": CryptoRecognizer,
        "URL": UrlRecognizer,
    }
    return [(entity, make[entity]()) for entity in pcfg.entities]


class RegionPhones:
    """presidio's PhoneRecognizer, one per region, run only where the window holds
    enough digits for a number of that region (e.g. US needs 10): phone parsing
    in every region is the costliest step, and a region whose shortest number is
    longer than all the digits in the window cannot match there."""

    def __init__(self, make, regions: tuple[str, ...]):
        import phonenumbers

        self.by_region = []
        for region in regions:
            meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
            shortest = min(meta.general_desc.possible_length) if meta and meta.general_desc.possible_length else 1
            self.by_region.append((shortest, make(supported_regions=(region,))))

    def analyze(self, text: str, entities, nlp_artifacts=None):
        # A number written with "+" (or a long IDD prefix) parses the same in every
        # region, and its own country's numbers may be shorter: no pruning then.
        digits = 99 if "+" in text or "\uff0b" in text else sum(c.isdigit() for c in text)
        out = []
        for shortest, rec in self.by_region:
            if digits >= shortest:
                out += rec.analyze(text, entities, nlp_artifacts)
        return out


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
        self.patterns = {p: re.compile(p) for e, _ in self.recognizers for t in TRIGGERS[e] for p in t.patterns}
        self._memo: dict[tuple[str, str], tuple] = {}
        self.nlp = _load_ner(pcfg.ner_model) if pcfg.enabled and pcfg.ner_model else None
        self.placeholders = dict(pcfg.placeholders)

    # --- finding -------------------------------------------------------------------

    def _hits(self, text: str) -> dict[str, list[tuple[int, int]]]:
        """Spans of each trigger pattern in text (digit runs: only the candidates)."""
        hits = {}
        for source, pattern in self.patterns.items():
            spans = [m.span() for m in pattern.finditer(text)
                     if source != DIGIT_RUN or _digit_candidate(m.group())]
            hits[source] = spans
        return hits

    def windows(self, text: str, entity: str | None = None,
                hits: dict[str, list[tuple[int, int]]] | None = None) -> list[tuple[int, int]]:
        """Merged [start, end) windows where ``entity`` (default: any configured one) may be."""
        hits = self._hits(text) if hits is None else hits
        entities = [entity] if entity else [e for e, _ in self.recognizers]
        n = len(text)
        spans = []
        for trigger in {t for e in entities for t in TRIGGERS[e]}:
            margin = self.cfg.window if trigger.margin is None else trigger.margin
            for p in trigger.patterns:
                for s, e in hits[p]:
                    s, e = max(0, s - margin), min(n, e + margin)
                    spans.append(_widen(text, s, e) if trigger.widen else (s, e))
        return _merge(spans)

    def find(self, text: str) -> list[Finding]:
        """All findings (overlaps included), like presidio's analyze() on the whole text."""
        found: set[Finding] = set()
        hits = self._hits(text) if self.recognizers else {}
        for entity, rec in self.recognizers:
            for s, e in self.windows(text, entity, hits):
                for start, end, kind, score in self._analyze(entity, rec, text[s:e]):
                    if score >= self.cfg.score_threshold and score > 0:
                        found.add(Finding(s + start, s + end, kind, score))
        if self.nlp is not None:
            found.update(self._ner(text))
        return _remove_contained(sorted(found))

    def _analyze(self, entity: str, rec, window: str) -> tuple:
        """presidio's findings in one window, remembered: dates, versions and the
        like repeat across documents, and phone parsing (8 regions) is costly."""
        key = (entity, window)
        found = self._memo.get(key)
        if found is None:
            found = tuple((r.start, r.end, r.entity_type, float(r.score)) for r in rec.analyze(window, [entity], None))
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = found
        return found

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


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


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
