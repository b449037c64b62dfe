"""The phone-number gate: which regions' phone recognizers a window needs.

Phone parsing in every configured region is presidio's costliest step, and
most digit runs (dates, versions, counters) are valid numbers in few regions
or none. ``region_phones`` wraps presidio's ``PhoneRecognizer`` (one per
region) and calls only the regions where phonenumbers' matcher could find a
valid number in the window (see ``RegionPhones``).

The gate mirrors phonenumbers' matcher, so it reads five of its private
names (its punctuation class, extension patterns, shortest national number,
formatting-rule helpers) and the standard library's regex parser, all here
and only here. They are checked against the phonenumbers major versions this
gate was verified with; on any other version, or when a name is gone, every
window goes to every region (correct, only slower).
"""

from __future__ import annotations

import bisect
import functools
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional

try:
    from re import _parser as _regex_parser  # sre_parse before Python 3.11
except ImportError:  # pragma: no cover
    import sre_parse as _regex_parser

# phonenumbers major versions whose private names the gate was checked against.
CHECKED_MAJOR_VERSIONS = ("8", "9")


@dataclass(frozen=True)
class _Internals:
    """phonenumbers' private names the gate reads (None: not found)."""

    checked: bool  # a checked version, with every name present: the gate may prune regions
    valid_punctuation: Optional[str]
    extension_patterns: Optional[str]
    min_nsn: int
    choose_formatting_pattern: Optional[Callable[..., Any]]
    first_group_only: Optional[Callable[..., Any]]


def _load_internals() -> _Internals:
    try:
        import phonenumbers
        from phonenumbers.phonenumbermatcher import _formatting_rule_has_first_group_only
        from phonenumbers.phonenumberutil import (
            _EXTN_PATTERNS_FOR_MATCHING,
            _MIN_LENGTH_FOR_NSN,
            _VALID_PUNCTUATION,
            _choose_formatting_pattern_for_number,
        )
    except ImportError:  # pragma: no cover - then anything but a letter or digit joins groups
        return _Internals(False, None, None, 1, None, None)
    checked = phonenumbers.__version__.split(".")[0] in CHECKED_MAJOR_VERSIONS
    if not checked:  # pragma: no cover
        warnings.warn(f"phonenumbers {phonenumbers.__version__} is not a version the PII phone gate was "
                      f"checked with ({', '.join(CHECKED_MAJOR_VERSIONS)}.x): every region parses every window")
    return _Internals(checked, _VALID_PUNCTUATION, _EXTN_PATTERNS_FOR_MATCHING, _MIN_LENGTH_FOR_NSN,
                      _choose_formatting_pattern_for_number, _formatting_rule_has_first_group_only)


_INTERNALS = _load_internals()
# What phonenumbers' matcher lets stand between two digit groups of one
# number, as the regex class body it uses (its punctuation string, with the
# ranges it forms inside a class: "x", "~", dashes, brackets, spaces ...).
PHONE_PUNCTUATION = _INTERNALS.valid_punctuation or r"\W_"


def region_phones(make, regions: tuple[str, ...]) -> "RegionPhones":
    """presidio's phone recognizer for ``regions`` (``make``: its class), gated per window."""
    return RegionPhones(make, regions)


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

    def fewest_digits(self, default: int) -> tuple[int, int]:
        """The fewest digits a number these regions find can have, written
        (without "+", after "+"). Without "+": a national number by the
        country's own patterns, or an international prefix's digits followed by
        a country code and the shortest national number parsing accepts. After
        "+" (any country): a country code and that shortest national number.
        ``default``: the answer when no region has metadata."""
        plain = [1 if p is None else p[3] for p in self.own_pattern.values()]
        plain += [_match_width(idd.pattern)[0] + 1 + _MIN_NSN for _, _, idd, _ in self.by_region if idd is not None]
        return min(plain, default=default), 1 + _MIN_NSN

    def regions_to_try(self, text: str) -> list[str]:
        digits = _Digits.of(text) if _INTERNALS.checked else None
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
    extension = _INTERNALS.extension_patterns
    if extension is None:  # pragma: no cover - then anything
        return r"[\s\S]"
    chars = set(re.sub(r"\\[a-zA-Z]", "", extension)) - set("0123456789")
    chars |= {c.upper() for c in chars} | {c.lower() for c in chars} | set("+\uff0b\t ")
    return "[%s%s\\d]" % (PHONE_PUNCTUATION, "".join(re.escape(c) for c in sorted(chars)))


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


_MIN_NSN = _INTERNALS.min_nsn


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
    import phonenumbers

    choose, first_group_only = _INTERNALS.choose_formatting_pattern, _INTERNALS.first_group_only
    if choose is None or first_group_only is None:  # pragma: no cover - then never rule a number out for it
        return False
    meta = phonenumbers.PhoneMetadata.metadata_for_region(phonenumbers.region_code_for_country_code(code))
    if meta is None:
        return False
    rule = choose(meta.number_format, national)
    return bool(rule is not None and rule.national_prefix_formatting_rule
                and not rule.national_prefix_optional_when_formatting
                and not first_group_only(rule.national_prefix_formatting_rule))


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
        return _regex_parser.parse(pattern).getwidth()
    except Exception:  # noqa: BLE001 - any doubt means: no pruning
        return 0, float("inf")
