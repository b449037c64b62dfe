"""MDS shards of packed windows: read back sample by sample, counts in dataset.json, same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tokenmill.chat.pack import pack_examples
from tokenmill.chat.shards import SftShardSpec, write_shards
from tokenmill.shards.dataset_info import SFT_FORMAT

TOKENIZED = "id string, source string, tokens array<int>, loss_mask array<tinyint>"
SPEC = SftShardSpec(seq_len=12, dtype="uint16", vocab_size=100, eos_id=1, bos_id=None, pad_id=0,
                    tokenizer_sha256="ab" * 32, template_sha256="cd" * 32, seed=3, val_fraction=0.2,
                    train_parts=2, val_parts=1, compression=None)


def _examples(n: int):
    rng = np.random.default_rng(7)
    rows = []
    for i in range(n):
        length = int(rng.integers(2, 8))
        rows.append((f"e{i:02d}", "s", [int(t) for t in rng.integers(3, 100, length - 1)] + [1],
                     [0] * (length - 2) + [1, 1]))
    return rows


def _read_split(root: Path, split: str) -> list[dict]:
    from streaming.base.format import reader_from_json

    index = json.loads((root / split / "index.json").read_text())
    out = []
    for shard in index["shards"]:
        reader = reader_from_json(str(root / split), None, shard)
        out += [reader.get_item(i) for i in range(shard["samples"])]
    return out


def test_windows_round_trip_and_dataset_json_counts(spark, tmp_path):
    rows = _examples(40)
    windows = pack_examples(spark.createDataFrame(rows, TOKENIZED), seq_len=12, pad_id=0, groups=2)
    expected = {r.seq_id: r for r in windows.collect()}
    dataset = write_shards(windows, SPEC, str(tmp_path / "sft"))
    assert json.loads((tmp_path / "sft" / "dataset.json").read_text()) == dataset
    samples = {s: _read_split(tmp_path / "sft", s) for s in ("train", "val")}
    got = {int(x["seq_id"]): x for split in samples.values() for x in split}
    assert sorted(got) == sorted(expected)
    for sid, x in got.items():
        assert (x["tokens"].dtype, x["loss_mask"].dtype, x["doc_ids"].dtype) == (np.uint16, np.uint8, np.uint16)
        assert x["tokens"].tolist() == expected[sid].tokens
        assert x["loss_mask"].tolist() == expected[sid].loss_mask
        assert x["doc_ids"].tolist() == expected[sid].doc_ids
    n_win, n_tokens = len(expected), sum(len(t) for _, _, t, _ in rows)
    n_val = round(n_win * 0.2)
    assert (dataset["format"], dataset["seq_len"], dataset["pad_id"]) == (SFT_FORMAT, 12, 0)
    assert dataset["columns"] == {"tokens": "ndarray:uint16:12", "loss_mask": "ndarray:uint8:12",
                                  "doc_ids": "ndarray:uint16:12", "seq_id": "int64"}
    s = dataset["splits"]
    assert (s["val"]["sequences"], s["train"]["sequences"]) == (n_val, n_win - n_val) == (
        len(samples["val"]), len(samples["train"]))
    assert s["train"]["examples"] + s["val"]["examples"] == 40
    assert s["train"]["target_tokens"] + s["val"]["target_tokens"] == 80
    assert s["train"]["pad_tokens"] + s["val"]["pad_tokens"] == n_win * 12 - n_tokens
    for split in ("train", "val"):  # per split: targets and pads match the samples read back
        assert s[split]["target_tokens"] == sum(int(x["loss_mask"].sum()) for x in samples[split])
        assert s[split]["pad_tokens"] == sum(int((x["doc_ids"] == 0).sum()) for x in samples[split])


def test_same_shard_bytes_for_any_input_order_and_partitioning(spark, tmp_path):
    rows = _examples(30)

    def write(data, parts, name):
        df = spark.createDataFrame(data, TOKENIZED).repartition(parts)
        write_shards(pack_examples(df, seq_len=12, pad_id=0, groups=2), SPEC, str(tmp_path / name))
        root = tmp_path / name
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a, b = write(rows, 1, "a"), write(rows[::-1], 3, "b")
    assert a == b and any(k.endswith(".mds") for k in a)
