"""Chat data side: MB/s per core of validate + clean + PII + template + mask + pack, and packing efficiency.

The conversations are generated here, deterministically (``--seed``):
support-ticket chats of 1-4 user/assistant turns, a third with a system
prompt, contents with e-mail addresses, phone numbers and order numbers for
PII redaction to find, lengths with a long tail; about 2% are invalid (no
assistant turn, an unknown role, an empty message) so validation has
rejects to count. A byte-level BPE (8192 ids, ChatML specials) is trained on
a sample of them; the template is the built-in ChatML.

Two measurements on the same records:

1. per core, in one Python process (CPU seconds, so other load on the
   machine does not count): the per-row work each Spark Python worker runs:
   parse + validate, normalize + PII on every message, template + tokenize +
   loss mask, best-fit-decreasing packing of the examples;
2. the chain under Spark (``local[N]``), as the fine-tuning stages chain it:
   records (Parquet) -> validate -> clean + PII per message -> template +
   mask -> pack into seq_len windows. Each step's output is cached and
   counted before the next reads it (a stage writes its table), so each
   step's wall time is its own; MB/s per core = record MB / total wall /
   cores. Wall time includes Spark's own work and other load on the
   machine (``uptime`` is printed).

Packing efficiency (Spark run): target and non-pad share of all window
tokens, packed vs one example per window (tokenmill.chat.pack.packing_stats).
No example is ever split or dropped by the packer.

llm-foundry's bin packing (``llmfoundry/data/packing.py``, BinPackCollator)
packs per batch at a chosen ``packing_ratio`` and reports ``padding`` (pad
share) and ``waste`` (tokens of examples discarded because they did not fit
the batch's bins); ``auto_packing_ratio`` picks the largest ratio whose
profiled waste is zero. Its code and tests were read; no published waste or
padding figure of its own was found, so none is compared here.

    python -m bench.bench_chat_data --mb 50 --cores 2 [--seq-len 2048] [--json FILE]
    python -m bench.bench_chat_data --mb 0.3 --per-core-mb 0.1          # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))  # train_fixture: test scaffolding

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
SYSTEM = ["You are a helpful support assistant for Acme Cloud. Answer briefly.",
          "You answer billing questions politely and never share account data.",
          "You are an internal IT helpdesk assistant."]
TOPICS = ["my invoice for order {n} is wrong", "I cannot log in since the update", "the VPN drops every hour",
          "my parcel {n} did not arrive", "how do I reset my password", "the export to CSV fails with error {n}",
          "can I change the plan of account {n}", "the mobile app crashes on start"]
FILLER = ["Thanks for the quick reply.", "I tried restarting twice.", "This is urgent for our team.",
          "It worked last week.", "Please call me back.", "I attached a screenshot earlier.",
          "We use the enterprise plan.", "The error shows up only on Mondays."]
ANSWERS = ["I am sorry about that. I have opened ticket {n} and our team will check it today.",
           "Please clear the cache, sign out and sign in again; if it still fails, reply here.",
           "Your plan can be changed under Settings > Billing; the change applies from the next cycle.",
           "I have resent the confirmation to your address; it can take up to ten minutes to arrive.",
           "The export fails when a column holds a line break. Remove it, or export as JSON instead.",
           "Step 1: open the app. Step 2: choose Account. Step 3: press Reset and follow the e-mail."]


# ----- data ---------------------------------------------------------------------------------

def contact(rng: random.Random) -> str:
    name = rng.choice(["ana", "li.wei", "j.smith", "omar", "kate.b", "noah"])
    if rng.random() < 0.5:
        return f"You can mail me at {name}{rng.randint(1, 999)}@example.com."
    return f"My phone is +1 415 555 {rng.randint(1000, 9999)}."


def user_turn(rng: random.Random) -> str:
    parts = [rng.choice(TOPICS).format(n=rng.randint(10000, 99999)).capitalize() + "."]
    parts += rng.choices(FILLER, k=int(rng.expovariate(1 / 3)))  # long tail of lengths
    if rng.random() < 0.4:
        parts.append(contact(rng))
    return " ".join(parts)


def assistant_turn(rng: random.Random) -> str:
    n = 1 + int(rng.expovariate(1 / 1.5))
    return " ".join(a.format(n=rng.randint(100000, 999999)) for a in rng.choices(ANSWERS, k=n))


def conversation(rng: random.Random) -> dict:
    messages = [{"role": "system", "content": rng.choice(SYSTEM)}] if rng.random() < 0.33 else []
    for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
        messages += [{"role": "user", "content": user_turn(rng)},
                     {"role": "assistant", "content": assistant_turn(rng)}]
    broken = rng.random()
    if broken < 0.007:
        messages = messages[:-1]  # no assistant turn at the end
    elif broken < 0.014:
        messages[-1]["role"] = "agent"  # unknown role
    elif broken < 0.02:
        messages[-1]["content"] = "  "  # empty content
    return {"messages": messages}


def generate_records(n_bytes: int, seed: int) -> list[str]:
    """JSON records until their UTF-8 size reaches n_bytes."""
    rng = random.Random(seed)
    records, size = [], 0
    while size < n_bytes:
        record = json.dumps(conversation(rng))
        records.append(record)
        size += len(record.encode("utf-8"))
    return records


def build_tokenizer(records: list[str]):
    from train_fixture import train_tokenizer

    texts = [m["content"] for r in records[:3000] for m in json.loads(r)["messages"]]
    return train_tokenizer(texts, 8192, SPECIALS)


def chatml():
    from tokenmill.chat.template import CHATML, ChatTemplate

    return ChatTemplate(CHATML, "chatml", (("eos_token", "<|im_end|>"), ("pad_token", "<|endoftext|>")))


# ----- 1. per core, one process -------------------------------------------------------------

def per_core(records: list[str], tok, seq_len: int) -> dict:
    """CPU seconds of each step's per-row work over the records."""
    import numpy as np

    from tokenmill.config.chat import ChatConfig
    from tokenmill.chat.hygiene import MESSAGE_PRESET
    from tokenmill.chat.mask import ChatEncoder
    from tokenmill.chat.pack import pack_group
    from tokenmill.chat.validate import Message, check_record
    from tokenmill.etl.clean import cleaner, normalize
    from tokenmill.config.etl import EtlConfig

    cfg, etl = ChatConfig(), EtlConfig()
    c = cleaner(etl)
    c.redactor.redact("warm up a@example.com")
    encoder = ChatEncoder(tok, chatml(), cfg, seq_len)
    n_bytes = sum(len(r.encode("utf-8")) for r in records)
    seconds = {}

    start = time.process_time()
    checked = [check_record(r, cfg) for r in records]
    valid = [k.messages for k in checked if k.reason is None]
    seconds["validate"] = time.process_time() - start

    start = time.process_time()
    cleaned = []
    for messages in valid:
        texts = [normalize(m.content, MESSAGE_PRESET, etl.fix_text) for m in messages]
        if all(texts):
            cleaned.append(tuple(Message(m.role, c.redactor.redact(t)[0]) for m, t in zip(messages, texts)))
    seconds["clean_pii"] = time.process_time() - start

    start = time.process_time()
    examples = [e for e in (encoder.encode(m).example for m in cleaned) if e is not None]
    seconds["template_mask"] = time.process_time() - start

    start = time.process_time()
    examples.sort(key=lambda e: -len(e.ids))
    windows = pack_group(0, [np.array(e.ids, np.int32) for e in examples],
                         [np.array(e.mask, np.int8) for e in examples], ["bench"] * len(examples), seq_len, 0)
    seconds["pack"] = time.process_time() - start

    total = sum(seconds.values())
    return {"mb": round(n_bytes / 1e6, 2), "records": len(records), "examples": len(examples),
            "windows": len(windows), "cpu_s": {k: round(v, 2) for k, v in seconds.items()},
            "mb_s": {k: round(n_bytes / 1e6 / v, 3) if v else None for k, v in seconds.items()},
            "total_cpu_s": round(total, 2), "total_mb_s_per_core": round(n_bytes / 1e6 / total, 3)}


# ----- 2. the chain under Spark ---------------------------------------------------------------

def write_records(records: list[str], path: str, n_files: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(path, exist_ok=True)
    step = -(-len(records) // n_files)
    for f in range(n_files):
        part = records[f * step:(f + 1) * step]
        ids = [f"c{f * step + i:09d}" for i in range(len(part))]
        table = pa.table({"id": ids, "source": ["tickets"] * len(part), "record": part})
        pq.write_table(table, os.path.join(path, f"part-{f:04d}.parquet"))


def timed(df) -> tuple[object, float]:
    """(df cached and materialized, wall seconds of that)."""
    start = time.time()
    df = df.cache()
    df.count()
    return df, time.time() - start


def spark_chain(records: list[str], tok, seq_len: int, cores: int, workdir: str) -> dict:
    from tokenmill.chat import mask, validate
    from tokenmill.config.chat import ChatConfig
    from tokenmill.chat.hygiene import clean_messages
    from tokenmill.chat.pack import pack_examples, packing_stats
    from tokenmill.config.etl import EtlConfig
    from tokenmill.spark import get_spark
    from tokenmill.config.tokenize import TokenizeConfig

    cfg, groups = ChatConfig(), TokenizeConfig().pack_groups  # the run config's defaults
    path = os.path.join(workdir, "records")
    write_records(records, path, n_files=max(4, 2 * cores))
    n_bytes = sum(len(r.encode("utf-8")) for r in records)
    spark = get_spark("bench-chat-data", cores=cores)
    spark.conf.set("spark.sql.shuffle.partitions", str(max(4, 2 * cores)))
    source, _ = timed(spark.read.parquet(path))  # reading is not part of the chain's figure
    wall = {}
    validated, wall["validate"] = timed(validate.validate(source, cfg))
    examples, rejects = validate.split_rejects(validated, "etl")
    cleaned, wall["clean_pii"] = timed(clean_messages(examples, EtlConfig()))
    kept = cleaned.where("reason is null").select("id", "source", "messages")
    encoded, wall["template_mask"] = timed(mask.encode_examples(kept, tok.to_str(), chatml(), cfg, seq_len))
    good, _ = mask.split_encoded(encoded, "tokenize")
    pad_id = tok.token_to_id("<|endoftext|>")
    windows, wall["pack"] = timed(pack_examples(good, seq_len, pad_id, groups=groups))
    stats = packing_stats(windows, seq_len)
    total = sum(wall.values())
    return {"cores": cores, "mb": round(n_bytes / 1e6, 2), "records": len(records),
            "rejected_validate": rejects.count(), "rejected_clean": cleaned.where("reason is not null").count(),
            "wall_s": {k: round(v, 2) for k, v in wall.items()}, "total_wall_s": round(total, 2),
            "mb_s": round(n_bytes / 1e6 / total, 3), "mb_s_per_core": round(n_bytes / 1e6 / total / cores, 3),
            "packing": stats.report()}


# ----- output ----------------------------------------------------------------------------------

def print_table(result: dict) -> None:
    pc, sp = result["per_core"], result.get("spark")
    print(f"{pc['mb']} MB of conversations per core ({pc['records']} records), seq_len {result['seq_len']}")
    print(f"{'step':<15}{'CPU s':>8}{'MB/s/core':>11}" + (f"{'Spark wall s':>14}" if sp else ""))
    for step in pc["cpu_s"]:
        line = f"{step:<15}{pc['cpu_s'][step]:>8.2f}{pc['mb_s'][step] or 0:>11.3f}"
        print(line + (f"{sp['wall_s'][step]:>14.2f}" if sp else ""))
    print(f"{'total':<15}{pc['total_cpu_s']:>8.2f}{pc['total_mb_s_per_core']:>11.3f}"
          + (f"{sp['total_wall_s']:>14.2f}" if sp else ""))
    if sp:
        print(f"Spark local[{sp['cores']}], {sp['mb']} MB: {sp['mb_s']:.3f} MB/s, {sp['mb_s_per_core']:.3f} MB/s per core")
        p = sp["packing"]
        print(f"packing: {p['examples']} examples into {p['windows']} windows "
              f"(one per window: {p['examples']})")
        print(f"{'':<16}{'target share':>13}{'non-pad share':>15}")
        for name in ("packed", "one_per_window"):
            print(f"{name:<16}{p[name]['target_share']:>13.3f}{p[name]['token_share']:>15.3f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=50.0, help="MB of generated conversations (JSON records)")
    p.add_argument("--per-core-mb", type=float, default=5.0, help="MB of them for the per-core measurement")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-spark", action="store_true")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)

    uptime = lambda: subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()  # noqa: E731
    records = generate_records(int(args.mb * 1e6), args.seed)
    tok = build_tokenizer(records)
    subset, size = [], 0
    for r in records:
        if size >= args.per_core_mb * 1e6:
            break
        subset.append(r)
        size += len(r.encode("utf-8"))
    result = {"seq_len": args.seq_len, "seed": args.seed, "uptime_before": uptime(),
              "per_core": per_core(subset, tok, args.seq_len)}
    if not args.skip_spark:
        workdir = tempfile.mkdtemp(prefix="tokenmill-bench-chat-")
        try:
            result["spark"] = spark_chain(records, tok, args.seq_len, args.cores, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    result["uptime_after"] = uptime()
    print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
