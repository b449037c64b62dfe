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

Nothing here touches the network: tldextract (used by the e-mail
recognizer) is told to use its bundled suffix list before it is imported.
Engines are built once per Python worker (``redactor`` caches them).
"""

from __future__ import annotations

import bisect
import functools
import json
import os
import re
from dataclasses import dataclass

from tokenmill.config import to_dict
from tokenmill.errors import ConfigError
from tokenmill.etl.config import PiiConfig

# tldextract reads this when imported; "" means: never download, use the bundled list.
os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""


def _phone_punctuation() -> str:
    """What phonenumbers' matcher lets stand between two digit groups of one
    number, as the regex class body it uses (its punctuation string, with the
    ranges it forms inside a class: "x", "~", dashes, brackets, spaces ...)."""
    try:
        from phonenumbers.phonenumberutil import _VALID_PUNCTUATION
    except ImportError:  # pragma: no cover - then anything but a letter or digit
        return r"\W_"
    return _VALID_PUNCTUATION


PHONE_PUNCTUATION = _phone_punctuation()
PHONE_SEPARATORS = "[%s\\s]" % PHONE_PUNCTUATION  # the matcher's, and any whitespace
# What could be PII of each type: cheap regexes, each run once over the whole text.
# Python's re is fast on a literal first character and slow on alternations, so
# they stay separate and simple.
# A digit run (phones, cards, SSNs, IPv4, IBAN account numbers): digit groups
# joined by phone separators, so it holds every candidate phonenumbers'
# matcher could read there. Compiled with the least digit count a candidate
# needs (``Redactor._digit_runs``), so short runs are skipped inside the regex.
DIGIT_RUN = r"\d(?:%s*\d){%%d,}" % PHONE_SEPARATORS
ACCOUNT_RUN = DIGIT_RUN % 4  # 5+ digits: every IBAN's account number (BBAN) has such a run
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


PHONE_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
               "voicemail", "fixed_line", "mobile")
MAX_PHONE_GROUP = 20  # phonenumbers' digit block limit: longer runs may be cut anywhere


class RegionPhones:
    """presidio's PhoneRecognizer, one per region, run only in regions where the
    window could hold a valid number: phone parsing in every region is the
    costliest step, and most digit runs (dates, versions, counters) are valid
    in few regions or none.

    The check is a necessary condition for phonenumbers' matcher (leniency
    VALID; see ``_Digits``): written without "+" or an international prefix,
    a number has its region's country code, and its national number is a run
    of the window's digits that starts at a digit group (after at most a
    country code and a national prefix) and ends at one; a valid number
    matches a number-type pattern of some region sharing that country code.
    After "+" or an international prefix, the same holds for the country
    code that follows; such numbers parse alike in every region, so a window
    that may hold one goes to all of them.
    """

    def __init__(self, make, regions: tuple[str, ...]):
        import phonenumbers

        self.by_region = []
        self.own_pattern = {}  # region -> what its national numbers match (built once per worker)
        for region in regions:
            meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
            idd = re.compile(meta.international_prefix) if meta and meta.international_prefix else None
            code = meta.country_code if meta else None
            self.by_region.append((region, code, idd, make(supported_regions=(region,))))
            if code is not None:
                # Parsing strips the national prefix by this region's rule, or by
                # the code's main region's when the country code is written.
                main = phonenumbers.PhoneMetadata.metadata_for_region(phonenumbers.region_code_for_country_code(code))
                rules = tuple(sorted({_parsing_rule(meta), _parsing_rule(main or meta)}))
                self.own_pattern[region] = _national_pattern(code, True, rules)

    def fewest_digits(self) -> tuple[int, int]:
        """The fewest digits a number these regions find can have, written
        (without "+", after "+"). Without "+": a national number by the
        country's own patterns, or an international prefix's digits followed by
        a country code and the shortest national number parsing accepts. After
        "+" (any country): a country code and that shortest national number."""
        plain = [1 if p is None else p[3] for p in self.own_pattern.values()]
        plain += [_match_width(idd.pattern)[0] + 1 + _MIN_NSN for _, _, idd, _ in self.by_region if idd is not None]
        return min(plain, default=MIN_RUN_DIGITS), 1 + _MIN_NSN

    def regions_to_try(self, text: str) -> list[str]:
        digits = _Digits.of(text)
        if digits is None or digits.international_after_plus():
            return [region for region, _, _, _ in self.by_region]
        # A region without metadata (e.g. presidio's "UK") parses only numbers
        # written with "+": handled above. Regions share national rules (US, CA)
        # and international prefixes ("00"): each is checked once per window.
        national: dict[tuple, bool] = {}
        international: dict[str, bool] = {}
        out = []
        for region, code, idd, _ in self.by_region:
            if code is None:
                continue
            pattern = self.own_pattern[region]
            key = (code, id(pattern))
            if key not in national:
                national[key] = digits.national_may_hold(code, pattern)
            if not national[key] and idd is not None and idd.pattern not in international:
                international[idd.pattern] = digits.international_after(idd)
            if national[key] or (idd is not None and international[idd.pattern]):
                out.append(region)
        return out

    def analyze(self, text: str, entities, nlp_artifacts=None):
        wanted = set(self.regions_to_try(text))
        out = []
        for region, _, _, rec in self.by_region:
            if region in wanted:
                out += rec.analyze(text, entities, nlp_artifacts)
        return out


class _Digits:
    """A window's digits as phonenumbers' matcher reads them: ASCII digits with
    separators dropped, where a number may start, how far it may reach, where a
    "+" stands.

    The matcher's candidates are whole digit groups (up to MAX_PHONE_GROUP digits)
    joined by at most 4 of its punctuation characters, so a number starts at a
    group and ends at a group's end in the same *segment* (groups so joined).
    An extension ("x", "#", "ext", ...) reads a bounded count of digits, so a
    candidate may end, and the next one start, inside a group: with such a
    marker in the window every digit is a possible start and end. Parsing
    reads letters as digits (vanity numbers) when a candidate holds 3+ ASCII
    letters; a candidate's letters can only be "x" (punctuation) or those of
    extension words ("ext", "anexo", "int"), so a window where some stretch of
    such characters holds 3+ ASCII letters between digits, or a group of more
    than MAX_PHONE_GROUP digits, is not judged (``of`` gives None).
    """

    def __init__(self, digits: str, starts: list[tuple[int, int]], ends: list[int], plus: list[int]):
        self.digits, self.starts, self.ends, self.plus = digits, starts, ends, plus
        # the most digits a number starting here can span
        self.widest = max((limit - s for s, limit in starts), default=0)

    @classmethod
    def of(cls, text: str) -> "_Digits | None":
        parts, groups, plus = [], [], []  # groups: [start, end, segment index]
        n, prev, segment = 0, None, 0
        for m in _DIGITS_OR_PLUS.finditer(text):
            run = m.group()
            if run in "+\uff0b":
                plus.append(n)
                continue
            if len(run) > MAX_PHONE_GROUP:
                return None
            if prev is not None and not _PHONE_JOIN.fullmatch(text, prev, m.start()):
                segment += 1
            groups.append((n, n + len(run), segment))
            n += len(run)
            prev = m.end()
            parts.append(run if run.isascii() else "".join(str(int(c)) for c in run))
        if not groups:
            return cls("", [], [], plus)
        for stretch in _CANDIDATE_STRETCH.findall(text):
            if len(_ASCII_LETTERS.findall(stretch)) >= 3:
                return None
        seg_end = {}
        for _, e, seg in groups:
            seg_end[seg] = e
        if _EXTENSION_MARK.search(text):
            # an extension's digits are bounded (9 after "#"): a candidate may
            # start and end anywhere, and inner matches are tried within it
            starts = [(p, seg_end[seg]) for s, e, seg in groups for p in range(s, e)]
            return cls("".join(parts), starts, list(range(1, n + 1)), plus)
        starts = [(s, seg_end[seg]) for s, _, seg in groups]
        return cls("".join(parts), starts, [e for _, e, _ in groups], plus)

    def international_after(self, idd) -> bool:
        """Could a number written after the international prefix ``idd`` start here?"""
        for s, limit in self.starts:
            m = idd.match(self.digits, s, limit)
            if m and self.international_at(m.end(), limit):
                return True
        return False

    def national_may_hold(self, code: int, pattern) -> bool:
        """Could a number of country ``code``, written without "+" or an
        international prefix, start here? ``pattern``: ``_national_pattern``
        for the region parsing it."""
        if pattern is None:
            return code in _country_codes()
        shortest = pattern[3]  # skip starts too close to their segment's end
        if self.widest < shortest:
            return False
        return any(self.national_at(code, pattern, s, limit) for s, limit in self.starts if limit - s >= shortest)

    def international_after_plus(self) -> bool:
        limits = dict(self.starts)
        return any(p in limits and self.international_at(p, limits[p]) for p in self.plus)

    def international_at(self, pos: int, limit: int) -> bool:
        """Could a country code and a valid national number for it start at ``pos``?"""
        digits = self.digits
        for width in (1, 2, 3):
            if pos + width < limit and digits[pos] != "0":
                code = int(digits[pos:pos + width])
                if self.national_at(code, _national_pattern(code, False), pos + width, limit):
                    return True
        return False

    def national_at(self, code: int, pattern, pos: int, limit: int) -> bool:
        """Could a valid national number of country ``code`` start at ``pos`` (after
        what ``pattern`` lets parsing strip) and end at a group's end before ``limit``?"""
        if pattern is None:
            return code in _country_codes()
        prefixed, bare, lead, shortest, longest = pattern
        digits = self.digits
        last = min(limit, pos + longest)
        # ends are sorted; a match spans at least `shortest` digits
        for e in self.ends[bisect.bisect_left(self.ends, pos + shortest):]:
            if e > last:
                break
            if prefixed.fullmatch(digits, pos, e):
                return True
            # Written with neither country code nor national prefix: the matcher
            # drops numbers whose national format needs the prefix (DE, FR, ...).
            if bare is not None and bare.fullmatch(digits, pos, e) and (
                    lead.match(digits, pos, e) or not _prefix_required(code, digits[pos:e])):
                return True
        return False


def _candidate_chars() -> str:
    """A regex class of every character a matcher candidate may hold: digits,
    its punctuation, "+", and the characters of its extension patterns (letters
    in both cases, separators, and some regex syntax, which only widens it)."""
    try:
        from phonenumbers.phonenumberutil import _EXTN_PATTERNS_FOR_MATCHING as extension
    except ImportError:  # pragma: no cover - then anything
        return r"[\s\S]"
    chars = set(re.sub(r"\\[a-zA-Z]", "", extension)) - set("0123456789")
    chars |= {c.upper() for c in chars} | {c.lower() for c in chars} | set("+\uff0b\t ")
    return "[%s%s\\d]" % (PHONE_PUNCTUATION, "".join(re.escape(c) for c in sorted(chars)))


_DIGIT = re.compile(r"\d")
_CANDIDATE_CHARS = _candidate_chars()
# A candidate's letters lie between two digits joined by such characters.
_CANDIDATE_STRETCH = re.compile(r"\d(?:%s*\d)?" % _CANDIDATE_CHARS)
_ASCII_LETTERS = re.compile("[A-Za-z]")
_DIGITS_OR_PLUS = re.compile(r"\d+|[+\uff0b]")
_EXTENSION_MARK = re.compile(r"[#\uff03~\uff5ex\uff58]|int|\uff49\uff4e\uff54|доб|anexo", re.IGNORECASE)


# What joins two digit groups into one candidate in phonenumbers' matcher:
# at most 4 of its punctuation characters.
_PHONE_JOIN = re.compile("[%s]{0,4}" % PHONE_PUNCTUATION)
_PATTERNS: dict[tuple, tuple | None] = {}


def _country_codes():
    import phonenumbers

    return phonenumbers.COUNTRY_CODE_TO_REGION_CODE


def _national_pattern(code: int, own_code: bool, rules: tuple[tuple[str, str], ...] | None = None):
    """(prefixed, bare, lead, shortest, longest): regexes that every valid national
    number of country ``code`` matches, preceded by what parsing may strip, and the
    fewest and most digits such a match spans (at least one); None: no pattern known
    (any number of that code is let through, or none when the code does not exist).

    ``own_code``: written without "+", parsed with one of the national-prefix
    ``rules`` (``_parsing_rule``; None: those of every region of the code);
    validity is judged against every region sharing the code. Else: after "+"
    or an international prefix."""
    key = (code, own_code, rules)
    if key not in _PATTERNS:
        _PATTERNS[key] = _build_national_pattern(code, own_code, rules)
    return _PATTERNS[key]


def _parsing_rule(meta) -> tuple[str, str]:
    """What parsing strips from a national number written in this region: its
    national prefix pattern and transform rule."""
    return meta.national_prefix_for_parsing or meta.national_prefix or "", meta.national_prefix_transform_rule or ""


def _min_nsn() -> int:
    """The shortest national number phonenumbers' parser accepts."""
    try:
        from phonenumbers.phonenumberutil import _MIN_LENGTH_FOR_NSN
    except ImportError:  # pragma: no cover
        return 1
    return _MIN_LENGTH_FOR_NSN


_MIN_NSN = _min_nsn()


def _build_national_pattern(code: int, own_code: bool, rules: tuple[tuple[str, str], ...] | None):
    import phonenumbers

    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code)
    if not regions:
        return None
    metas = []
    for region in regions:
        meta = (phonenumbers.PhoneMetadata.metadata_for_nongeo_region(code) if region == "001"
                else phonenumbers.PhoneMetadata.metadata_for_region(region))
        if meta is None:
            return None
        metas.append(meta)
    types, prefixes, strip, transform = [], [], 0, False
    for prefix, transform_rule in rules if rules is not None else [_parsing_rule(m) for m in metas]:
        stripped = _longest_match(prefix)
        if stripped is None or re.search(r"\d", re.sub(r"\\\d", "", transform_rule)):
            return None  # unbounded, or a transform writing digits (JE: 1534 + group 1): no pruning
        strip = max(strip, stripped)
        transform = transform or bool(transform_rule)
        if prefix and prefix not in prefixes:
            prefixes.append(prefix)
    for meta in metas:
        # After "+" (any country) the general pattern: smaller to build, still necessary.
        for name in PHONE_TYPES if own_code else ("general_desc",):
            desc = getattr(meta, name, None)
            if desc is not None and desc.national_number_pattern:
                types.append(desc.national_number_pattern)
    if not types:
        return None
    # What parsing may strip before the national number: the country code when
    # written without "+", then the national prefix. A transform rule (BR: "0"
    # or "90" and a carrier code) keeps part of the prefix's match: then any
    # digits up to its length, and no check of the prefix rule.
    body = "(?:%s)" % "|".join(types)
    head = "(?:%d)?" % code if own_code else ""
    longest = (len(str(code)) if own_code else 0) + strip + 17
    shortest = max(1, _match_width(body)[0])  # what is stripped before it only adds digits
    if transform or not own_code:
        head += r"\d{0,%d}" % strip if transform else "(?:%s)?" % "|".join("(?:%s)" % p for p in prefixes) if prefixes else ""
        return re.compile(head + body), None, None, shortest, longest
    prefix = "(?:%s)" % "|".join("(?:%s)" % p for p in prefixes) if prefixes else ""
    # with the national prefix (or the country code) written, or bare
    prefixed = re.compile("(?:%d%s?|%s)%s" % (code, prefix, prefix, body)) if prefix else re.compile("(?:%d)?%s" % (code, body))
    return prefixed, re.compile(body), re.compile(prefix or "(?!)"), shortest, longest


@functools.lru_cache(maxsize=65536)
def _prefix_required(code: int, national: str) -> bool:
    """Whether phonenumbers' matcher (leniency VALID) wants the national prefix
    written before ``national`` (a number of country ``code`` with no country code
    written): its formatting rule says so (phonenumbers' own test)."""
    try:
        import phonenumbers
        from phonenumbers.phonenumbermatcher import _formatting_rule_has_first_group_only
        from phonenumbers.phonenumberutil import _choose_formatting_pattern_for_number
    except ImportError:  # pragma: no cover - then never rule a number out for it
        return False
    meta = phonenumbers.PhoneMetadata.metadata_for_region(phonenumbers.region_code_for_country_code(code))
    if meta is None:
        return False
    rule = _choose_formatting_pattern_for_number(meta.number_format, national)
    return bool(rule is not None and rule.national_prefix_formatting_rule
                and not rule.national_prefix_optional_when_formatting
                and not _formatting_rule_has_first_group_only(rule.national_prefix_formatting_rule))


def _longest_match(pattern: str) -> int | None:
    """The most characters a national-prefix pattern can match; None: unbounded or
    unknown. A transform rule keeps part of that match, so this still bounds what
    is stripped."""
    if not pattern:
        return 0
    longest = _match_width(pattern)[1]
    return longest if longest <= 20 else None


def _match_width(pattern: str) -> tuple[int, float]:
    """(fewest, most) characters a regex can match; any doubt gives (0, inf)."""
    try:
        from re import _parser as parser  # sre_parse before Python 3.11
    except ImportError:  # pragma: no cover
        import sre_parse as parser
    try:
        return parser.parse(pattern).getwidth()
    except Exception:  # noqa: BLE001 - any doubt means: no pruning
        return 0, float("inf")


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
        self.cfg = pcfg
        self.recognizers = _recognizers(pcfg) if pcfg.enabled else []
        self.gates = {entity: _pattern_gate(rec) for entity, rec in self.recognizers}
        phones = dict(self.recognizers).get("PHONE_NUMBER")
        plain, plus = phones.fewest_digits() if phones else (MIN_RUN_DIGITS, MIN_RUN_DIGITS)
        self.min_run_digits = (min(MIN_RUN_DIGITS, plain), min(MIN_RUN_DIGITS, plus))
        sources = {p for e, _ in self.recognizers for t in TRIGGERS[e] for p in t.patterns}
        self.patterns = {p: re.compile(p) for p in sources if p != DIGIT_RUN}
        if DIGIT_RUN in sources:  # a dotted quad (IPv4) has at least 4 digits
            self.patterns[DIGIT_RUN] = re.compile(DIGIT_RUN % (min(*self.min_run_digits, 4) - 1))
        self._memo: dict[tuple[str, str], tuple] = {}
        self.nlp = _load_ner(pcfg.ner_model) if pcfg.enabled and pcfg.ner_model else None
        self.placeholders = dict(pcfg.placeholders)

    # --- finding -------------------------------------------------------------------

    def _hits(self, text: str) -> dict[str, list[tuple[int, int]]]:
        """Spans of each trigger pattern in text (digit runs: only the candidates)."""
        return {source: self._digit_runs(text, pattern) if source == DIGIT_RUN
                else [m.span() for m in pattern.finditer(text)]
                for source, pattern in self.patterns.items()}

    def _digit_runs(self, text: str, pattern) -> list[tuple[int, int]]:
        """Digit runs that could hold PII: enough digits for a phone number of a
        configured region (fewer after "+"), or a dotted quad; each with the
        lead ("+", brackets) phonenumbers' matcher would read before it."""
        min_digits, min_after_plus = self.min_run_digits
        spans = []
        for m in pattern.finditer(text):
            run = m.group()
            digits = sum(c.isdigit() for c in run)
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
        return _remove_contained(sorted(found))

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


def _remove_contained(found: list[Finding]) -> list[Finding]:
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
