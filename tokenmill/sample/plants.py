"""Text transforms for planted defects: edits, mojibake, entities, junk."""

from __future__ import annotations

import random
import re

from tokenmill.sample import words as W
from tokenmill.sample.prose import Writer

WORD = re.compile(r"\w+")


def word_shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Word n-grams over lowercase \\w+ tokens (the ground truth's definition)."""
    toks = WORD.findall(text.lower())
    return {tuple(toks[i:i + n]) for i in range(max(len(toks) - n + 1, 1))}


def split_shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Word n-grams over whitespace-split tokens (a common alternative)."""
    toks = text.split()
    return {tuple(toks[i:i + n]) for i in range(max(len(toks) - n + 1, 1))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def edit_tokens(text: str, rng: random.Random, k: int, code: bool = False) -> str:
    """Replace k tokens, far enough apart that each edit costs at most 5 shingles.

    Prose: a plain lowercase word becomes another word. Code: an integer
    literal changes, so the file still parses the same way.
    """
    pattern = r"\b\d+\b" if code else r"(?<!\S)[a-z]+(?!\S)"
    spans = [m.span() for m in re.finditer(pattern, text)]
    order = list(range(len(spans)))
    rng.shuffle(order)
    picks: list[int] = []
    for i in order:
        if all(abs(spans[i][0] - spans[j][0]) >= 80 for j in picks):
            picks.append(i)
            if len(picks) == k:
                break
    picks.sort()
    out, last = [], 0
    for i in picks:
        start, end = spans[i]
        old = text[start:end]
        new = str(int(old) + rng.randint(1, 9)) if code else rng.choice([w for w in W.EDIT_WORDS if w != old])
        out += [text[last:start], new]
        last = end
    return "".join(out + [text[last:]])


def near_copy(text: str, rng: random.Random, code: bool = False, min_jaccard: float = 0.85) -> tuple[str, int, float]:
    """An edited copy whose Jaccard to ``text`` is >= min_jaccard under both shingle definitions."""
    base_w, base_s = word_shingles(text), split_shingles(text)
    for k in range(rng.randint(2, 5), 0, -1):
        copy = edit_tokens(text, rng, k, code)
        j = jaccard(base_w, word_shingles(copy))
        if copy != text and j >= min_jaccard and jaccard(base_s, split_shingles(copy)) >= min_jaccard:
            return copy, k, round(j, 4)
    raise ValueError("document too short for a near-duplicate copy")


def whitespace_variant(text: str) -> str:
    return "  " + text.replace(". ", ".  ").replace("\n\n", "\n\n\n") + " \n"


def mojibake(text: str) -> str:
    """UTF-8 bytes read as Windows-1252 (bytes 1252 leaves undefined read as Latin-1)."""
    out = []
    for b in text.encode("utf-8"):
        try:
            out.append(bytes([b]).decode("cp1252"))
        except UnicodeDecodeError:
            out.append(chr(b))
    return "".join(out)


ACCENTED = [
    "We met at the caf\u00e9 on the corner and shared a cr\u00e8me br\u00fbl\u00e9e before the concert.",
    "The na\u00efve plan looked better on her r\u00e9sum\u00e9 than it did in practice.",
    "\u201cIt\u2019s a long way to Z\u00fcrich,\u201d said the se\u00f1ora with a patient smile.",
    "The pi\u00f1ata at the fianc\u00e9e\u2019s party was shaped like a jalape\u00f1o.",
    "He wrote about the fa\u00e7ade of the old ch\u00e2teau \u2014 twice, in fact.",
    "Their d\u00e9j\u00e0 vu moment came in the Mus\u00e9e d\u2019Orsay on a wet Sunday.",
]

HTML = [
    "The shop sold fish &amp; chips, tea &amp; cake, and very little else.",
    "She called it &quot;the best caf&eacute; in town&quot; and meant every word.",
    "Prices rose by 5&#37; while wages stayed flat &#8212; again.",
    "Smith &amp; Sons opened a second branch &ndash; their first in years.",
    "The editor wrote &lt;em&gt;never&lt;/em&gt; in the margin of the draft.",
]

BAD_WORDS = ["frack", "gorram", "smeg"]
BAD_WORD_SENTENCES = ["Honestly, the whole {n} was a {w} disaster from start to finish.",
                      "What a {w} mess, said the neighbour about the {n}."]

# Junk kind -> the quality rule (Gopher, Rae et al. 2021) each page is built to fail first.
JUNK_RULES = {"symbols": "gopher_symbol_ratio", "lorem": "gopher_stop_words", "short": "too_short",
              "bullets": "gopher_bullet_lines", "boilerplate": "gopher_dup_lines",
              "ellipsis": "gopher_ellipsis_lines", "empty": "empty"}
JUNK_KINDS = [k for k in JUNK_RULES if k != "empty"]


LATIN = ["dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "tempor", "incididunt",
         "labore", "magna", "aliqua", "veniam", "nostrud", "ullamco", "laboris", "nisi", "commodo"]
NAV = ["Home", "About us", "Contact", "Privacy policy", "Terms of use", "Careers", "Advertise", "Help"]


def junk(rng: random.Random, kind: str) -> str:
    """A page quality filters should drop. Each has random parts, so junk pages
    are not duplicates of one another (dedup ground truth stays exact)."""
    w = Writer(rng)
    if kind == "symbols":
        return "\n".join(" ".join("".join(rng.choice("#$%&*@~^|+=") for _ in range(rng.randint(3, 8)))
                                  for _ in range(8)) for _ in range(8))
    if kind == "lorem":
        phrase = " ".join(rng.sample(LATIN, 3))
        return " ".join([f"lorem ipsum {phrase}"] * rng.randint(30, 60))
    if kind == "short":
        return f"{rng.choice(['Click here', 'Page not found', 'Loading, please wait', 'Subscribe now'])} ({rng.randint(100, 999)})."
    if kind == "bullets":
        # 20+ lines, so over 50 words: dropped for bullets, not for length.
        return "\n".join(f"\u2022 {rng.choice(W.ADJECTIVES)} {rng.choice(w.nouns)}" for _ in range(rng.randint(20, 26)))
    if kind == "boilerplate":
        site = f"The {rng.choice(W.CITIES)} {rng.choice(w.nouns).title()} Gazette"
        block = [" | ".join(rng.sample(NAV, 5)), f"Copyright {rng.randint(2000, 2024)} {site}. All rights reserved.",
                 f"Sign in to {site} to continue reading.", "Share this page with your friends."]
        return "\n".join(block * rng.randint(5, 8))
    if kind == "ellipsis":
        # Long lines keep "..." under 1 in 10 words: dropped for ellipsis lines, not symbols.
        return "\n".join(w.fill("Read more about the {n} {place}, and what {Name} {vp} {time}...") for _ in range(12))
    raise KeyError(kind)


def insert_sentence(text: str, sentence: str, rng: random.Random) -> str:
    """Put a sentence at the end of a random body paragraph (never the title)."""
    paras = text.split("\n\n")
    i = rng.randint(1, len(paras) - 1) if len(paras) > 1 else 0
    paras[i] = f"{paras[i]} {sentence}"
    return "\n\n".join(paras)
