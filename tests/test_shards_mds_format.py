"""Our MDS writer and index merge against streaming's own (``MDSWriter``, ``merge_index``):
the same files, byte for byte."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
import numpy as np
import pytest

from tokenmill.shards import mds
from tokenmill.shards.mds_format import MdsFormatError, MdsWriter, merge_indexes

# Every value shards.compression allows, as the writer receives it.
COMPRESSIONS = ["zstd", "zstd:1", "zstd:3", "zstd:7", "zstd:19", "gz", "br", "snappy", None]
SEQ_LEN = 64
N = 1500


class _FixedClock:
    """gzip writes the current time into its header; both writers get this one."""

    @staticmethod
    def time() -> float:
        return 1_700_000_000.0


@pytest.fixture(autouse=True)
def fixed_gzip_clock(monkeypatch):
    monkeypatch.setattr(gzip, "time", _FixedClock)


def _rows(dtype: str, n: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    """Zipf-distributed tokens (they compress, like real text) and 64-bit ids."""
    rng = np.random.default_rng(seed)
    tokens = np.minimum(rng.zipf(1.3, (n, SEQ_LEN)), np.iinfo(dtype).max).astype(dtype)
    return {"tokens": tokens, "seq_id": rng.integers(0, 1 << 40, n)}


def _reference(out: Path, columns: dict, rows: dict, compression, size_limit) -> None:
    from streaming import MDSWriter

    n = len(rows["seq_id"])
    with MDSWriter(out=str(out), columns=columns, compression=compression, size_limit=size_limit) as writer:
        for i in range(n):
            writer.write({k: (int(v[i]) if v.ndim == 1 else v[i]) for k, v in rows.items()})


def _ours(out: Path, columns: dict, rows: dict, compression, size_limit) -> None:
    writer = MdsWriter(str(out), columns, compression, size_limit)
    n = len(rows["seq_id"])
    for lo, hi in zip([0, 1, 2, 700], [1, 2, 700, n]):  # uneven batches: rollover inside and across them
        writer.write({k: v[lo:hi] for k, v in rows.items()})
    writer.finish()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("size_limit", [1 << 16, 1 << 26], ids=["several-shards", "one-shard"])
@pytest.mark.parametrize("dtype", ["uint16", "uint32"])
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_same_bytes_as_streaming_mdswriter(tmp_path, compression, dtype, size_limit):
    columns = mds.columns(dtype, SEQ_LEN)
    rows = _rows(dtype)
    _reference(tmp_path / "ref", columns, rows, compression, size_limit)
    _ours(tmp_path / "ours", columns, rows, compression, size_limit)
    ref, ours = _files(tmp_path / "ref"), _files(tmp_path / "ours")
    assert sorted(ours) == sorted(ref)
    n_shards = len(json.loads(ref["index.json"])["shards"])
    assert n_shards > 2 if size_limit == 1 << 16 else n_shards == 1
    for name in ref:
        assert ours[name] == ref[name], name


def test_large_zstd_shard_same_bytes(tmp_path):
    """A 12 MB shard: past the size where zstd's multi-threaded mode (streaming's) and its
    single-threaded mode write different bytes."""
    import zstandard

    rng = np.random.default_rng(2)
    rows = {"tokens": np.minimum(rng.zipf(1.3, (3000, 2048)), 65535).astype(np.uint16), "seq_id": np.arange(3000)}
    columns = mds.columns("uint16", 2048)
    _reference(tmp_path / "ref", columns, rows, "zstd", 1 << 26)
    _ours(tmp_path / "ours", columns, rows, "zstd", 1 << 26)
    ref = _files(tmp_path / "ref")
    assert _files(tmp_path / "ours") == ref
    raw = zstandard.ZstdDecompressor().decompress(ref["shard.00000.mds.zstd"])
    assert len(raw) > 10 << 20 and zstandard.ZstdCompressor(level=3).compress(raw) != ref["shard.00000.mds.zstd"]


def test_rollover_at_every_offset_of_the_size_limit(tmp_path):
    """Limits one byte apart across a whole sample: each shard ends where MDSWriter ends it."""
    columns, rows = mds.columns("uint16", 16), {"tokens": _rows("uint16")["tokens"][:, :16],
                                                "seq_id": np.arange(N)}
    sample = 8 + 2 * 16 + 4  # seq_id, tokens, offset
    for limit in range(1 << 14, (1 << 14) + sample + 1):
        _reference(tmp_path / f"ref{limit}", columns, rows, None, limit)
        _ours(tmp_path / f"ours{limit}", columns, rows, None, limit)
        assert _files(tmp_path / f"ours{limit}") == _files(tmp_path / f"ref{limit}"), limit


def test_chat_columns_same_bytes(tmp_path):
    from tokenmill.chat.shards import SftShardSpec, columns

    spec = SftShardSpec(seq_len=SEQ_LEN, dtype="uint32", vocab_size=70000, eos_id=1, bos_id=None, pad_id=0,
                        tokenizer_sha256="", template_sha256=None)
    rng = np.random.default_rng(4)
    rows = {**_rows("uint32"), "loss_mask": rng.integers(0, 2, (N, SEQ_LEN)).astype(np.uint8),
            "doc_ids": rng.integers(0, 9, (N, SEQ_LEN)).astype(np.uint16)}
    _reference(tmp_path / "ref", columns(spec), rows, "zstd", 1 << 17)
    _ours(tmp_path / "ours", columns(spec), rows, "zstd", 1 << 17)
    ref = _files(tmp_path / "ref")
    assert len(json.loads(ref["index.json"])["shards"]) > 2
    assert _files(tmp_path / "ours") == ref


@pytest.mark.parametrize("compression", ["zstd", None])
def test_merged_index_same_as_merge_index(tmp_path, compression):
    from streaming.base.util import merge_index

    columns = mds.columns("uint16", SEQ_LEN)
    parts = []
    for part, n in enumerate([N, 1, 300]):
        parts.append(tmp_path / "split" / f"{part:05d}")
        _ours(parts[-1], columns, _rows("uint16", n, seed=part), compression, 1 << 16)
    merge_index([str(p / "index.json") for p in parts], str(tmp_path / "split"), keep_local=True)
    reference = (tmp_path / "split" / "index.json").read_bytes()
    (tmp_path / "split" / "index.json").unlink()
    merge_indexes([str(p) for p in parts], str(tmp_path / "split"))
    assert (tmp_path / "split" / "index.json").read_bytes() == reference
    assert len(json.loads(reference)["shards"]) > 3


def test_merge_of_no_parts_is_an_empty_index(tmp_path):
    merge_indexes([], str(tmp_path / "val"))
    assert (tmp_path / "val" / "index.json").read_text() == json.dumps({"version": 2, "shards": []})


def test_bad_inputs_get_clear_errors(tmp_path):
    columns = mds.columns("uint16", 4)
    with pytest.raises(MdsFormatError, match="unknown compression 'lz4'"):
        MdsWriter(str(tmp_path), columns, "lz4")
    with pytest.raises(MdsFormatError, match="zstd levels are 1-22"):
        MdsWriter(str(tmp_path), columns, "zstd:0")
    with pytest.raises(MdsFormatError, match="snappy levels are none"):
        MdsWriter(str(tmp_path), columns, "snappy:1")
    with pytest.raises(MdsFormatError, match="is not fixed-size"):
        MdsWriter(str(tmp_path), {"tokens": "ndarray:uint16"})
    with pytest.raises(MdsFormatError, match="too small for one sample"):
        MdsWriter(str(tmp_path), {"tokens": "ndarray:uint32:100000"}, size_limit=1 << 16)
    with pytest.raises(MdsFormatError, match=r"must be an int in \[1, 2\*\*32\)"):
        MdsWriter(str(tmp_path), columns, size_limit=1 << 32)
    writer = MdsWriter(str(tmp_path), columns)
    with pytest.raises(MdsFormatError, match="values from 0 to 70000 do not fit uint16"):
        writer.write({"tokens": np.array([[0, 1, 2, 70000]]), "seq_id": np.array([1])})
    with pytest.raises(MdsFormatError, match=r"rows of shape \(3,\)"):
        writer.write({"tokens": np.zeros((1, 3), np.uint16), "seq_id": np.array([1])})
    with pytest.raises(MdsFormatError, match="expects"):
        writer.write({"tokens": np.zeros((1, 4), np.uint16)})
