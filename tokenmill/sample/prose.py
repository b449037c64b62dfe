"""English-like prose from grammar templates: web pages, news, forum posts, book chapters.

Every slot in a template is drawn afresh, so two documents share almost no
word 5-grams, and no template has five fixed words in a row (that would
repeat 5-grams inside a document and trip the Gopher duplicate-n-gram rule).
Nearly every template holds two of Gopher's stop words (the, be, to, of,
and, that, have, with), so even a short post passes that rule.
"""

from __future__ import annotations

import random
import re

from tokenmill.sample import words as W

SENTENCES = [
    "{Name} {vp} the {a} {n} {place} {time} and {vp} it {adv}.",
    "The {n} that {Name} {vp} {time} turned out to be {a}.",
    "Most {ns} {vb} {adv} when the {n} is {a} and {a}.",
    "According to {Name}, the {n} {v3} {adv} after the {a} {n} arrives.",
    "It is {a} to {vb} a {n} without {vg} the {n} first.",
    "In {city}, {num} of the {ns} were {vp} {time}.",
    "{Name} said that the {a} {ns} {place} had never been {vp} before.",
    "Nobody expected the {n} to be so {a}, yet it {vp} the {n} {adv}.",
    "We {vp} {num} {a} {ns} and {vp} the rest {adv}.",
    "When the {n} {v3}, the {n} usually {v3} with it.",
    "There were {num} {ns} {place}, and each one was {a}.",
    "The {a} {n} in {city} {v3} {num} {ns} every {month} of the year.",
    "{Name} and {Name} {vp} a {a} {n} to {vb} the {n}.",
    "Why would anyone want to {vb} a {a} {n} {place}?",
    "By {year}, the {n} had {vp} more than {num} of the {ns}.",
    "If you {vb} the {n} {adv}, the {ns} will stay {a} and {a}.",
    "The report from {city} {vp} a {a} {n} and a {a} {n}.",
    "Local {ns} have {vp} the {n} since {year}.",
    "One {a} {n} is able to {vb} as many as {num} {ns}.",
    "{Name} {adv} {vp} the {n}, although the {ns} were {a} and {a}.",
    "Some of the {ns} are {a}, while others are {a} and {a}.",
    "Visitors to {city} often {vb} the {a} {n} {place}.",
    "{Name}, who {vp} the {n} in {year}, still likes to {vb} it {adv}.",
    "It is easier to {vb} a {a} {n} than to {vb} the {n}.",
    "The {ns} {vp} {time} were {a} enough to {vb} the {n}.",
    "After {vg} the {n}, {Name} {vp} a {a} {n} with {Name}.",
    "In {month} {year}, the {n} {place} was {vp} and then {vp} again.",
    "Few people know that the {n} {vp} {num} {ns} {time}.",
    "{Name} asked us to {vb} the {n} before the {n} became {a}.",
    "Our {a} {n} {v3} {adv}, but the {ns} {place} do not have to.",
    "Is the {n} really {a}, or is the {n} simply {a} to {vb}?",
    "Two {a} {ns} {vp} the {n} while {Name} {vp} the {n} of the {n}.",
    "The {n} {place} is {a} in {month} and {a} in {month}.",
    "{Name} keeps a {a} {n} to {vb} the {ns}.",
    "Even the {a} {n} needs {vg} from time to time.",
    "Without the {n}, the {ns} in {city} would be {a}.",
]

QUOTES = [
    "\"{S}\" said {Name}, a {a} {role} from {city}.",
    "\"{S}\" {Name} told reporters {time}.",
    "{Name}, the {role}, put it {adv}: \"{S}\"",
]

ROLES = ["teacher", "engineer", "farmer", "nurse", "historian", "shopkeeper", "pilot", "student",
         "researcher", "carpenter", "librarian", "volunteer", "official", "musician", "fisherman"]

HEADLINES = [
    "{A} {N} Draws Crowds in {city}",
    "{city} {Ns} Face a {A} {Month}",
    "Why {Ns} Matter More Than Ever",
    "{Name} Wins Praise for {A} {N}",
    "{num} {A} {Ns} Found {Place}",
    "Council Backs Plan for {A} {N} in {city}",
]

WEB_TITLES = [
    "A Guide to the {A} {N}",
    "{num} Things to Know About {Ns}",
    "How to {VB} a {A} {N}",
    "Notes on {Ns} in {city}",
    "The {A} {N}: A Short History",
    "What Every {N} Owner Should Know",
]

FORUM_OPENERS = [
    "Hi all, quick question about my {n}.",
    "Has anyone here tried to {vb} a {a} {n}?",
    "Long time reader, first post.",
    "Following up on the thread about {ns}.",
    "Hello everyone, I need some advice.",
    "Not sure this is the right board, but here goes.",
]

FORUM_CLOSERS = ["Thanks in advance!", "Cheers, {first}", "Any tips welcome.", "Thanks, {first}",
                 "Happy to share photos if that helps.", "Much appreciated."]

NUMBER_WORDS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve",
                "fifteen", "twenty", "thirty", "forty", "fifty", "a hundred"]

IRREGULAR_PLURALS = {"wolf": "wolves", "loaf": "loaves", "deer": "deer", "trout": "trout",
                     "salmon": "salmon", "reindeer": "reindeer", "tomato": "tomatoes"}

SLOT = re.compile(r"\{(\w+)\}")
AN = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")  # "a elegant" -> "an elegant"


def plural(noun: str) -> str:
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


class Writer:
    """Fills templates for one topic; every slot gets a fresh random draw."""

    def __init__(self, rng: random.Random, topic: str | None = None):
        self.rng = rng
        self.topic = topic or rng.choice(sorted(W.TOPICS))
        # Mostly on-topic nouns, with a few from a second topic for variety.
        self.nouns = W.TOPICS[self.topic] + rng.sample(W.TOPICS[rng.choice(sorted(W.TOPICS))], 6)
        self.deck: list[str] = []

    def slot(self, name: str) -> str:
        r = self.rng
        if name in ("n", "N"):
            word = r.choice(self.nouns)
        elif name in ("ns", "Ns"):
            word = plural(r.choice(self.nouns))
        elif name in ("a", "A"):
            word = r.choice(W.ADJECTIVES)
        elif name in ("vb", "VB"):
            word = r.choice(W.VERBS)[0]
        elif name == "vp":
            word = r.choice(W.VERBS)[1]
        elif name == "v3":
            word = r.choice(W.VERBS)[2]
        elif name == "vg":
            word = r.choice(W.VERBS)[3]
        elif name == "adv":
            word = r.choice(W.ADVERBS)
        elif name == "Name":
            word = self.name()
        elif name == "first":
            word = r.choice(W.FIRST_NAMES)
        elif name == "city":
            word = r.choice(W.CITIES)
        elif name in ("time",):
            word = r.choice(W.TIME_PHRASES)
        elif name in ("place", "Place"):
            word = r.choice(W.PLACES)
        elif name == "num":
            word = r.choice(NUMBER_WORDS) if r.random() < 0.5 else str(r.randint(2, 90))
        elif name == "year":
            word = str(r.randint(1890, 2024))
        elif name in ("month", "Month"):
            word = r.choice(W.MONTHS)
        elif name == "role":
            word = r.choice(ROLES)
        elif name == "S":
            word = self.sentence()
        else:
            raise KeyError(name)
        return word.title() if name[0].isupper() and name not in ("Name", "S") else word

    def name(self) -> str:
        first = self.rng.choice(W.FIRST_NAMES)
        return first if self.rng.random() < 0.4 else f"{first} {self.rng.choice(W.LAST_NAMES)}"

    def fill(self, template: str) -> str:
        text = SLOT.sub(lambda m: self.slot(m.group(1)), template)
        text = AN.sub(r"\1n ", text)
        return text[0].upper() + text[1:]

    def sentence(self) -> str:
        # Deal templates like cards: no template repeats until all are used,
        # so a short document never repeats a long fixed phrase.
        if not self.deck:
            self.deck = self.rng.sample(SENTENCES, len(SENTENCES))
        return self.fill(self.deck.pop())

    def paragraph(self, lo: int = 3, hi: int = 7, quotes: bool = False) -> str:
        parts = []
        for _ in range(self.rng.randint(lo, hi)):
            if quotes and self.rng.random() < 0.2:
                parts.append(self.fill(self.rng.choice(QUOTES)))
            else:
                parts.append(self.sentence())
        return " ".join(parts)

    def paragraphs(self, n: int, **kw) -> list[str]:
        return [self.paragraph(**kw) for _ in range(n)]


def web_page(rng: random.Random) -> tuple[str, dict]:
    w = Writer(rng)
    title = w.fill(rng.choice(WEB_TITLES))
    body = w.paragraphs(rng.randint(2, 5))
    slug = "-".join(title.lower().split()[:5])
    meta = {"url": f"https://www.example.com/{w.topic}/{slug}", "topic": w.topic, "lang": "en"}
    return "\n\n".join([title] + body), meta


def news_story(rng: random.Random) -> tuple[str, dict]:
    w = Writer(rng)
    headline = w.fill(rng.choice(HEADLINES))
    city, month, day = rng.choice(W.CITIES), rng.choice(W.MONTHS), rng.randint(1, 28)
    lead = f"{city.upper()}, {month} {day} - {w.paragraph(2, 3)}"
    body = w.paragraphs(rng.randint(2, 5), quotes=True)
    meta = {"section": rng.choice(W.SECTIONS), "published": f"{rng.randint(2015, 2024)}-{rng.randint(1, 12):02d}-{day:02d}"}
    return "\n\n".join([headline, lead] + body), meta


def forum_post(rng: random.Random) -> tuple[str, dict]:
    w = Writer(rng, rng.choice(W.BOARDS))
    opener = w.fill(rng.choice(FORUM_OPENERS))
    body = w.paragraphs(rng.randint(2, 3), lo=3, hi=5)
    closer = w.fill(rng.choice(FORUM_CLOSERS))
    meta = {"board": w.topic, "thread": rng.randint(1000, 99999), "post": rng.randint(1, 40)}
    return "\n\n".join([opener] + body + [closer]), meta


def book_chapter(rng: random.Random, title: str, author: str, chapter: int) -> str:
    w = Writer(rng)
    paras = [f"Chapter {chapter}"]
    for _ in range(rng.randint(8, 16)):
        if rng.random() < 0.3:
            paras.append(f"\"{w.sentence()}\" {w.name()} said. \"{w.sentence()}\"")
        else:
            paras.append(w.paragraph(3, 6))
    return "\n\n".join(paras)


def book_title(rng: random.Random) -> str:
    w = Writer(rng)
    return w.fill(rng.choice(["The {A} {N}", "A {N} in {city}", "{Ns} of {city}", "The Last {N}"]))


def long_article(rng: random.Random, min_words: int = 400) -> str:
    """A web article long enough that a few word edits keep Jaccard >= 0.85."""
    w = Writer(rng)
    paras = [w.fill(rng.choice(WEB_TITLES))]
    while sum(len(p.split()) for p in paras) < min_words:
        paras.append(w.paragraph(4, 7))
    return "\n\n".join(paras)
