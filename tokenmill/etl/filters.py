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

from tokenmill.etl.config import FilterConfig

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
# A whitespace-delimited word without a single letter (numbers, symbols).
_NO_LETTER_WORD = re.compile(r"(?<!\S)(?:(?!\s)[\W\d_])+(?!\S)")
BUNDLED_BAD_WORDS = Path(__file__).parent / "data" / "bad_words.txt"


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
    except OSError as exc:
        from tokenmill.errors import UserError

        raise UserError(f"etl.filters.bad_words_file: cannot read {p}: {exc.strerror}") from None
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


def judge_prose(text: str, fc: FilterConfig, bad_words: re.Pattern | None = None) -> Verdict:
    """Verdict for prose: length, Gopher quality and repetition rules, bad words."""
    n_chars = len(text)
    if n_chars == 0 or text.isspace():
        return Verdict(Reason.EMPTY, 0.0, 0)
    words = text.split()
    n = len(words)
    if n_chars < fc.min_chars or n < fc.min_words:
        return Verdict(Reason.TOO_SHORT, 0.0, n)
    if n_chars > fc.max_chars or n > fc.max_words:
        return Verdict(Reason.TOO_LONG, 0.0, n)
    word_chars = sum(map(len, words))
    mean_len = word_chars / n
    if not fc.min_mean_word_length <= mean_len <= fc.max_mean_word_length:
        return Verdict(Reason.GOPHER_MEAN_WORD_LENGTH, 0.0, n)
    symbols = text.count("#") + text.count("...") + text.count("\u2026")
    if symbols / n > fc.max_symbol_word_ratio:
        return Verdict(Reason.GOPHER_SYMBOL_RATIO, 0.0, n)
    lines = [ln for ln in map(str.strip, text.split("\n")) if ln]
    n_lines = max(1, len(lines))
    if sum(ln.startswith(BULLETS) for ln in lines) / n_lines > fc.max_bullet_lines_fraction:
        return Verdict(Reason.GOPHER_BULLET_LINES, 0.0, n)
    if sum(ln.endswith(ELLIPSES) for ln in lines) / n_lines > fc.max_ellipsis_lines_fraction:
        return Verdict(Reason.GOPHER_ELLIPSIS_LINES, 0.0, n)
    alpha = 1.0 - len(_NO_LETTER_WORD.findall(text)) / n
    if alpha < fc.min_alpha_words_fraction:
        return Verdict(Reason.GOPHER_ALPHA_WORDS, 0.0, n)
    low = text.lower()
    lower = low.split()
    unigrams = Counter(lower)
    stop_hits = sum(unigrams[w] for w in STOP_WORDS)
    if sum(1 for w in STOP_WORDS if w in unigrams) < fc.min_stop_words:
        return Verdict(Reason.GOPHER_STOP_WORDS, 0.0, n)
    dup_lines, dup_line_chars = _dup_fractions(lines)
    if dup_lines > fc.max_dup_line_fraction:
        return Verdict(Reason.GOPHER_DUP_LINES, 0.0, n)
    if dup_line_chars > fc.max_dup_line_char_fraction:
        return Verdict(Reason.GOPHER_DUP_LINE_CHARS, 0.0, n)
    paras = [p.strip() for p in _PARAGRAPHS.split(text) if p.strip()]
    dup_paras, dup_para_chars = _dup_fractions(paras)
    if dup_paras > fc.max_dup_para_fraction:
        return Verdict(Reason.GOPHER_DUP_PARAS, 0.0, n)
    if dup_para_chars > fc.max_dup_para_char_fraction:
        return Verdict(Reason.GOPHER_DUP_PARA_CHARS, 0.0, n)
    # An n-gram's character share is at most n x the largest count*length of one word,
    # so most documents skip the n-gram counts (the costliest rule) without changing a verdict.
    top_word = max(map(mul, unigrams.values(), map(len, unigrams))) / word_chars
    top2 = min(1.0, 2 * top_word)
    for k, limit in sorted(fc.max_top_ngram_char_fraction.items()):
        if k * top_word <= limit:
            continue
        frac = top_ngram_char_fraction(lower, k, word_chars)
        if k == 2:
            top2 = frac
        if frac > limit:
            return Verdict(Reason.GOPHER_TOP_NGRAM, 0.0, n)
    if bad_words is not None and fc.bad_words and _may_hold(low, bad_words):
        hits = sum(1 for _ in bad_words.finditer(text))
        if hits > fc.max_bad_words:
            return Verdict(Reason.BAD_WORDS, 0.0, n)
    quality = (alpha + (1.0 - dup_line_chars) + (1.0 - top2) + min(1.0, n / 500)
               + min(1.0, stop_hits / n / 0.1)) / 5
    return Verdict(None, round(min(1.0, max(0.0, quality)), 4), n)


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
    alnum = (n_chars - len(_ALNUM.sub("", text))) / max(1, non_space)
    if alnum < fc.code_min_alnum_fraction:
        return Verdict(Reason.CODE_LOW_ALNUM, 0.0, n)
    stripped = [ln.strip() for ln in lines if ln.strip()]
    _, dup_chars = _dup_fractions(stripped)
    quality = (min(1.0, alnum) + (1.0 - dup_chars) + min(1.0, len(stripped) / 20)) / 3
    return Verdict(None, round(min(1.0, max(0.0, quality)), 4), n)


def judge(text: str, preset: str, fc: FilterConfig, bad_words: re.Pattern | None = None) -> Verdict:
    return judge_code(text, fc) if preset == "code" else judge_prose(text, fc, bad_words)
