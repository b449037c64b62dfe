"""Vectorized MinHash == datasketch 2.0 MinHash with the same shingle hash."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from tokenmill.dedup import minhash
from tokenmill.config.dedup import DedupConfig
from tokenmill.dedup.lsh import lsh_params, s_curve

TEXTS = [
    "Héllo, Wörld! this is a test of the emergency broadcast system, " * 3,
    None,
    "",
    "   ",
    "short one",
    "a b c d e",
    "déjà vu — again and again and again; “quoted” text_with_underscores 42",
    "def f(x):\n    return x + 1\n\nprint(f(2))\n",
]


@pytest.mark.parametrize("kind,n", [("word", 5), ("word", 1), ("char", 5), ("char", 3)])
def test_signatures_equal_datasketch(kind, n):
    sig, counts = minhash.signatures(pa.array(TEXTS), num_perm=64, seed=3, n=n, kind=kind)
    for text, row, count in zip(TEXTS, sig, counts):
        shingles = minhash.shingles(text or "", n, kind)
        expected = MinHash(num_perm=64, seed=3, hashfunc=minhash.shingle_hash32)
        expected.update_batch(shingles)
        assert count == len(shingles)
        assert np.array_equal(row, expected.hashvalues), (kind, n, text)


def test_shingles_of_a_literal_text():
    assert minhash.shingles("The cat, the HAT!", 2) == [b"the cat", b"cat the", b"the hat"]
    assert minhash.shingles("Hi there", 5) == [b"hi there"]  # fewer words than n: one shingle
    assert minhash.shingles("  ", 5) == []
    assert minhash.shingles("ab  c", 3, "char") == [b"ab ", b"b c"]


def test_byte_chunks_do_not_change_signatures(monkeypatch):
    texts = pa.array([f"document {i} " + "word " * (i % 40) + "end" for i in range(300)])
    whole, _ = minhash.signatures(texts)
    monkeypatch.setattr(minhash, "CHUNK_BYTES", 200)
    monkeypatch.setattr(minhash, "CHUNK_SHINGLES", 7)
    chunked, _ = minhash.signatures(texts)
    assert np.array_equal(whole, chunked)


def test_estimated_jaccard_tracks_true_jaccard():
    words = [f"w{i}" for i in range(400)]
    a = " ".join(words)
    b = " ".join(words[:380] + [f"x{i}" for i in range(20)])
    sig, _ = minhash.signatures(pa.array([a, b]), num_perm=256)
    sa, sb = set(minhash.shingles(a, 5)), set(minhash.shingles(b, 5))
    true = len(sa & sb) / len(sa | sb)
    est = minhash.estimated_jaccard(sig[:1], sig[1:])[0]
    assert abs(est - true) < 0.08


def test_bands_rows_from_threshold():
    assert lsh_params(DedupConfig(lsh_weights=(0.5, 0.5))) == (9, 13) == _optimal_param(0.8, 128, 0.5, 0.5)
    assert lsh_params(DedupConfig()) == (14, 9) == _optimal_param(0.8, 128, 0.1, 0.9)
    assert lsh_params(DedupConfig(bands=20, rows=5)) == (20, 5)
    curve = s_curve(9, 13)
    assert curve["1.00"] == 1.0 and curve["0.80"] == pytest.approx(0.3988, abs=1e-4)


def test_band_keys_equal_only_for_equal_bands():
    sig = np.array([[1, 2, 3, 4], [1, 2, 9, 4], [1, 2, 3, 4]], dtype=np.uint32)
    keys = minhash.band_keys(sig, 2, 2)
    assert keys.shape == (3, 2)
    assert keys[0, 0] == keys[1, 0] == keys[2, 0]
    assert keys[0, 1] == keys[2, 1] != keys[1, 1]
    assert keys[0, 0] != keys[0, 1]


def test_config_errors_name_the_field():
    from tokenmill.errors import ConfigError

    with pytest.raises(ConfigError, match="keep"):
        DedupConfig(keep=("quality downwards",))
    with pytest.raises(ConfigError, match="bands"):
        DedupConfig(bands=10)
    with pytest.raises(ConfigError, match="bands"):
        DedupConfig(bands=20, rows=7)  # 140 > 128 permutations
    with pytest.raises(ConfigError, match="threshold"):
        DedupConfig(threshold=0)
