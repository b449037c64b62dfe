"""Quality filters: each returns a verdict (drop reason or None) with a quality score.

Prose is judged by the Gopher rules (Rae et al. 2021, "Scaling Language
Models", appendix A: MassiveText quality and repetition filters) and a
bad-words list. Code is judged only by length, line length and the share
of alphanumeric characters: prose rules (stop words, mean word length,
bullets) would drop most source files.

``quality`` in [0, 1], higher is better, ranks near-duplicates for dedup:
the mean of the share of real (alphabetic) words, the share of text in
unique lines, one minus the top 2-gram character fraction, a length term
and a stop-word term (code: alnum share, unique lines, length). Where the
2-gram count is skipped (see judge_prose), its upper bound stands in.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from operator import mul
from pathlib import Path
from typing import Any, Callable

from tokenmill.config.etl import FilterConfig

class Reason:
    """Why a document is dropped: the reason strings counted in the manifest and written to rejects."""

    EMPTY = "empty"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    GOPHER_MEAN_WORD_LENGTH = "gopher_mean_word_length"
    GOPHER_SYMBOL_RATIO = "gopher_symbol_ratio"
    GOPHER_BULLET_LINES = "gopher_bullet_lines"
    GOPHER_ELLIPSIS_LINES = "gopher_ellipsis_lines"
    GOPHER_ALPHA_WORDS = "gopher_alpha_words"
    GOPHER_STOP_WORDS = "gopher_stop_words"
    GOPHER_DUP_LINES = "gopher_dup_lines"
    GOPHER_DUP_LINE_CHARS = "gopher_dup_line_chars"
    GOPHER_DUP_PARAS = "gopher_dup_paras"
    GOPHER_DUP_PARA_CHARS = "gopher_dup_para_chars"
    GOPHER_TOP_NGRAM = "gopher_top_ngram"
    BAD_WORDS = "bad_words"
    CODE_LONG_LINES = "code_long_lines"
    CODE_LOW_ALNUM = "code_low_alnum"
    NULL_TEXT = "null_text"  # no text at all (clean)


STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("\u2022", "\u2023", "\u25aa", "\u25e6", "\u00b7", "-", "*", "\u2013", "\u2043", "\u25cf")
ELLIPSES = ("...", "\u2026")
_PARAGRAPHS = re.compile(r"\n\s*\n")
_ALNUM = re.compile(r"[^\W_]")
_ASCII_ALNUM = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# A whitespace-delimited word without a single letter (numbers, symbols).
_NO_LETTER_WORD = re.compile(r"(?<!\S)(?:(?!\s)[\W\d_])+(?!\S)")
BUNDLED_BAD_WORDS = Path(__file__).parent / "data" / "bad_words.txt"


def alnum_count(text: str) -> int:
    """Letters and digits in text (``str.isalnum``); ASCII text is counted by bytes.translate, not the regex."""
    if text.isascii():
        return len(text) - len(text.encode("ascii").translate(None, _ASCII_ALNUM))
    return len(text) - len(_ALNUM.sub("", text))


@dataclass(frozen=True)
class Verdict:
    reason: str | None  # None: keep
    quality: float
    n_words: int


def load_bad_words(path: str | None) -> tuple[str, ...]:
    """Words (or phrases) of a bad-words file: one per line, # comments."""
    p = Path(path) if path else BUNDLED_BAD_WORDS
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        from tokenmill.errors import UserError

        problem = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UserError(f"etl.filters.bad_words_file: cannot read {p}: {problem}") from None
    return tuple(sorted({w.strip().lower() for w in lines if w.strip() and not w.lstrip().startswith("#")}))


_WORDS_OF: dict[re.Pattern, tuple[str, ...]] = {}


@lru_cache(maxsize=8)
def bad_words_regex(words: tuple[str, ...]) -> re.Pattern | None:
    if not words:
        return None
    alternation = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)
    _WORDS_OF[pattern] = tuple(w.lower() for w in words)
    return pattern


def _may_hold(low: str, pattern: re.Pattern) -> bool:
    """Substring pre-check (fast, in C) before the whole-word regex (slow on every text)."""
    return any(w in low for w in _WORDS_OF[pattern])


def _dup_fractions(items: list[str]) -> tuple[float, float]:
    """(share of items that repeat an earlier one, share of characters in them)."""
    if not items:
        return 0.0, 0.0
    seen: set[str] = set()
    dup = dup_chars = total_chars = 0
    for item in items:
        total_chars += len(item)
        if item in seen:
            dup += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return dup / len(items), (dup_chars / total_chars if total_chars else 0.0)


def top_ngram_char_fraction(words: list[str], n: int, total_chars: int) -> float:
    """Characters covered by the most frequent word n-gram, over all word characters."""
    if len(words) < n or not total_chars:
        return 0.0
    counts = Counter(zip(*(words[i:] for i in range(n))))
    gram, count = counts.most_common(1)[0]
    if count < 2:
        return 0.0
    return count * sum(len(w) for w in gram) / total_chars


class _Prose:
    """What the prose rules measure. Figures other than the word count are
    computed on first use (``_PROSE_FIGURES``): a document dropped by an early
    rule never pays for the later, costlier ones."""

    def __init__(self, text: str, bad_words: re.Pattern | None):
        self.text = text
        self.bad_words = bad_words
        self.n_chars = len(text)
        self.words = text.split()
        self.n = len(self.words)
        self.ngram: dict[int, float] = {}  # top n-gram character fraction, for the n counted

    def __getattr__(self, name: str):  # only called for a figure not computed yet
        try:
            compute = _PROSE_FIGURES[name]
        except KeyError:
            raise AttributeError(name) from None
        value = self.__dict__[name] = compute(self)
        return value

    def top_ngram_over(self, limits: dict[int, float]) -> bool:
        # An n-gram's character share is at most n x top_word, so most documents skip
        # the n-gram counts (the costliest rule) without changing a verdict.
        for k, limit in sorted(limits.items()):
            if k * self.top_word <= limit:
                continue
            self.ngram[k] = top_ngram_char_fraction(self.lower, k, self.word_chars)
            if self.ngram[k] > limit:
                return True
        return False

    def quality(self) -> float:
        top2 = self.ngram.get(2, min(1.0, 2 * self.top_word))
        stop_hits = sum(self.unigrams[w] for w in STOP_WORDS)
        quality = (self.alpha + (1.0 - self.dup_lines[1]) + (1.0 - top2) + min(1.0, self.n / 500)
                   + min(1.0, stop_hits / self.n / 0.1)) / 5
        return round(min(1.0, max(0.0, quality)), 4)


_PROSE_FIGURES: dict[str, Callable[[_Prose], Any]] = {
    "word_chars": lambda p: sum(map(len, p.words)),
    "lines": lambda p: [ln for ln in map(str.strip, p.text.split("\n")) if ln],
    "n_lines": lambda p: max(1, len(p.lines)),
    "alpha": lambda p: 1.0 - len(_NO_LETTER_WORD.findall(p.text)) / p.n,  # share of words with a letter
    "low": lambda p: p.text.lower(),
    "lower": lambda p: p.low.split(),
    "unigrams": lambda p: Counter(p.lower),
    "dup_lines": lambda p: _dup_fractions(p.lines),
    "dup_paras": lambda p: _dup_fractions([q.strip() for q in _PARAGRAPHS.split(p.text) if q.strip()]),
    # the largest count x length of one word, over all word characters
    "top_word": lambda p: max(map(mul, p.unigrams.values(), map(len, p.unigrams))) / p.word_chars,
}


def _too_many_bad_words(p: _Prose, fc: FilterConfig) -> bool:
    if p.bad_words is None or not fc.bad_words or not _may_hold(p.low, p.bad_words):
        return False
    return sum(1 for _ in p.bad_words.finditer(p.text)) > fc.max_bad_words


# The prose rules, in the order they are tried: (reason, does the document break it?).
PROSE_RULES: tuple[tuple[str, Callable[[_Prose, FilterConfig], bool]], ...] = (
    (Reason.TOO_SHORT, lambda p, fc: p.n_chars < fc.min_chars or p.n < fc.min_words),
    (Reason.TOO_LONG, lambda p, fc: p.n_chars > fc.max_chars or p.n > fc.max_words),
    (Reason.GOPHER_MEAN_WORD_LENGTH,
     lambda p, fc: not fc.min_mean_word_length <= p.word_chars / p.n <= fc.max_mean_word_length),
    (Reason.GOPHER_SYMBOL_RATIO,
     lambda p, fc: (p.text.count("#") + p.text.count("...") + p.text.count("\u2026")) / p.n
     > fc.max_symbol_word_ratio),
    (Reason.GOPHER_BULLET_LINES,
     lambda p, fc: sum(ln.startswith(BULLETS) for ln in p.lines) / p.n_lines > fc.max_bullet_lines_fraction),
    (Reason.GOPHER_ELLIPSIS_LINES,
     lambda p, fc: sum(ln.endswith(ELLIPSES) for ln in p.lines) / p.n_lines > fc.max_ellipsis_lines_fraction),
    (Reason.GOPHER_ALPHA_WORDS, lambda p, fc: p.alpha < fc.min_alpha_words_fraction),
    (Reason.GOPHER_STOP_WORDS, lambda p, fc: sum(1 for w in STOP_WORDS if w in p.unigrams) < fc.min_stop_words),
    (Reason.GOPHER_DUP_LINES, lambda p, fc: p.dup_lines[0] > fc.max_dup_line_fraction),
    (Reason.GOPHER_DUP_LINE_CHARS, lambda p, fc: p.dup_lines[1] > fc.max_dup_line_char_fraction),
    (Reason.GOPHER_DUP_PARAS, lambda p, fc: p.dup_paras[0] > fc.max_dup_para_fraction),
    (Reason.GOPHER_DUP_PARA_CHARS, lambda p, fc: p.dup_paras[1] > fc.max_dup_para_char_fraction),
    (Reason.GOPHER_TOP_NGRAM, lambda p, fc: p.top_ngram_over(fc.max_top_ngram_char_fraction)),
    (Reason.BAD_WORDS, _too_many_bad_words),
)


def judge_prose(text: str, fc: FilterConfig, bad_words: re.Pattern | None = None) -> Verdict:
    """Verdict for prose: length, Gopher quality and repetition rules, bad words (``PROSE_RULES``)."""
    if not text or text.isspace():
        return Verdict(Reason.EMPTY, 0.0, 0)
    p = _Prose(text, bad_words)
    for reason, breaks in PROSE_RULES:
        if breaks(p, fc):
            return Verdict(reason, 0.0, p.n)
    return Verdict(None, p.quality(), p.n)


def judge_code(text: str, fc: FilterConfig) -> Verdict:
    """Verdict for source code: length, minified (very long lines), mostly non-alphanumeric."""
    n_chars = len(text)
    if n_chars == 0 or text.isspace():
        return Verdict(Reason.EMPTY, 0.0, 0)
    n = len(text.split())
    if n_chars < max(fc.min_chars, fc.code_min_chars):
        return Verdict(Reason.TOO_SHORT, 0.0, n)
    if n_chars > fc.max_chars:
        return Verdict(Reason.TOO_LONG, 0.0, n)
    lines = text.split("\n")
    if max(map(len, lines)) > fc.code_max_line_length:
        return Verdict(Reason.CODE_LONG_LINES, 0.0, n)
    non_space = n_chars - sum(text.count(c) for c in " \t\n")
    alnum = alnum_count(text) / max(1, non_space)
    if alnum < fc.code_min_alnum_fraction:
        return Verdict(Reason.CODE_LOW_ALNUM, 0.0, n)
    stripped = [ln.strip() for ln in lines if ln.strip()]
    _, dup_chars = _dup_fractions(stripped)
    quality = (min(1.0, alnum) + (1.0 - dup_chars) + min(1.0, len(stripped) / 20)) / 3
    return Verdict(None, round(min(1.0, max(0.0, quality)), 4), n)


def judge(text: str, preset: str, fc: FilterConfig, bad_words: re.Pattern | None = None) -> Verdict:
    return judge_code(text, fc) if preset == "code" else judge_prose(text, fc, bad_words)
