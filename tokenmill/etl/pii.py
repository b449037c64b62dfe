"""Find PII with presidio's pattern recognizers and replace it with typed placeholders.

presidio's ``AnalyzerEngine.analyze`` runs every recognizer over the whole
document, tries phone numbers in 8 regions and re-scores by context; most
text holds no PII, so most of that work finds nothing. Here the same
presidio recognizers run only on *candidate windows*: short stretches
around what a cheap regex says could be PII of their type (see ``TRIGGERS``:
an ``@``, a run of digits, ``::``, a wallet prefix). Phone, card, SSN and
IPv4 recognizers see only the digit run and three characters either side;
the others see windows widened to whitespace, so their word-boundary rules
meet the same neighbours as in the whole document. No recognizer can match
text that holds none of its triggers: the digit run joins groups the way
phonenumbers' matcher does (its own punctuation class) and counts as few
digits as the shortest number of a configured region. Inside a window, a
pattern recognizer is called only when one of its own regexes matches there,
and the phone recognizer only in regions where the digits could form a valid
number (``RegionPhones``). The context enhancer only changes
scores, so it is skipped: with ``score_threshold: 0`` (presidio's default)
it cannot change what is redacted; with a higher threshold a finding that
context would have lifted over it stays unredacted.

With ``ner_model`` naming an installed spaCy pipeline (a package name or a
path), its entities (PERSON, LOCATION, ...) are added; that runs on the
whole document and is much slower.

Nothing here touches the network: building a ``Redactor`` tells tldextract
(used by the e-mail recognizer) to use its bundled suffix list before it is
imported. Engines are built once per Python worker (``redactor`` caches
them). The phone-number gate lives in ``tokenmill.etl.phones``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass

from tokenmill.typed_config import to_dict
from tokenmill.errors import ConfigError
from tokenmill.config.etl import PiiConfig
from tokenmill.etl.phones import PHONE_PUNCTUATION, region_phones

PHONE_SEPARATORS = "[%s\\s]" % PHONE_PUNCTUATION  # the matcher's, and any whitespace
# What could be PII of each type: cheap regexes, each run once over the whole text.
# Python's re is fast on a literal first character and slow on alternations, so
# they stay separate and simple.
# A digit run (phones, cards, SSNs, IPv4, IBAN account numbers): digit groups
# joined by phone separators, so it holds every candidate phonenumbers'
# matcher could read there. Compiled with the least digit count a candidate
# needs (``Redactor._digit_runs``), so short runs are skipped inside the regex.
DIGIT_RUN = r"\d(?:%s*\d){%%d,}" % PHONE_SEPARATORS
ACCOUNT_DIGITS = 5  # every IBAN's account number (BBAN) has a run of 5+ digits
ACCOUNT_RUN = DIGIT_RUN % (ACCOUNT_DIGITS - 1)
# What phonenumbers' matcher may read before a number's first digit: up to
# two brackets or "+" signs, each followed by up to 4 punctuation characters.
_LEAD = re.compile(r"(?:[(\[\uff08\uff3b+\uff0b][%s]{0,4}){1,2}\Z" % PHONE_PUNCTUATION)
MAX_LEAD = 2 * (1 + 4)


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


# phonenumbers' matcher reads past a candidate's end: the next character, and
# a ":[0-5]\d" timestamp suffix; so the digit-run windows keep 3 characters
# either side.
PHONE_CONTEXT = 3
DIGITS_TIGHT = Trigger((DIGIT_RUN,), PHONE_CONTEXT, False)
TRIGGERS: dict[str, tuple[Trigger, ...]] = {
    "EMAIL_ADDRESS": (Trigger((r"@\w",), 0, True),),
    # phonenumbers (8 regions) is the costliest recognizer: give it only the runs.
    "PHONE_NUMBER": (DIGITS_TIGHT,),
    "CREDIT_CARD": (DIGITS_TIGHT,),
    "US_SSN": (DIGITS_TIGHT,),
    # An IBAN is found through the digit run of its account number; the window
    # reaches back to the country code.
    "IBAN_CODE": (Trigger((ACCOUNT_RUN,), None, True),),
    "IP_ADDRESS": (DIGITS_TIGHT, Trigger((r"::", r":[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:"), 0, True)),
    "CRYPTO": (Trigger((r"[13][a-zA-HJ-NP-Z0-9]{25}", r"bc1[a-zA-HJ-NP-Z0-9]{25}"), 0, True),),
    "URL": (Trigger((r"://", r"www\.", r"\w\.[a-zA-Z]{2,}"), 0, True),),
}
# A digit run is a candidate when it holds 5+ digits (fewer when a configured
# phone region has shorter numbers, e.g. DE) or looks like a dotted quad.
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


# presidio's package import loads its NLP engines, and with them torch and
# transformers (their pipelines import scikit-learn): about 12 s of CPU in
# every Spark Python worker, for recognizers that are regexes and checksums.
# Imported the first time while those two look absent, presidio skips its
# optional transformers parts (as on a machine without them) and thinc runs
# without torch: 2.8 s instead of 14.4 s. Where either is loaded already,
# or a spaCy NER pipeline is configured (it may run on torch), nothing is hidden.
HEAVY_OPTIONAL = ("transformers", "torch")


@contextmanager
def _absent(names: tuple[str, ...]):
    """Imports of ``names`` fail inside (ImportError) unless they are loaded already."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # the import system's mark for "cannot be imported"
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


def _recognizers(pcfg: PiiConfig) -> list:
    first_import = "presidio_analyzer" not in sys.modules
    with _absent(HEAVY_OPTIONAL if first_import and not pcfg.ner_model else ()):
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
        "PHONE_NUMBER": lambda: region_phones(PhoneRecognizer, pcfg.phone_regions),
        "CREDIT_CARD": CreditCardRecognizer,
        "IP_ADDRESS": IpRecognizer,
        "IBAN_CODE": IbanRecognizer,
        "US_SSN": UsSsnRecognizer,
        "CRYPTO": CryptoRecognizer,
        "URL": UrlRecognizer,
    }
    return [(entity, make[entity]()) for entity in pcfg.entities]


def _pattern_gate(rec) -> list | None:
    """The recognizer's own regexes, compiled as it compiles them, when it can
    only report spans its patterns match (presidio's PatternRecognizer.analyze,
    IbanRecognizer.analyze): a window none of them matches is skipped without
    the cost of a presidio call. None for any other recognizer (always called)."""
    import regex
    from presidio_analyzer import PatternRecognizer
    from presidio_analyzer.predefined_recognizers import IbanRecognizer

    if type(rec).analyze not in (PatternRecognizer.analyze, IbanRecognizer.analyze):
        return None
    return [regex.compile(p.regex, flags=rec.global_regex_flags) for p in rec.patterns]


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
        # tldextract (presidio's e-mail recognizer) reads this when first imported, below;
        # "" means: never download the public suffix list, use the bundled one.
        os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
        self.cfg = pcfg
        self.recognizers = _recognizers(pcfg) if pcfg.enabled else []
        self.gates = {entity: _pattern_gate(rec) for entity, rec in self.recognizers}
        phones = dict(self.recognizers).get("PHONE_NUMBER")
        plain, plus = phones.fewest_digits(MIN_RUN_DIGITS) if phones else (MIN_RUN_DIGITS, MIN_RUN_DIGITS)
        self.min_run_digits = (min(MIN_RUN_DIGITS, plain), min(MIN_RUN_DIGITS, plus))
        sources = {p for e, _ in self.recognizers for t in TRIGGERS[e] for p in t.patterns}
        self.digit_sources = sources & {DIGIT_RUN, ACCOUNT_RUN}
        self.patterns = {p: re.compile(p) for p in sources - self.digit_sources}
        # Both digit-run triggers come from one scan: the regex matches each whole run
        # of at least ``least + 1`` digits, so the account-number runs (ACCOUNT_RUN's
        # own matches) are the runs among them with ACCOUNT_DIGITS or more.
        # (A dotted quad, IPv4, has at least 4 digits.)
        least = min(*self.min_run_digits, 4) - 1 if DIGIT_RUN in sources else ACCOUNT_DIGITS - 1
        self.digit_run = re.compile(DIGIT_RUN % least) if self.digit_sources else None
        self._memo: dict[tuple[str, str], tuple] = {}
        self.nlp = _load_ner(pcfg.ner_model) if pcfg.enabled and pcfg.ner_model else None
        self.placeholders = dict(pcfg.placeholders)

    # --- finding -------------------------------------------------------------------

    def _hits(self, text: str) -> dict[str, list[tuple[int, int]]]:
        """Spans of each trigger pattern in text (digit runs: only the candidates)."""
        hits = {source: [m.span() for m in pattern.finditer(text)] for source, pattern in self.patterns.items()}
        if self.digit_run is not None:
            runs = [(m, _digit_count(m.group())) for m in self.digit_run.finditer(text)]
            if DIGIT_RUN in self.digit_sources:
                hits[DIGIT_RUN] = self._digit_runs(text, runs)
            if ACCOUNT_RUN in self.digit_sources:
                hits[ACCOUNT_RUN] = [m.span() for m, digits in runs if digits >= ACCOUNT_DIGITS]
        return hits

    def _digit_runs(self, text: str, runs) -> list[tuple[int, int]]:
        """Digit runs (match, digit count) that could hold PII: enough digits for a
        phone number of a configured region (fewer after "+"), or a dotted quad;
        each with the lead ("+", brackets) phonenumbers' matcher would read before it."""
        min_digits, min_after_plus = self.min_run_digits
        spans = []
        for m, digits in runs:
            run = m.group()
            candidate = digits >= min_digits or run.count(".") >= 3
            if not candidate and digits < min_after_plus:
                continue
            start = m.start()
            lead = _LEAD.search(text, max(0, start - MAX_LEAD), start)
            if lead is not None:
                start = lead.start()
                candidate = candidate or "+" in lead.group() or "\uff0b" in lead.group()
            if candidate:
                spans.append((start, m.end()))
        return spans

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
        by_trigger: dict[tuple, list] = {}  # card, SSN, phone and IPv4 share theirs
        for entity, rec in self.recognizers:
            triggers = TRIGGERS[entity]
            if triggers not in by_trigger:
                by_trigger[triggers] = self.windows(text, entity, hits)
            for s, e in by_trigger[triggers]:
                for start, end, kind, score in self._analyze(entity, rec, text[s:e]):
                    if score >= self.cfg.score_threshold and score > 0:
                        found.add(Finding(s + start, s + end, kind, score))
        if self.nlp is not None:
            found.update(self._ner(text))
        return remove_contained(sorted(found))

    def _analyze(self, entity: str, rec, window: str) -> tuple:
        """presidio's findings in one window, remembered: dates, versions and the
        like repeat across documents, and phone parsing (8 regions) is costly."""
        key = (entity, window)
        found = self._memo.get(key)
        if found is None:
            gate = self.gates[entity]
            if gate is not None and not any(p.search(window) for p in gate):
                found = ()
            else:
                found = tuple((r.start, r.end, r.entity_type, float(r.score))
                              for r in rec.analyze(window, [entity], None))
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


def _digit_count(run: str) -> int:
    return sum(map(str.isdigit, run))


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


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


def remove_contained(found: list[Finding]) -> list[Finding]:
    """presidio's remove_duplicates: drop a finding inside another of the same type
    with at least its score (same span: keep the higher score). A sweep by start,
    so documents with thousands of findings stay cheap."""
    out = []
    by_entity: dict[str, list[Finding]] = {}
    for f in found:
        by_entity.setdefault(f.entity, []).append(f)
    for group in by_entity.values():
        group.sort(key=lambda f: f.start)
        reaching: list[Finding] = []  # findings started so far that reach past the current start
        i = 0
        while i < len(group):
            start = group[i].start
            j = i
            while j < len(group) and group[j].start == start:
                j += 1
            reaching = [g for g in reaching if g.end > start] + group[i:j]
            out.extend(f for f in group[i:j] if not any(g is not f and _dominates(g, f) for g in reaching))
            i = j
    return sorted(out)


def _dominates(g: Finding, f: Finding) -> bool:
    return g.start <= f.start and f.end <= g.end and (
        g.score > f.score or (g.score == f.score and (g.end - g.start) > (f.end - f.start)))


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
