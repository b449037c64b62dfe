"""Cleaning and PII redaction per message, through the etl cleaner and redactor."""

from __future__ import annotations

from tokenmill.chat.hygiene import assemble_messages, clean_message_rows, clean_messages, explode_messages
from tokenmill.chat.validate import EMPTY_CONTENT, EXAMPLES_SCHEMA
from tokenmill.config.etl import EtlConfig, PiiConfig

CFG = EtlConfig(pii=PiiConfig(entities=("EMAIL_ADDRESS",)))


def _examples(spark):
    rows = [
        ("a", "s", [("system", "Be brief."), ("user", "Mail me at jo@example.com  please"),
                    ("assistant", "Done, caf\u00c3\u00a9 \u00e2\u0080\u0094 ok:  \n\n\n\n    x = 1")]),
        ("b", "s", [("user", "hi"), ("assistant", "\x00\x01")]),  # the answer is only control chars
        ("c", "t", [("user", "Yes?"), ("assistant", "No.")]),
    ]
    return spark.createDataFrame(rows, EXAMPLES_SCHEMA)


def test_explode_gives_etl_document_rows_with_turns(spark):
    rows = explode_messages(_examples(spark)).where("id = 'c'").collect()
    assert [tuple(r) for r in rows] == [
        ("c", "t", "Yes?", '{"role":"user","turn":0}'), ("c", "t", "No.", '{"role":"assistant","turn":1}')]


def test_clean_messages_keeps_roles_and_rejects_emptied_conversations(spark):
    out = {r.id: r for r in clean_messages(_examples(spark), CFG).collect()}
    assert [(m.role, m.content) for m in out["a"].messages] == [
        ("system", "Be brief."), ("user", "Mail me at <EMAIL>  please"),
        ("assistant", "Done, caf\u00e9 \u2014 ok:\n\n    x = 1")]  # mojibake fixed, indentation kept
    assert out["a"].reason is None and out["c"].reason is None
    assert [(m.role, m.content) for m in out["c"].messages] == [("user", "Yes?"), ("assistant", "No.")]
    assert (out["b"].messages, out["b"].reason) == (None, EMPTY_CONTENT)
    assert len(out) == 3


def test_quality_filters_on_use_the_etl_rules_per_message(spark):
    # Web-prose rules (50 words minimum) drop every short chat message; the earliest turn's reason wins.
    # Turns with different reasons, in both orders: "b" is too_short then empty, "d" empty then too_short.
    rows = [("d", "t", [("user", "\x00"), ("assistant", "No."), ("user", "")])]
    examples = _examples(spark).unionByName(spark.createDataFrame(rows, EXAMPLES_SCHEMA))
    out = {r.id: r.reason for r in clean_messages(examples, CFG, quality_filters=True).collect()}
    assert out == {"a": "too_short", "b": "too_short", "c": "too_short", "d": "empty"}


def test_pii_counts_stay_per_message(spark):
    cleaned = clean_message_rows(explode_messages(_examples(spark)), CFG)
    pii = [(r.id, r.meta, dict(r.pii)) for r in cleaned.where("pii is not null").collect()]
    assert pii == [("a", '{"role":"user","turn":1}', {"EMAIL_ADDRESS": 1})]
    assert assemble_messages(cleaned).count() == 3
