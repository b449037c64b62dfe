"""PII: presidio recognizers on candidate windows, typed placeholders, no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tokenmill.errors import ConfigError
from tokenmill.config.etl import PiiConfig
from tokenmill.etl.pii import Redactor, redactor

TEXT = ("Write to ada.l@example.com or call +1 (212) 555-0198. Card 4111 1111 1111 1111. "
        "Server 192.168.1.10 and fe80::1ff:fe23:4567:890a. IBAN DE89 3704 0044 0532 0130 00. "
        "Wallet 1BoatSLRHtKNngkdXEeobR76b53LETtpyT. SSN 536-98-1269 on file.")
REDACTED = ("Write to <EMAIL> or call <PHONE>. Card <CREDIT_CARD>. Server <IP> and <IP>. IBAN <IBAN>. "
            "Wallet <CRYPTO>. SSN <SSN> on file.")


def test_each_entity_becomes_its_placeholder():
    text, counts = redactor(PiiConfig()).redact(TEXT)
    assert text == REDACTED
    assert counts == {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1, "CREDIT_CARD": 1, "IP_ADDRESS": 2,
                      "IBAN_CODE": 1, "CRYPTO": 1, "US_SSN": 1}


def test_same_findings_as_presidio_on_the_whole_text():
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    nlp = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "no_op", "models": [{"lang_code": "en", "model_name": "no_op"}]}).create_engine()
    engine = AnalyzerEngine(nlp_engine=nlp)
    cfg = PiiConfig()
    text = ("Notes from 2021.\n" * 30) + TEXT + (" More words follow here." * 40) + " Mail bob@example.org."
    theirs = {(r.entity_type, r.start, r.end) for r in engine.analyze(text, language="en", entities=list(cfg.entities))}
    ours = {(f.entity, f.start, f.end) for f in redactor(cfg).find(text)}
    assert theirs == ours
    # only short windows reached presidio (the years are candidates: DE has 4-digit numbers)
    windows = redactor(cfg).windows(text)
    assert sum(e - s for s, e in windows) < len(text) / 2
    middle = text.index("More words") + 20 * len(" More words follow here.")
    assert not any(s <= middle < e for s, e in windows)


def test_a_fresh_worker_builds_the_redactor_without_torch_or_transformers():
    """As a Spark Python worker does: same findings, and torch still imports afterwards."""
    check = f"""
import json, sys
from tokenmill.config.etl import PiiConfig
from tokenmill.etl.pii import redactor
text, counts = redactor(PiiConfig()).redact({TEXT!r})
loaded = [m for m in ("torch", "transformers", "sklearn") if m in sys.modules]
import torch
print(json.dumps([text, counts, loaded]))
"""
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    text, counts, loaded = json.loads(result.stdout.splitlines()[-1])
    assert loaded == []
    assert (text, counts) == redactor(PiiConfig()).redact(TEXT)


def test_placeholders_entities_and_threshold_are_configurable():
    r = Redactor(PiiConfig(entities=("EMAIL_ADDRESS",), placeholders={"EMAIL_ADDRESS": "[mail]"}))
    assert r.redact("a ada@example.com b 192.168.1.10")[0] == "a [mail] b 192.168.1.10"
    # phone findings score 0.4: a higher threshold keeps them
    r = Redactor(PiiConfig(score_threshold=0.5))
    assert r.redact("call +1 (212) 555-0198 now") == ("call +1 (212) 555-0198 now", {})
    r = Redactor(PiiConfig(entities=("URL",)))
    assert r.redact("see https://example.com/page for more")[0] == "see <URL> for more"
    assert Redactor(PiiConfig(enabled=False)).redact(TEXT) == (TEXT, {})


def test_phone_regions_are_configurable():
    uk = "ring 020 7946 0958 today"
    assert Redactor(PiiConfig(entities=("PHONE_NUMBER",), phone_regions=("GB",))).redact(uk)[0] == "ring <PHONE> today"
    assert Redactor(PiiConfig(entities=("PHONE_NUMBER",), phone_regions=("US",))).redact(uk)[0] == uk


NO_NETWORK = """
import json, socket

attempts = []


def refuse(*args, **kwargs):
    attempts.append(repr(args[-1] if args else kwargs))
    raise OSError("no network in this test")


socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse

from tokenmill.config.etl import PiiConfig
from tokenmill.etl.pii import Redactor

out = Redactor(PiiConfig(entities=("EMAIL_ADDRESS", "URL"))).redact("mail x.y@mail.example.co.uk now")[0]
import tldextract.tldextract

print(json.dumps({"out": out, "attempts": attempts, "urls": list(tldextract.tldextract.TLD_EXTRACTOR.suffix_list_urls)}))
"""


def test_no_network_is_touched(tmp_path):
    """In a fresh interpreter without the tests' TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS (and an empty
    tldextract cache), only the Redactor keeps tldextract on its bundled suffix list."""
    env = {k: v for k, v in os.environ.items() if k != "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"}
    env["TLDEXTRACT_CACHE"] = str(tmp_path / "tldextract")
    done = subprocess.run([sys.executable, "-c", NO_NETWORK], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.splitlines()[-1])
    assert got == {"out": "mail <EMAIL> now", "attempts": [], "urls": []}


def test_redaction_resolves_overlaps():
    # presidio's URL recognizer also matches an e-mail's domain: the e-mail wins (higher score).
    r = Redactor(PiiConfig(entities=("EMAIL_ADDRESS", "URL")))
    assert r.redact("to ada@example.com.")[0] == "to <EMAIL>."


def test_long_document_is_windowed(monkeypatch):
    r = Redactor(PiiConfig())
    filler = "plain words without any numbers at all " * 20_000  # 780 KB
    text = filler + "reach me at x@example.org " + filler
    seen = []
    for _, rec in r.recognizers:
        orig = rec.analyze
        monkeypatch.setattr(rec, "analyze", lambda t, *a, _o=orig: seen.append(len(t)) or _o(t, *a))
    out, counts = r.redact(text)
    assert counts == {"EMAIL_ADDRESS": 1} and "<EMAIL>" in out
    assert max(seen) < 200


def test_ner_model_from_a_saved_spacy_pipeline(tmp_path):
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": "Ada Lovelace"}, {"label": "GPE", "pattern": "London"}])
    nlp.to_disk(tmp_path / "model")
    r = Redactor(PiiConfig(entities=("EMAIL_ADDRESS",), ner_model=str(tmp_path / "model")))
    text, counts = r.redact("Ada Lovelace of London wrote to ada@example.com.")
    assert text == "<PERSON> of <LOCATION> wrote to <EMAIL>."
    assert counts == {"PERSON": 1, "LOCATION": 1, "EMAIL_ADDRESS": 1}


def test_missing_ner_model_is_a_config_error():
    with pytest.raises(ConfigError, match="etl.pii.ner_model"):
        Redactor(PiiConfig(ner_model="no_such_model_xyz"))


def test_pii_config_validation():
    with pytest.raises(ConfigError, match="entities"):
        PiiConfig(entities=("EMAIL",))
    with pytest.raises(ConfigError, match="phone_regions"):
        PiiConfig(phone_regions=())


def test_region_pruning_keeps_international_numbers():
    # "+49 30 90182" has 9 digits: fewer than a US number, but "+" numbers parse in any region.
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    text = "Berlin office: +49 30 90182 today"
    r = Redactor(PiiConfig(entities=("PHONE_NUMBER",), phone_regions=("US",)))
    theirs = {(x.start, x.end) for x in PhoneRecognizer(supported_regions=("US",)).analyze(text, ["PHONE_NUMBER"])}
    assert theirs and {(f.start, f.end) for f in r.find(text)} == theirs


PHONE_WINDOWS = [  # (window, regions phonenumbers finds a number in, regions we try)
    (" [213/415/1] ", [], []),
    (" 2021-03-04 ", [], []),
    ("l 2019 15:52:37 +0200\n", [], []),
    ("E-2026-74632)\n", [], []),
    (" v5.10.0    5.0.0\n", [], []),
    ("+1 (212) 555-0198.", ["US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"],
     ["US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"]),
    (" (212) 555-0198 ", ["US", "IN", "CA", "BR"], ["US", "IN", "CA", "BR"]),
    (" 020 7946 0958 ", ["GB", "IN"], ["GB", "IN"]),
    (" 0049 30 901820 ", ["GB", "DE", "FR", "IL", "IN"], ["GB", "DE", "FR", "IL", "IN", "BR"]),
    (" 011 44 20 7946 0958 ", ["US", "CA"], ["US", "GB", "IN", "CA", "BR"]),
    ("3#2472802949891323026", ["IN"], ["US", "DE", "FR", "IL", "IN", "CA", "BR"]),  # an extension cuts the group
    ("7e24e129# 0957987275", ["DE", "IL"], ["DE", "FR", "IL"]),  # ... at its start and its end
    (" 030 901820 ", ["DE", "IL"], ["DE", "IL"]),
    (" 01 23 45 67 89 ", ["FR"], ["FR"]),
    (" (11) 91234-5678 ", ["BR"], ["BR"]),
    (" 03-1234567 ", ["IL"], ["IL"]),
]


@pytest.mark.parametrize("window,found,tried", PHONE_WINDOWS)
def test_phone_regions_are_pruned_only_where_no_number_can_be(window, found, tried):
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    phones = dict(Redactor(PiiConfig()).recognizers)["PHONE_NUMBER"]
    regions = PiiConfig().phone_regions
    assert [r for r in regions if PhoneRecognizer(supported_regions=(r,)).analyze(window, ["PHONE_NUMBER"])] == found
    assert phones.regions_to_try(window) == tried


def test_phone_region_check_never_drops_a_number_on_random_windows():
    # Random digit/punctuation strings hold many valid numbers in some region:
    # the check must let each such region through.
    import random

    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    phones = dict(Redactor(PiiConfig()).recognizers)["PHONE_NUMBER"]
    recs = {r: PhoneRecognizer(supported_regions=(r,)) for r in PiiConfig().phone_regions}
    rnd = random.Random(7)
    chars = "0123456789" * 5 + " -.()/ +x+0e#t:\n~,[]\u2013"
    found = pruned = 0
    for _ in range(600):
        window = "".join(rnd.choice(chars) for _ in range(rnd.randint(5, 22)))
        tried = set(phones.regions_to_try(window))
        pruned += len(recs) - len(tried)
        for region, rec in recs.items():
            if rec.analyze(window, ["PHONE_NUMBER"]):
                found += 1
                assert region in tried, (region, window)
    assert found > 50 and pruned > 1500


@pytest.mark.parametrize("regions", [None, ("DE",)])
def test_one_digit_scan_gives_each_digit_trigger_its_own_matches(regions):
    # The phone/card/SSN/IP runs and the IBAN account-number runs come from one regex
    # scan; each must equal what its own pattern finds (the phone runs then filtered).
    import random
    import re

    from tokenmill.etl.pii import ACCOUNT_RUN, DIGIT_RUN

    cfg = PiiConfig() if regions is None else PiiConfig(phone_regions=regions)
    red = Redactor(cfg)
    least = min(*red.min_run_digits, 4) - 1
    rnd = random.Random(11)
    chars = "0123456789" * 4 + "٣４ -.()/+x\n\t\u2013\uff0dab:"
    for _ in range(400):
        text = "".join(rnd.choice(chars) for _ in range(rnd.randint(0, 60)))
        hits = red._hits(text)
        assert hits[ACCOUNT_RUN] == [m.span() for m in re.finditer(ACCOUNT_RUN, text)], text
        own = [(m, sum(map(str.isdigit, m.group()))) for m in re.finditer(DIGIT_RUN % least, text)]
        assert hits[DIGIT_RUN] == red._digit_runs(text, own), text
    only_iban = Redactor(PiiConfig(entities=("IBAN_CODE",)))
    assert only_iban.digit_run.pattern == ACCOUNT_RUN
    assert only_iban._hits("acct 12 3456 and 1234") == {ACCOUNT_RUN: [(5, 12)]}


def test_pattern_gate_skips_only_windows_presidio_finds_nothing_in():
    # The gate (the recognizer's own regexes) must let through every window the
    # presidio recognizer reports something in; phone (phonenumbers) is not gated.
    import random

    r = Redactor(PiiConfig(entities=PiiConfig().entities + ("URL",)))
    assert r.gates["PHONE_NUMBER"] is None
    gated = {e: rec for e, rec in r.recognizers if r.gates[e] is not None}
    assert set(gated) == {"EMAIL_ADDRESS", "CREDIT_CARD", "IP_ADDRESS", "IBAN_CODE", "US_SSN", "CRYPTO", "URL"}
    rnd = random.Random(11)
    chars = "0123456789" * 6 + " -.:/@ab" + "DEGBfe" + "\n"
    windows = [TEXT] + ["".join(rnd.choice(chars) for _ in range(rnd.randint(8, 40))) for _ in range(3000)]
    reported = skipped = 0
    for entity, rec in gated.items():
        for window in windows:
            passes = any(p.search(window) for p in r.gates[entity])
            found = rec.analyze(window, [entity], None)
            skipped += not passes
            reported += bool(found)
            assert passes or not found, (entity, window)
    assert reported > 100 and skipped > 10000


# Numbers phonenumbers' matcher reads that a narrower digit-run trigger missed:
# 4-digit German numbers, "~" and "x" as separators, an en dash (inside a range
# of its punctuation class), a lead of "+" and brackets several characters
# before the first digit.
TRICKY_PHONES = [
    "troff: -3.042 F 1.647\n(tioned in the",
    "patch (Bugzilla #1681) to CMakeLists",
    "abseil (0~20220623.0-2) unstable; urgency",
    "call 212\u2013555\u20131234 today",
    "call + ( 030 1234 5678 now",
    "ring 030x1234x5678 or 0301234",
]


@pytest.mark.parametrize("text", TRICKY_PHONES)
def test_phone_findings_match_presidio_on_tricky_separators(text):
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    cfg = PiiConfig()
    theirs = {(r.start, r.end) for region in cfg.phone_regions
              for r in PhoneRecognizer(supported_regions=(region,)).analyze(text, ["PHONE_NUMBER"])}
    ours = {(f.start, f.end) for f in Redactor(cfg).find(text) if f.entity == "PHONE_NUMBER"}
    assert theirs, "presidio finds a number here"
    assert all(any(a <= s and e <= b for a, b in ours) for s, e in theirs), (theirs, ours)


def test_remove_contained_equals_the_pairwise_rule():
    import random

    from tokenmill.etl.pii import Finding, remove_contained

    def pairwise(found):
        return [f for f in found if not any(
            g is not f and g.entity == f.entity and g.start <= f.start and f.end <= g.end
            and (g.score > f.score or (g.score == f.score and g.end - g.start > f.end - f.start)) for g in found)]

    rnd = random.Random(3)
    removed = 0
    for _ in range(2000):
        found = sorted({Finding(s, s + rnd.randint(1, 10), rnd.choice("AB"), rnd.choice([0.4, 0.5, 1.0]))
                        for s in (rnd.randint(0, 30) for _ in range(rnd.randint(0, 12)))})
        kept = remove_contained(found)
        assert kept == pairwise(found)
        removed += len(found) - len(kept)
    assert removed > 500


@pytest.mark.parametrize("text", ["log 2021-03-04 12:34 done", "x 1999-12-31 23:59 y", "at 20210304 12:59 ok",
                                  "call 030 1234567 12:30 ok"])
def test_timestamps_are_not_phone_numbers(text):
    # phonenumbers' matcher drops a date + hour followed by ":MM", reading 3
    # characters past the candidate: the window must hold them too.
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    cfg = PiiConfig()
    theirs = {(r.start, r.end) for region in cfg.phone_regions
              for r in PhoneRecognizer(supported_regions=(region,)).analyze(text, ["PHONE_NUMBER"])}
    ours = {(f.start, f.end) for f in Redactor(cfg).find(text) if f.entity == "PHONE_NUMBER"}
    assert ours == theirs


def test_region_whose_prefix_rule_writes_digits_is_not_pruned():
    # Jersey parses "057629" by rewriting it to "1534057629": no pattern of the
    # written digits can rule such numbers out.
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    window = ")0576-29"
    assert PhoneRecognizer(supported_regions=("JE",)).analyze(window, ["PHONE_NUMBER"])
    phones = dict(Redactor(PiiConfig(phone_regions=("GB", "JE"))).recognizers)["PHONE_NUMBER"]
    assert phones.regions_to_try(window) == ["JE"]
