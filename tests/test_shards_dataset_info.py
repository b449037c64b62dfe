"""dataset.json: the exact bytes each format writes, read back, and the reader's errors."""

from __future__ import annotations

import pytest

from tokenmill.errors import UserError
from tokenmill.shards.dataset_info import FILE, SFT_FORMAT, TEXT_FORMAT, DatasetInfo, format_of

TEXT = DatasetInfo(
    format=TEXT_FORMAT, dtype="uint16", seq_len=32, vocab_size=320, eos_id=0, bos_id=None,
    tokenizer_sha256="9e" * 32,
    splits={"train": {"sequences": 386, "tokens": 12352, "shards": 2},
            "val": {"sequences": 20, "tokens": 640, "shards": 1}},
)
TEXT_BYTES = """{
  "format": "tokenmill-mds-v1",
  "column": "tokens",
  "dtype": "uint16",
  "seq_len": 32,
  "vocab_size": 320,
  "eos_id": 0,
  "bos_id": null,
  "tokenizer_sha256": "9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e9e",
  "splits": {
    "train": {
      "sequences": 386,
      "tokens": 12352,
      "shards": 2
    },
    "val": {
      "sequences": 20,
      "tokens": 640,
      "shards": 1
    }
  }
}
"""

SFT = DatasetInfo(
    format=SFT_FORMAT, dtype="uint16", seq_len=12, vocab_size=100, eos_id=1, bos_id=None,
    tokenizer_sha256="ab" * 32, template_sha256=None, pad_id=0,
    columns={"tokens": "ndarray:uint16:12", "loss_mask": "ndarray:uint8:12", "doc_ids": "ndarray:uint16:12",
             "seq_id": "int64"},
    splits={"train": {"sequences": 14, "examples": 33, "target_tokens": 66, "pad_tokens": 10, "tokens": 168,
                      "shards": 2, "bytes": 1580},
            "val": {"sequences": 3, "examples": 7, "target_tokens": 14, "pad_tokens": 4, "tokens": 36,
                    "shards": 1, "bytes": 502}},
)
SFT_BYTES = """{
  "format": "tokenmill-mds-sft-v1",
  "columns": {
    "tokens": "ndarray:uint16:12",
    "loss_mask": "ndarray:uint8:12",
    "doc_ids": "ndarray:uint16:12",
    "seq_id": "int64"
  },
  "column": "tokens",
  "dtype": "uint16",
  "seq_len": 12,
  "vocab_size": 100,
  "eos_id": 1,
  "bos_id": null,
  "pad_id": 0,
  "tokenizer_sha256": "abababababababababababababababababababababababababababababababab",
  "template_sha256": null,
  "splits": {
    "train": {
      "sequences": 14,
      "examples": 33,
      "target_tokens": 66,
      "pad_tokens": 10,
      "tokens": 168,
      "shards": 2,
      "bytes": 1580
    },
    "val": {
      "sequences": 3,
      "examples": 7,
      "target_tokens": 14,
      "pad_tokens": 4,
      "tokens": 36,
      "shards": 1,
      "bytes": 502
    }
  }
}
"""


@pytest.mark.parametrize("info, expected", [(TEXT, TEXT_BYTES), (SFT, SFT_BYTES)], ids=["text", "sft"])
def test_write_gives_the_exact_bytes_and_read_gives_it_back(tmp_path, info, expected):
    path = info.write(tmp_path / "new")
    assert path == tmp_path / "new" / "dataset.json"
    assert path.read_bytes() == expected.encode()
    assert DatasetInfo.read(tmp_path / "new") == info
    assert format_of(tmp_path / "new") == info.format


def test_kind_per_format():
    assert (TEXT.kind, SFT.kind) == ("pretrain", "sft")


def test_read_fills_the_optional_fields_of_a_minimal_file(tmp_path):
    (tmp_path / FILE).write_text('{"format": "tokenmill-mds-v1", "seq_len": "16", "vocab_size": 300, '
                                 '"eos_id": 2, "splits": {"train": {}, "val": {}}}')
    info = DatasetInfo.read(tmp_path)
    assert (info.seq_len, info.dtype, info.column, info.bos_id, info.tokenizer_sha256, info.pad_id) == (
        16, "uint16", "tokens", None, "", None)


@pytest.mark.parametrize("content, message", [
    (None, r"^no dataset.json in .*: pass --shards DIR pointing at the output of `tokenmill shards`$"),
    ("{", r"dataset.json is not valid JSON: "),
    ('{"format": "other"}', r"dataset.json: format must be 'tokenmill-mds-v1' or 'tokenmill-mds-sft-v1', "
                            r"got 'other'; rebuild the shards$"),
    ("[1]", r"format must be .* got None; rebuild the shards$"),
    ('{"format": "tokenmill-mds-v1", "seq_len": 8, "vocab_size": 9, "splits": {}}',
     r"dataset.json: missing field 'eos_id'; rebuild the shards$"),
    ('{"format": "tokenmill-mds-sft-v1", "seq_len": 8, "vocab_size": 9, "eos_id": 0, "splits": {"train": {}}}',
     r"dataset.json: no 'val' split; rebuild the shards with a val fraction > 0$"),
], ids=["missing", "not-json", "format", "not-an-object", "field", "split"])
def test_read_says_how_to_fix_a_missing_or_invalid_file(tmp_path, content, message):
    if content is not None:
        (tmp_path / FILE).write_text(content)
    with pytest.raises(UserError, match=message):
        DatasetInfo.read(tmp_path)


def test_format_of_is_none_without_a_readable_object(tmp_path):
    assert format_of(tmp_path) is None
    (tmp_path / FILE).write_text("{")
    assert format_of(tmp_path) is None
    (tmp_path / FILE).write_text("[]")
    assert format_of(tmp_path) is None
