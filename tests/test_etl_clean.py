"""Clean: text repair and every quality filter, on literal texts."""

from __future__ import annotations

import pytest

from tokenmill.config import from_dict
from tokenmill.errors import ConfigError
from tokenmill.etl.clean import ftfy_config, clean_and_redact, fix_lines, normalize, row_preset
from tokenmill.config.etl import EtlConfig, FilterConfig
from tokenmill.etl.filters import alnum_count, bad_words_regex, judge, load_bad_words, top_ngram_char_fraction

FC = FilterConfig()
BAD = bad_words_regex(load_bad_words(None))
# 60 varied words of ordinary prose: passes every rule.
GOOD = ("The river runs past the old mill and the village. Farmers bring grain to be ground with care, "
        "and children watch the wheel turn. Winter brings ice that slows the water, but spring melt "
        "returns the current. Visitors walk along the bank to see herons fishing in shallow pools near "
        "reeds, while bakers sell fresh bread from a small stall by the bridge.")


def reason(text: str, preset: str = "prose", fc: FilterConfig = FC) -> str | None:
    return judge(text, preset, fc, BAD).reason


def test_normalize_repairs_text():
    assert normalize("We met at the cafÃ© for crÃ¨me brÃ»lÃ©e.") == "We met at the café for crème brûlée."
    assert normalize("fish &amp; chips") == "fish & chips"
    assert normalize("bell\x07 and\x00 nul\x1b[31m red\x1b[0m") == "bell and nul red"
    assert normalize("e\u0301t\u00e9") == "\u00e9t\u00e9"  # NFC
    assert normalize("  a \t b  \r\n\r\n\r\n\n c  ") == "a b\n\nc"
    assert normalize("zero\u200bwidth") == "zerowidth"
    assert normalize("\u201cquoted\u201d") == "\u201cquoted\u201d"  # typographic quotes are kept


# Lines ftfy changes (mojibake, entities, terminal escapes, odd widths) and lines it leaves alone.
FTFY_LINES = ["We met at the cafÃ© for crÃ¨me brÃ»lÃ©e.", "fish &amp; chips", "\x1b[31mred\x1b[0m", "plain ascii",
              "", "   indented(x)  ", "crlf line\r", "ﬁne ligature", "ｗｉｄｅ", "e\u0301t\u00e9", "\u201cquoted\u201d",
              "â€œsmartâ€\x9d", "tab\there", "bell\x07", "&lt;b&gt;", "Ã\xa0 la carte"]


@pytest.mark.parametrize("preset", ["prose", "code"])
def test_fix_lines_equals_ftfy_on_the_whole_text(preset):
    import random

    import ftfy

    config = ftfy_config(preset)
    rng = random.Random(5)
    texts = ["", "\n", "a\n", "\ncafÃ©", "cafÃ©\n", "cafÃ©\n\nplain\n", "plain\ncafÃ©", "x" * 50 + "Ã©"]
    texts += ["\n".join(rng.choice(FTFY_LINES) for _ in range(rng.randrange(1, 30))) + rng.choice(["", "\n"])
              for _ in range(300)]
    for text in texts:
        assert fix_lines(text, config) == ftfy.fix_text(text, config), repr(text)
    # Every ASCII character ftfy would change sends its line to ftfy.
    for code in range(128):
        line = f"a{chr(code)}b&amp;c" if code == ord("&") else f"a{chr(code)}b"
        assert fix_lines(line + "\nok", config) == ftfy.fix_text(line + "\nok", config), hex(code)
    # A line longer than ftfy's segment limit is cut where ftfy cuts it.
    short = config._replace(max_decode_length=7)
    for text in ("plain\n" + "cafÃ© " * 9 + "\nplain", "cafÃ©cafÃ©cafÃ©\nok"):
        assert fix_lines(text, short) == ftfy.fix_text(text, short)


def test_normalize_code_keeps_indentation_and_entities():
    code = "def f(x):  \r\n    if x:\r\n\r\n\r\n\r\n        return '&amp;'\t\n"
    assert normalize(code, "code") == "def f(x):\n    if x:\n\n        return '&amp;'"


def test_code_whitespace_and_alnum_counts_equal_their_regex_definitions():
    import random
    import re

    trailing = re.compile(r"[^\S\n]+\n")  # whitespace before a newline, as the code preset removes it
    rng = random.Random(2)
    pool = [" ", "\t", "\n", "a", "Z", "9", "_", "\u00a0", "\u3000", "\x0c", "\x0b", "\u2028", "é", "٣", "\n\n"]
    for _ in range(3000):
        text = "".join(rng.choice(pool) for _ in range(rng.randrange(0, 25)))
        controls_removed = text.replace("\x0b", "").replace("\x0c", "")  # as normalize does first
        expected = trailing.sub("\n", controls_removed.rstrip() + "\n").rstrip()
        expected = re.sub(r"\n{3,}", "\n\n", expected).lstrip("\n")
        assert normalize(text, "code", fix_text=False) == expected, repr(text)
        assert alnum_count(text) == sum(c.isalnum() for c in text)
    assert alnum_count("".join(map(chr, range(128)))) == 62


def test_good_prose_is_kept_with_quality():
    v = judge(GOOD, "prose", FC, BAD)
    assert v.reason is None and v.n_words == 63 and 0.5 < v.quality <= 1.0


@pytest.mark.parametrize("text, expected", [
    ("", "empty"),
    (" \n\t ", "empty"),
    ("Click here.", "too_short"),
    (" ".join([f"supercalifragilistic{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(60)] + ["the", "and"]),
     "gopher_mean_word_length"),
    (GOOD + " #" * 8, "gopher_symbol_ratio"),
    ("\n".join(f"\u2022 item {w} the and" for w in GOOD.split()[:15]), "gopher_bullet_lines"),
    ("\n".join(f"Read more about the {w} and the story of the town..." for w in GOOD.split()[:12]),
     "gopher_ellipsis_lines"),
    (GOOD + " " + " ".join(str(i) for i in range(20)), "gopher_alpha_words"),
    (" ".join(w for w in GOOD.split() if w.lower() not in {"the", "be", "to", "of", "and", "that", "have", "with"})
     + " Bright mornings bring calm days for everyone living nearby again.", "gopher_stop_words"),
    ("\n".join([GOOD] + ["Sign in to continue reading with the app."] * 5), "gopher_dup_lines"),
    ("\n".join([GOOD, GOOD[:150], GOOD[:150], "a line of the text and"]), "gopher_dup_line_chars"),
    ("\n\n".join([GOOD.replace(", ", ",\n")] + ["Short para of the and."] * 3), "gopher_dup_paras"),
    (GOOD + " " + " ".join(["lorem ipsum"] * 30), "gopher_top_ngram"),
    (GOOD + " What a frack mess.", "bad_words"),
])
def test_each_prose_rule_drops_with_its_reason(text, expected):
    assert reason(text) == expected


def test_dup_para_chars_rule():
    # A repeated paragraph repeats its lines too: with the default thresholds the line
    # rule fires first, so loosen it to reach the paragraph rule.
    long_para = GOOD[:200]
    text = "\n\n".join([GOOD, long_para, long_para, "one", "two", "three", "four", "five", "six"])
    assert reason(text) == "gopher_dup_line_chars"
    assert reason(text, fc=FilterConfig(max_dup_line_char_fraction=0.9)) == "gopher_dup_para_chars"


def test_thresholds_come_from_config():
    assert reason(GOOD, fc=FilterConfig(min_words=100)) == "too_short"
    assert reason(GOOD, fc=FilterConfig(max_chars=100)) == "too_long"
    assert reason(GOOD + " What a frack mess.", fc=FilterConfig(max_bad_words=1)) is None
    assert reason(GOOD + " What a frack mess.", fc=FilterConfig(bad_words=False)) is None


def test_bad_words_file_and_whole_word_match(tmp_path):
    f = tmp_path / "words.txt"
    f.write_text("# comment\nRiver\n\nold mill\n")
    words = load_bad_words(str(f))
    assert words == ("old mill", "river")
    rx = bad_words_regex(words)
    assert judge(GOOD, "prose", FC, rx).reason == "bad_words"
    assert judge(GOOD.replace("river", "riverbank").replace("old mill", "mill"), "prose", FC, rx).reason is None


def test_top_ngram_fraction_exact():
    words = "a b a b a b c".split()
    assert top_ngram_char_fraction(words, 2, 7) == pytest.approx(3 * 2 / 7)
    assert top_ngram_char_fraction("a b c d".split(), 2, 4) == 0.0


def test_code_rules():
    code = "import os\n\n\ndef main():\n    for name in os.listdir('.'):\n        print(name)\n"
    v = judge(code, "code", FC)
    assert v.reason is None and 0 < v.quality <= 1
    assert reason(code, "prose") == "too_short"  # prose rules would drop it
    assert reason("x=1", "code") == "too_short"
    assert reason("var a=" + "1," * 600 + "2;", "code") == "code_long_lines"
    assert reason("{}\n" + "=> ;; {} [] ()\n" * 20, "code") == "code_low_alnum"
    assert reason("", "code") == "empty"


def test_row_preset():
    py = (".py", ".rs")
    assert row_preset('{"preset": "code", "file": "x.py"}', "prose") == "code"
    assert row_preset('{"file": "x.txt"}', "prose") == "prose"
    assert row_preset(None, "code") == "code"
    # auto: the row's id or a file-name field of its record, never the JSONL file itself
    assert row_preset('{"file": "rows.jsonl", "line": 3}', "auto", "pkg/Mod.PY", py) == "code"
    assert row_preset('{"file": "rows.jsonl", "path": "src/lib.rs"}', "auto", "row-1", py) == "code"
    assert row_preset('{"file": "code.py.jsonl"}', "auto", "row-1", py) == "prose"
    assert row_preset('{"path": ["a.py"]}', "auto", "row-1", py) == "prose"
    assert row_preset("not json", "auto", "notes.txt", py) == "prose"
    # an input's preset or a forced stage preset wins over the name
    assert row_preset('{"preset": "prose"}', "auto", "a.py", py) == "prose"
    assert row_preset("{}", "prose", "a.py", py) == "prose"


def test_source_files_read_as_jsonl_rows_get_the_code_rules():
    """A JSONL of .py files with the default preset: code rows keep indentation and pass."""
    from tokenmill.etl.clean import Cleaner

    source = "import os\n\n\ndef main():\n    for name in os.listdir('.'):\n        print(name)\n"
    auto, prose = Cleaner(EtlConfig()), Cleaner(from_dict(EtlConfig, {"preset": "prose"}))
    row = auto.row("tools/list_dir.py", "code", source, '{"file": "rows.jsonl", "line": 1}')
    assert (row.reason, row.preset) == (None, "code") and row.text.startswith("import os\n\ndef main():\n    for")
    assert prose.row("tools/list_dir.py", "code", source, "{}").reason == "too_short"
    assert auto.row("notes", "web", GOOD, "{}").preset == "prose"


def test_filter_config_validation():
    with pytest.raises(ConfigError, match="max_dup_line_fraction"):
        from_dict(EtlConfig, {"filters": {"max_dup_line_fraction": 1.5}})
    with pytest.raises(ConfigError, match="min_words"):
        from_dict(EtlConfig, {"filters": {"min_words": 10, "max_words": 5}})
    cfg = from_dict(EtlConfig, {"preset": "code", "filters": {"max_top_ngram_char_fraction": {2: 0.3}}})
    assert cfg.filters.max_top_ngram_char_fraction == {2: 0.3}


def test_clean_and_redact_exact_rows(spark):
    rows = [
        ("1", "web", GOOD + " Write to ada@example.com today.", "{}"),
        ("2", "web", "Too short.", "{}"),
        ("3", "web", GOOD.replace("village", "villÃ¤ge"), "{}"),
        ("4", "code", "def f():\n    return 'x'  # bob@example.org\n", '{"preset": "code"}'),
        ("5", "web", "", "{}"),
    ]
    df = spark.createDataFrame(rows, "id string, source string, text string, meta string")
    out = {r.id: r for r in clean_and_redact(df, EtlConfig()).collect()}
    assert [(i, out[i].reason) for i in sorted(out)] == [
        ("1", None), ("2", "too_short"), ("3", None), ("4", None), ("5", "empty")]
    assert out["1"].text.endswith("Write to <EMAIL> today.") and out["1"].pii == {"EMAIL_ADDRESS": 1}
    assert "villäge" in out["3"].text and out["3"].pii is None
    assert out["4"].text == "def f():\n    return 'x'  # <EMAIL>"
    assert out["2"].text is None and out["2"].sample == "Too short."
    assert out["1"].n_chars == len(out["1"].text) and out["1"].n_words == 67
    assert 0 < out["1"].quality <= 1 and out["2"].quality == 0.0
