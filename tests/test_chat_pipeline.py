"""Chat and instruction records in the pipeline's run config and etl stage.

The literal rows here (every reject case, valid multi-turn and system-prompt
rows) also go through all the stages in tests/test_finetune.py, which checks
their rejects by reason there."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
from chat_tokenizers import LLAMA3, bpe, model_dir

from tokenmill import tables
from tokenmill.config import RunConfig, from_dict
from tokenmill.pipeline import run_stages

SEQ_LEN = 64
U, A, S = "user", "assistant", "system"


def turn(role, content):
    return {"role": role, "content": content}


VALID = [
    {"id": "ok-1", "messages": [turn(U, "Where is my parcel? Mail me at ann@example.com"), turn(A, "It ships today.")]},
    {"id": "ok-2", "messages": [turn(S, "Answer briefly."), turn(U, "Capital of France?"), turn(A, "Paris.")]},
    {"id": "ok-3", "messages": [turn(U, "Hello there"), turn(A, "Hello! How can I help?"),
                                turn(U, "Reset my password"), turn(A, "Use the link on the login page.")]},
    {"id": "ok-4", "messages": [turn(U, "Is the old mill open on Sunday?"), turn(A, "Yes, from ten to four.")]},
    {"id": "ok-5", "messages": [turn(U, "Which river runs past the village?"), turn(A, "The Wensum river.")]},
]
INVALID = {  # id -> (row, expected reason, stage)
    "bad-list": ({"messages": "hi"}, "messages_not_list"),
    "bad-empty": ({"messages": []}, "no_messages"),
    "bad-object": ({"messages": ["hello"]}, "message_not_object"),
    "bad-role": ({"messages": [turn("bot", "x"), turn(A, "y")]}, "unknown_role"),
    "bad-content": ({"messages": [turn(U, 5), turn(A, "y")]}, "content_not_string"),
    "bad-blank": ({"messages": [turn(U, "   "), turn(A, "y")]}, "empty_content"),
    "bad-system": ({"messages": [turn(U, "x"), turn(S, "be nice"), turn(A, "y")]}, "system_not_first"),
    "bad-noasst": ({"messages": [turn(U, "hi")]}, "no_assistant_turn"),
    "bad-order": ({"messages": [turn(U, "a"), turn(U, "b"), turn(A, "c")]}, "not_alternating"),
    "bad-last": ({"messages": [turn(U, "a"), turn(A, "b"), turn(U, "c")]}, "last_not_assistant"),
    "bad-emptied": ({"messages": [turn(U, "x"), turn(A, "\x00")]}, "empty_content"),  # empty once cleaned
}
EXPECTED = Counter({
    ("etl", "malformed_json"): 1, ("etl", "not_a_record_file"): 1, ("etl", "duplicate_id"): 1,
    **Counter(("etl", reason) for _, reason in INVALID.values()),
    ("dedup", "duplicate_exact"): 1, ("tokenize", "longer_than_seq_len"): 1,
})


def write_inputs(root: Path) -> tuple[Path, int]:
    """A folder of chat records (JSONL, .jsonl.gz, a stray text file); returns it and the row count."""
    root.mkdir(parents=True)
    rows = VALID + [{"id": i, **row} for i, (row, _) in INVALID.items()]
    rows.append({"id": "dup-conv", "messages": VALID[3]["messages"]})  # same conversation, new id
    rows.append({"id": "ok-1", "messages": [turn(U, "same id again"), turn(A, "yes")]})  # id taken
    rows.append({"id": "too-long", "messages": [turn(U, "The river runs " * 60), turn(A, "ok")]})
    lines = [json.dumps(r) for r in rows] + ["{not json"]
    (root / "tickets.jsonl").write_text("\n".join(lines[:10]) + "\n")
    with gzip.open(root / "more.jsonl.gz", "wt") as f:
        f.write("\n".join(lines[10:]) + "\n")
    (root / "notes.txt").write_text("not a record\n")
    return root, len(lines) + 1


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    config = {"chat_template": LLAMA3, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    return model_dir(tmp_path_factory.mktemp("model"), bpe(), config)


def chat_config(inputs: Path, out: Path, model: Path, **chat) -> RunConfig:
    return from_dict(RunConfig, {
        "inputs": [{"path": str(inputs)}], "output": str(out),
        "etl": {"pii": {"entities": ["EMAIL_ADDRESS"]}},
        "tokenize": {"tokenizer": str(model), "seq_len": SEQ_LEN, "pack_groups": 2},
        "shards": {"seed": 1, "partitions": 1, "val_fraction": 0.2},
        "chat": chat,
    })


def test_the_chat_section_reruns_only_the_stages_it_changes():
    from tokenmill.pipeline import stage_config_hash

    base = chat_config(Path("raw"), Path("out"), Path("model"))
    mask = chat_config(Path("raw"), Path("out"), Path("model"), train_on="last")
    task = chat_config(Path("raw"), Path("out"), Path("model"), task="instruction")
    plain = from_dict(RunConfig, {"inputs": [{"path": "raw"}], "output": "out"})
    assert stage_config_hash(base, "etl") == stage_config_hash(mask, "etl")
    assert stage_config_hash(base, "tokenize") != stage_config_hash(mask, "tokenize")
    assert stage_config_hash(base, "etl") != stage_config_hash(task, "etl")
    assert stage_config_hash(base, "dedup") == stage_config_hash(plain, "dedup")
    assert stage_config_hash(base, "etl") != stage_config_hash(plain, "etl")


def test_the_runner_chooses_the_chat_stages():
    """A chat section runs the chat variant of etl, tokenize and shards; dedup and plain runs run the base stages."""
    from tokenmill.chat import etl_job, shards_job, tokenize_job
    from tokenmill.dedup import job as dedup_job
    from tokenmill.pipeline import stage_spec
    from tokenmill.tokenize import job as base_tokenize

    chat = chat_config(Path("raw"), Path("out"), Path("model"))
    plain = from_dict(RunConfig, {"inputs": [{"path": "raw"}], "output": "out"})
    assert [stage_spec(s, chat) for s in ("etl", "dedup", "tokenize", "shards")] == [
        etl_job.STAGE_SPEC, dedup_job.STAGE_SPEC, tokenize_job.STAGE_SPEC, shards_job.STAGE_SPEC]
    assert stage_spec("tokenize", plain) is base_tokenize.STAGE_SPEC


def test_instruction_rows_from_parquet(spark, model, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = tmp_path / "raw"
    raw.mkdir()
    pq.write_table(pa.table({
        "id": ["i1", "i2", "i3", "i4"],
        "prompt": ["Capital of France?", "Say hello", "", "Name a river"],
        "response": ["Paris.", None, "x", None],
        "completion": [None, "Hello!", None, None],
    }), raw / "pairs.parquet")
    cfg = chat_config(raw, tmp_path / "out", model, task="instruction")
    stages = run_stages(spark, cfg, ["etl", "dedup", "tokenize", "shards"]).stages
    assert (stages["etl"].rows_in, stages["etl"].rows_out) == (4, 2)
    assert stages["etl"].dropped == {"empty_prompt": 1, "empty_response": 1}
    clean = {r.id: r for r in tables.read(spark, str(tmp_path / "out" / "tables" / "clean")).collect()}
    assert [(m.role, m.content) for m in clean["i2"].messages] == [("prompt", "Say hello"), ("response", "Hello!")]
    assert stages["tokenize"].rows_out == 2 and stages["tokenize"].extra["template_name"] == "none"
    dataset = json.loads((tmp_path / "out" / "shards" / "dataset.json").read_text())
    assert dataset["template_sha256"] is None  # prompt + response + EOS, no template
    assert sum(s["examples"] for s in dataset["splits"].values()) == 2
