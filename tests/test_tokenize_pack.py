"""Packing and encoding on literal inputs (no Spark)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from tokenmill.tokenize.encode import encode_texts, worker_tokenizer
from tokenmill.tokenize.pack import GroupPacker, make_packer, seq_id, total_stats
from tokenmill.tokenize.tokenizer import token_dtype, train_bpe
from tokenmill.config.tokenize import TokenizeConfig
from tokenmill.errors import ConfigError


def _feed(packer, docs, sources):
    values = np.concatenate([np.array(d, dtype=np.int32) for d in docs])
    return packer.add(values, np.array([len(d) for d in docs]), sources)


def test_group_packer_cuts_exact_windows_and_counts_the_tail():
    p = GroupPacker(group=3, seq_len=4)
    # docs (EOS = 0): a=[1,2,0]  b=[3,4,5,6,7,0]  c=[8,0]  d=[9,0]
    out = _feed(p, [[1, 2, 0], [3, 4, 5, 6, 7, 0]], ["x", "y"])
    out += _feed(p, [[8, 0], [9, 0]], ["z", "w"])
    assert [(i, t.tolist(), s) for i, t, s in out] == [
        (seq_id(3, 0), [1, 2, 0, 3], "x"),
        (seq_id(3, 1), [4, 5, 6, 7], "y"),  # b spans two sequences; source is the first token's doc
        (seq_id(3, 2), [0, 8, 0, 9], "y"),
    ]
    assert seq_id(3, 2) == (3 << 32) + 2
    # 13 tokens: 3 sequences + 1 dropped; d is cut by the tail, a b c are complete.
    assert p.stats() == {"group": 3, "docs": 4, "docs_complete": 3, "docs_partial": 1, "docs_tail": 0,
                         "tokens": 13, "sequences": 3, "tokens_dropped": 1}


def test_group_packer_docs_entirely_in_tail_and_long_docs():
    p = GroupPacker(group=0, seq_len=3)
    out = _feed(p, [[5, 5, 5, 5, 5, 5, 0]], ["a"])  # 7 tokens: two windows, its EOS left over
    out += _feed(p, [[0]], ["b"])  # an empty document is just its EOS, all in the tail
    assert [t.tolist() for _, t, _ in out] == [[5, 5, 5], [5, 5, 5]]
    assert p.stats()["docs_partial"] == 1 and p.stats()["docs_tail"] == 1
    assert p.stats()["docs_complete"] == 0 and p.stats()["tokens_dropped"] == 2


def test_packer_over_arrow_batches_switches_groups():
    pack = make_packer(seq_len=2)
    tokens = pa.array([[1, 0], [2, 2, 0], [3, 0], [4, 0]], pa.list_(pa.int32()))
    batch = pa.RecordBatch.from_arrays(
        [pa.array([0, 0, 1, 1], pa.int32()), pa.array(["a", "b", "c", "d"]), pa.array(["s", "t", "u", "v"]), tokens],
        names=["group", "id", "source", "tokens"])
    # The same group continues across a batch boundary.
    rows = [r for b in pack(iter([batch.slice(0, 1), batch.slice(1, 3)])) for r in b.to_pylist()]
    seqs = [(r["seq_id"], r["tokens"], r["source"]) for r in rows if r["stats"] is None]
    reported = [json.loads(r["stats"]) for r in rows if r["stats"] is not None]
    assert all(r["seq_id"] is None and r["tokens"] is None for r in rows if r["stats"] is not None)
    assert seqs == [(0, [1, 0], "s"), (1, [2, 2], "t"), (1 << 32, [3, 0], "u"), ((1 << 32) + 1, [4, 0], "v")]
    assert [s["group"] for s in reported] == [0, 1]  # each group reported once, when finished
    totals = total_stats(reported, seq_len=2)
    assert totals["tokens"] == 9 and totals["tokens_in_sequences"] == 8 and totals["tokens_dropped"] == 1
    assert (totals["docs_complete"], totals["docs_partial"], totals["docs_tail"]) == (3, 1, 0)


def test_encode_appends_eos_and_optional_bos_and_ignores_special_text():
    cfg = TokenizeConfig(vocab_size=300, special_tokens=("<eos>", "<bos>"), eos_token="<eos>")
    tok = train_bpe(["hello world " * 20, "héllo wörld ✓ 漢字 " * 5], cfg)
    tok = worker_tokenizer(tok.to_str())
    eos, bos = tok.token_to_id("<eos>"), tok.token_to_id("<bos>")
    texts = ["hello", "", "a <eos> b"]
    plain = encode_texts(tok, texts, eos, None).to_pylist()
    assert [t[-1] for t in plain] == [eos, eos, eos]
    assert plain[1] == [eos]
    assert [t[:-1] for t in plain] == [tok.encode(t, add_special_tokens=False).ids for t in texts]
    # A special-token string inside text is plain text: the only EOS is the appended one.
    assert plain[2].count(eos) == 1
    assert tok.decode(plain[2][:-1]) == "a <eos> b"
    with_bos = encode_texts(tok, texts, eos, bos).to_pylist()
    assert with_bos[0] == [bos] + plain[0]


def test_dtype_follows_vocab_size_and_config_checks():
    assert token_dtype(65536) == "uint16" and token_dtype(65537) == "uint32"
    with pytest.raises(ConfigError, match="eos_token"):
        TokenizeConfig(eos_token="<nope>")
    with pytest.raises(ConfigError, match="seq_len"):
        TokenizeConfig(seq_len=1)


def test_model_folder_names_eos_and_bos(tmp_path):
    """tokenize.tokenizer: a model folder; "auto" EOS/BOS come from its own files."""
    import json

    from tokenizers import processors

    from tokenmill.errors import UserError
    from tokenmill.tokenize.tokenizer import describe, tokenizer_file

    cfg = TokenizeConfig(vocab_size=300, special_tokens=("<s>", "</s>", "<|im_end|>"), eos_token="</s>")
    tok = train_bpe(["hello world " * 20], cfg)
    folder = tmp_path / "model"
    folder.mkdir()

    def info(**overrides):
        tok.save(str(folder / "tokenizer.json"))
        return describe(tokenizer_file(folder), TokenizeConfig(tokenizer=str(folder), **overrides))

    # Qwen-style: EOS named in tokenizer_config.json, no BOS.
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "<|im_end|>"}, "bos_token": None}))
    assert (info().eos_id, info().bos_id) == (tok.token_to_id("<|im_end|>"), None)
    # Llama-style: the tokenizer puts <s> in front by itself, so documents get it too.
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>", "bos_token": "<s>"}))
    assert info().bos_id is None  # named, but this tokenizer does not add it
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    assert (info().eos_id, info().bos_id) == (tok.token_to_id("</s>"), tok.token_to_id("<s>"))
    assert info(bos_token=None).bos_id is None  # the config still decides when it says so
    # Only generation_config.json: its (first) eos_token_id.
    (folder / "tokenizer_config.json").unlink()
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [tok.token_to_id("<|im_end|>"), 5]}))
    assert info().eos_id == tok.token_to_id("<|im_end|>")
    (folder / "generation_config.json").unlink()
    with pytest.raises(UserError, match="names an EOS token; set tokenize.eos_token"):
        info()
