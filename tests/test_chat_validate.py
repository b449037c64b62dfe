"""Chat config and row validation: every reject reason on literal rows, and the Spark transform."""

from __future__ import annotations

import json

import pytest

from tokenmill.chat import validate as v
from tokenmill.config.chat import ChatConfig
from tokenmill.chat.validate import Message, check_record, check_row, dedup_text
from tokenmill.config import from_dict
from tokenmill.errors import ConfigError

CHAT = ChatConfig()
INSTRUCTION = ChatConfig(task="instruction")


def sys_(c):
    return {"role": "system", "content": c}


def user(c):
    return {"role": "user", "content": c}


def bot(c):
    return {"role": "assistant", "content": c}


# (id, row, expected reason): every reject case, then valid rows.
CHAT_ROWS = [
    ("c01", {"messages": "hello"}, v.MESSAGES_NOT_LIST),
    ("c02", {"text": "no messages field"}, v.NO_MESSAGES),
    ("c03", {"messages": []}, v.NO_MESSAGES),
    ("c04", {"messages": ["hi", bot("x")]}, v.MESSAGE_NOT_OBJECT),
    ("c05", {"messages": [{"role": "tool", "content": "x"}, bot("y")]}, v.UNKNOWN_ROLE),
    ("c06", {"messages": [{"content": "no role"}, bot("y")]}, v.UNKNOWN_ROLE),
    ("c07", {"messages": [user(["a", "list"]), bot("y")]}, v.CONTENT_NOT_STRING),
    ("c08", {"messages": [user(None), bot("y")]}, v.EMPTY_CONTENT),
    ("c09", {"messages": [user("hi"), bot("")]}, v.EMPTY_CONTENT),
    ("c10", {"messages": [user(" \n\t"), bot("y")]}, v.EMPTY_CONTENT),
    ("c11", {"messages": [user("hi"), sys_("be kind"), bot("y")]}, v.SYSTEM_NOT_FIRST),
    ("c12", {"messages": [sys_("be kind"), sys_("again"), user("hi"), bot("y")]}, v.SYSTEM_NOT_FIRST),
    ("c13", {"messages": [sys_("be kind"), user("hi")]}, v.NO_ASSISTANT_TURN),
    ("c14", {"messages": [user("hi"), user("hello?"), bot("y")]}, v.NOT_ALTERNATING),
    ("c15", {"messages": [bot("I start"), user("hi"), bot("y")]}, v.NOT_ALTERNATING),
    ("c16", {"messages": [user("hi"), bot("y"), bot("y again")]}, v.NOT_ALTERNATING),
    ("c17", {"messages": [user("hi"), bot("y"), user("and?")]}, v.LAST_NOT_ASSISTANT),
    ("c18", {"messages": [user("What is 2+2?"), bot("4")]}, None),
    ("c19", {"messages": [sys_("Answer briefly."), user("Hi"), bot("Hello!"), user("Bye"), bot("Bye!")]}, None),
    ("c20", {"messages": [user("Name a colour"), bot("Blue"), user("Another"), bot("Red")], "tag": 3}, None),
]

INSTRUCTION_ROWS = [
    ("i1", {"prompt": "Translate: chat", "response": "cat"}, None),
    ("i2", {"prompt": "Sum 1 2", "completion": "3"}, None),
    ("i3", {"response": "orphan"}, v.EMPTY_PROMPT),
    ("i4", {"prompt": "  ", "response": "x"}, v.EMPTY_PROMPT),
    ("i5", {"prompt": 7, "response": "x"}, v.PROMPT_NOT_STRING),
    ("i6", {"prompt": "p"}, v.EMPTY_RESPONSE),
    ("i7", {"prompt": "p", "response": ""}, v.EMPTY_RESPONSE),
    ("i8", {"prompt": "p", "response": {"text": "x"}}, v.RESPONSE_NOT_STRING),
]


@pytest.mark.parametrize("rid,row,reason", CHAT_ROWS)
def test_each_chat_row_gets_its_reason(rid, row, reason):
    checked = check_row(row, CHAT)
    assert checked.reason == reason
    assert (checked.messages is None) == (reason in (v.MESSAGES_NOT_LIST, v.NO_MESSAGES, v.MESSAGE_NOT_OBJECT,
                                                     v.UNKNOWN_ROLE, v.CONTENT_NOT_STRING, v.EMPTY_CONTENT))


# A missing or null field is "no" / "empty"; only a value of another type is "not a list / string".
MISSING_OR_WRONG_TYPE = [
    ('{"text": 5}', v.NO_MESSAGES),
    ('{"messages": null}', v.NO_MESSAGES),
    ('{"messages": []}', v.NO_MESSAGES),
    ('{"messages": {}}', v.MESSAGES_NOT_LIST),
    ('{"messages": 5}', v.MESSAGES_NOT_LIST),
    ('{"messages": [{"role": "user"}, {"role": "assistant", "content": "y"}]}', v.EMPTY_CONTENT),
    ('{"messages": [{"role": "user", "content": null}, {"role": "assistant", "content": "y"}]}', v.EMPTY_CONTENT),
    ('{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "y"}]}', v.CONTENT_NOT_STRING),
    ('{"messages": [{"role": "user", "content": {}}, {"role": "assistant", "content": "y"}]}', v.CONTENT_NOT_STRING),
    ('{"messages": [{"content": "x"}, {"role": "assistant", "content": "y"}]}', v.UNKNOWN_ROLE),
]


@pytest.mark.parametrize("record,reason", MISSING_OR_WRONG_TYPE)
def test_a_missing_field_is_not_called_a_wrong_type(record, reason):
    assert check_record(record, CHAT).reason == reason


@pytest.mark.parametrize("rid,row,reason", INSTRUCTION_ROWS)
def test_each_instruction_row_gets_its_reason(rid, row, reason):
    assert check_row(row, INSTRUCTION).reason == reason


def test_valid_rows_become_messages():
    assert check_row(CHAT_ROWS[18][1], CHAT).messages == (
        Message("system", "Answer briefly."), Message("user", "Hi"), Message("assistant", "Hello!"),
        Message("user", "Bye"), Message("assistant", "Bye!"))
    assert check_row({"prompt": "Sum 1 2", "completion": "3"}, INSTRUCTION).messages == (
        Message("prompt", "Sum 1 2"), Message("response", "3"))
    # response wins over completion when both are there
    assert check_row({"prompt": "p", "response": "r", "completion": "c"}, INSTRUCTION).messages[1].content == "r"


def test_field_names_are_configurable():
    cfg = ChatConfig(messages_field="conversation", role_field="from", content_field="value")
    row = {"conversation": [{"from": "user", "value": "hi"}, {"from": "assistant", "value": "yo"}]}
    assert check_row(row, cfg).messages == (Message("user", "hi"), Message("assistant", "yo"))
    cfg = ChatConfig(task="instruction", prompt_field="question", response_field="answer")
    assert check_row({"question": "q", "answer": "a"}, cfg).reason is None


def test_records_that_are_not_json_objects():
    assert check_record("{not json", CHAT).reason == v.MALFORMED_RECORD
    assert check_record("[1, 2]", CHAT).reason == v.MALFORMED_RECORD
    assert check_record(None, CHAT).reason == v.MALFORMED_RECORD


def test_dedup_text_joins_contents_without_system_by_default():
    msgs = check_row(CHAT_ROWS[18][1], CHAT).messages
    assert dedup_text(msgs) == "Hi\n\nHello!\n\nBye\n\nBye!"
    assert dedup_text(msgs, include_system=True) == "Answer briefly.\n\nHi\n\nHello!\n\nBye\n\nBye!"
    assert dedup_text([("user", "a"), ("assistant", "b")]) == "a\n\nb"


def test_config_checks():
    assert from_dict(ChatConfig, {"train_on": "last", "template": "chatml"}).train_on == "last"
    with pytest.raises(ConfigError, match="^train_on: must be one of"):
        from_dict(ChatConfig, {"train_on": "everything"})
    # The window length and packing groups are the tokenize section's, for every kind of data.
    with pytest.raises(ConfigError, match="^chat.seq_len: this setting moved; set tokenize.seq_len instead$"):
        from_dict(ChatConfig, {"seq_len": 512}, "chat")
    with pytest.raises(ConfigError, match="^pack_groups: this setting moved; set tokenize.pack_groups instead$"):
        from_dict(ChatConfig, {"pack_groups": 2})
    with pytest.raises(ConfigError, match="^too_long: instruction rows have no turns"):
        ChatConfig(task="instruction", too_long="truncate")
    with pytest.raises(ConfigError, match="^messages_field: must name a field"):
        ChatConfig(messages_field="")
    with pytest.raises(ConfigError, match="^template: must be one of 'auto', 'chatml'"):
        from_dict(ChatConfig, {"template": "llama"})


def _records(spark, rows):
    data = [(rid, "support", json.dumps(row)) for rid, row, _ in rows] + [("bad", "support", "{oops")]
    return spark.createDataFrame(data, "id string, source string, record string")


def test_spark_validate_splits_kept_and_rejects(spark):
    from collections import Counter

    records = _records(spark, CHAT_ROWS)
    kept, rejects = v.split_rejects(v.validate(records, CHAT), stage="etl")
    rej = rejects.collect()
    assert rejects.columns == ["id", "source", "stage", "reason", "sample"]
    expected = {rid: reason for rid, _, reason in CHAT_ROWS if reason} | {"bad": v.MALFORMED_RECORD}
    assert {r.id: r.reason for r in rej} == expected
    assert Counter(r.reason for r in rej) == Counter(expected.values())
    assert {r.stage for r in rej} == {"etl"} and {r.source for r in rej} == {"support"}
    assert next(r.sample for r in rej if r.id == "bad") == "{oops"
    kept_rows = sorted(kept.collect())
    assert [r.id for r in kept_rows] == ["c18", "c19", "c20"]
    assert len(kept_rows) + len(rej) == records.count()
    assert [(m.role, m.content) for m in kept_rows[0].messages] == [("user", "What is 2+2?"), ("assistant", "4")]


def test_spark_instruction_rows_and_table_records(spark):
    df = spark.createDataFrame([("i1", "Translate: chat", "cat"), ("i2", "", "x")],
                               "id string, prompt string, response string")
    records = v.records_from_table(df, source="tickets")
    kept, rejects = v.split_rejects(v.validate(records, INSTRUCTION), stage="etl")
    assert [(r.id, r.source, [(m.role, m.content) for m in r.messages]) for r in kept.collect()] == [
        ("i1", "tickets", [("prompt", "Translate: chat"), ("response", "cat")])]
    assert [(r.id, r.reason) for r in rejects.collect()] == [("i2", v.EMPTY_PROMPT)]


def test_spark_dedup_text_column(spark):
    records = _records(spark, CHAT_ROWS[18:20])
    kept, _ = v.split_rejects(v.validate(records, CHAT), stage="etl")
    rows = sorted(v.with_dedup_text(kept, CHAT).select("id", "text").collect())
    assert [tuple(r) for r in rows] == [("c19", "Hi\n\nHello!\n\nBye\n\nBye!"),
                                        ("c20", "Name a colour\n\nBlue\n\nAnother\n\nRed")]
    rows = v.with_dedup_text(kept, ChatConfig(dedup_system=True)).where("id = 'c19'").first()
    assert rows.text == "Answer briefly.\n\nHi\n\nHello!\n\nBye\n\nBye!"
