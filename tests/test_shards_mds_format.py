"""Our MDS writer and index merge against streaming's own (``MDSWriter``, ``merge_index``):
the same files, byte for byte; and writing shards imports neither streaming nor torch."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
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


def _batch(n: int, parts: list[int], first_id: int = 0) -> pa.RecordBatch:
    """Rows of the shards stage's writer input: split, part, seq_id, tokens, source."""
    tokens = _rows("uint16", n)["tokens"].astype(np.int32)
    return pa.RecordBatch.from_pydict({
        "split": ["train"] * n, "part": parts, "seq_id": np.arange(first_id, first_id + n),
        "tokens": pa.ListArray.from_arrays(np.arange(0, n * SEQ_LEN + 1, SEQ_LEN, dtype=np.int32),
                                           pa.array(tokens.ravel())),
        "source": ["web" if i % 3 else None for i in range(n)]})


def test_stage_writer_uploads_what_it_writes(tmp_path):
    """A remote root (here a local folder, through streaming's LocalUploader) gets every file."""
    local, remote = tmp_path / "local", tmp_path / "remote"
    write = mds.make_writer(str(local), str(remote), "uint16", SEQ_LEN, "zstd", 1 << 13)
    batches = [_batch(200, [0] * 150 + [1] * 50), _batch(100, [1] * 100, first_id=200)]
    written = pa.Table.from_batches(list(write(iter(batches)))).to_pylist()
    assert [(r["part"], r["sequences"]) for r in written] == [(0, 150), (1, 150)]
    assert np.frombuffer(written[1]["ids"], "<i8").tolist() == list(range(150, 300))
    codes = np.frombuffer(written[0]["codes"], "<i4")
    assert [written[0]["sources"][c] for c in codes] == [None if i % 3 == 0 else "web" for i in range(150)]
    mds.merge_split(str(local), str(remote), "train", [0, 1])
    assert _files(remote) == _files(local) and len(_files(local)) > 5


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
    write = mds.make_writer(str(tmp_path / "s"), None, "uint16", SEQ_LEN + 1, None, 1 << 16)
    with pytest.raises(ValueError, match=f"sequence 0 has {SEQ_LEN} values"):
        list(write(iter([_batch(2, [0, 0])])))


FRESH = r'''
import json, sys
import numpy as np, pyarrow as pa
sys.path.insert(0, sys.argv[2])
import test_shards_mds_format as t
from tokenmill.shards import mds
from tokenmill.chat.shards import SftShardSpec, make_writer

out = sys.argv[1]
write = mds.make_writer(out + "/pt", None, "uint16", t.SEQ_LEN, "zstd", 1 << 16)
list(write(iter([t._batch(300, [0] * 200 + [1] * 100)])))
mds.merge_split(out + "/pt", None, "train", [0, 1])
spec = SftShardSpec(seq_len=t.SEQ_LEN, dtype="uint16", vocab_size=100, eos_id=1, bos_id=None, pad_id=0,
                    tokenizer_sha256="", template_sha256=None, compression="zstd")
b = t._batch(10, [0] * 10)
L = pa.ListArray.from_arrays(b.column("tokens").offsets, pa.array(np.ones(10 * t.SEQ_LEN, np.int8)))
chat = pa.RecordBatch.from_pydict({**{n: b.column(n) for n in ("split", "part", "seq_id", "tokens")},
    "loss_mask": L, "doc_ids": L, "n_examples": [1] * 10, "n_tokens": [t.SEQ_LEN] * 10, "n_targets": [5] * 10})
list(make_writer(spec, out + "/chat")(iter([chat])))
mds.merge_split(out + "/chat", None, "train", [0])
print(json.dumps({"mds": mds.__file__, "loaded": [m for m in ("streaming", "torch", "transformers") if m in sys.modules]}))
'''


def test_writing_shards_imports_neither_streaming_nor_torch(tmp_path):
    """The writer functions as Spark's Python workers run them, in a fresh process."""
    tests = Path(__file__).parent
    script = tmp_path / "fresh.py"
    script.write_text(textwrap.dedent(FRESH))
    run = subprocess.run([sys.executable, str(script), str(tmp_path), str(tests)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["mds"] == mds.__file__  # this checkout's writer, not another installed copy
    assert got["loaded"] == []
    for root in ("pt", "chat"):
        index = json.loads((tmp_path / root / "train" / "index.json").read_text())
        assert index["shards"] and all(s["compression"] == "zstd" for s in index["shards"])
