"""MinHash signatures for a whole Arrow batch at once, in numpy.

The signatures are exactly datasketch 2.0's ``MinHash(num_perm, seed,
hashfunc=shingle_hash32)`` (scheme ``affine32``) fed with the document's
shingles: the same permutations (``a``, ``b`` drawn from datasketch's own
generator), the same MurmurHash3 pre-mix and ``a * h + b mod 2**32`` step.
Only the 32-bit shingle hash is ours, because it must be computable for all
shingles of a batch without a Python loop:

* the batch's texts are normalized with Arrow kernels (lower-case, non-word
  runs -> one space), and their UTF-8 bytes are one contiguous buffer;
* tokens (words, or characters for code) are byte spans found with numpy;
* a shingle is the byte span from token ``i``'s start to token ``i+n-1``'s
  end, and its hash is a polynomial hash of those bytes computed from one
  prefix sum over the buffer (``shingle_hash32`` is the same function for
  one shingle, in plain Python, used by the tests and as datasketch's
  ``hashfunc``);
* all shingle hashes x all permutations form one matrix whose per-document
  minimum (``np.minimum.reduceat``) is the signature.

Documents with no token get datasketch's empty signature (all ``2**32-1``)
and ``n_shingles == 0``; callers keep them out of LSH.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MASK64 = (1 << 64) - 1
# Odd multiplier of the polynomial byte hash (odd: invertible mod 2**64).
POLY = 0x100000001B3
POLY_INV = pow(POLY, -1, 1 << 64)
EMPTY = np.uint32(0xFFFFFFFF)
WORD_SPLIT = r"[^\p{L}\p{M}\p{N}_]+"
SPACE_RUNS = r"[\s\p{Z}]+"
# Byte budget of one numpy pass: bounds the prefix-sum and power arrays.
CHUNK_BYTES = 4 << 20
# Shingles per permutation matrix: 128 x 8192 x 4 B = 4 MiB.
CHUNK_SHINGLES = 8192


# --- the reference (one shingle, plain Python) ---------------------------------


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    return h ^ (h >> 33)


def shingle_hash32(shingle: bytes) -> int:
    """32-bit hash of one shingle's normalized UTF-8 bytes (datasketch ``hashfunc``)."""
    h = 0
    p = 1
    for byte in shingle:
        h = (h + (byte + 1) * p) & MASK64
        p = (p * POLY) & MASK64
    return _fmix64_int(h) >> 32


def normalize_text(text: str, kind: str = "word", lowercase: bool = True) -> str:
    """What the shingles are cut from (the same Arrow kernels as the batch path)."""
    return normalize_array(pa.array([text]), kind, lowercase)[0].as_py()


def shingles(text: str, n: int, kind: str = "word", lowercase: bool = True) -> list[bytes]:
    """The shingles of one document as byte strings (reference and benchmarks)."""
    norm = normalize_text(text, kind, lowercase)
    if kind == "word":
        tokens = [t for t in norm.split(" ") if t]
        joined = [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        if not joined and tokens:
            joined = [" ".join(tokens)]
    else:
        tokens = list(norm)
        joined = ["".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        if not joined and tokens:
            joined = ["".join(tokens)]
    return [s.encode("utf-8") for s in joined]


# --- permutations (datasketch's) ------------------------------------------------


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch 2.0 ``affine32`` permutation parameters ``(a, b)`` (uint32)."""
    from datasketch import MinHash

    m = MinHash(num_perm=num_perm, seed=seed, scheme="affine32")
    a, b = m.permutations
    return np.ascontiguousarray(a, dtype=np.uint32), np.ascontiguousarray(b, dtype=np.uint32)


# --- the batch path -----------------------------------------------------------


def normalize_array(texts: pa.Array, kind: str = "word", lowercase: bool = True) -> pa.StringArray:
    """Lower-case and reduce separators to single spaces, with Arrow kernels."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.string())
    out = texts.fill_null("")
    if lowercase:
        out = pc.utf8_lower(out)
    out = pc.replace_substring_regex(out, WORD_SPLIT if kind == "word" else SPACE_RUNS, " ")
    return pc.utf8_trim(out, " ")


def _buffers(arr: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
    """(data bytes, offsets rebased to 0) of a string array, zero-copy."""
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4).astype(np.int64)
    data_buf = arr.buffers()[2]
    if data_buf is None or offsets[-1] == offsets[0]:
        return np.zeros(0, dtype=np.uint8), offsets - offsets[0]
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]]
    return data, offsets - offsets[0]


_POW_CACHE: dict[str, np.ndarray] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """POLY**t and POLY**-t mod 2**64 for t < n (uint64 wraps), cached per worker."""
    have = _POW_CACHE.get("pow")
    if have is None or len(have) < n:
        size = max(n, CHUNK_BYTES + 1)
        _POW_CACHE["pow"], _POW_CACHE["inv"] = _power_table(POLY, size), _power_table(POLY_INV, size)
    return _POW_CACHE["pow"][:n], _POW_CACHE["inv"][:n]


def _power_table(base: int, size: int) -> np.ndarray:
    """base**t mod 2**64 for t < size, by doubling: a few vector products, not a serial cumprod."""
    out = np.empty(size, dtype=np.uint64)
    out[0] = 1
    have, step = 1, base
    with np.errstate(over="ignore"):
        while have < size:
            take = min(have, size - have)
            np.multiply(out[:take], np.uint64(step), out=out[have:have + take])
            have += take
            step = step * step & MASK64
    return out


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _token_spans(data: np.ndarray, offsets: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Start and end byte of every token, in document order."""
    n = len(data)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if kind == "char":  # a token is one UTF-8 character: starts are non-continuation bytes
        starts = np.flatnonzero((data & 0xC0) != 0x80)
        ends = np.append(starts[1:], n)
        return starts, ends
    is_tok = data != 32
    doc_start = np.zeros(n + 1, dtype=bool)
    doc_start[offsets] = True
    prev = np.empty(n, dtype=bool)
    prev[0] = False
    prev[1:] = is_tok[:-1]
    prev &= ~doc_start[:n]
    nxt = np.empty(n, dtype=bool)
    nxt[-1] = False
    nxt[:-1] = is_tok[1:]
    nxt &= ~doc_start[1:]
    starts = np.flatnonzero(is_tok & ~prev)
    ends = np.flatnonzero(is_tok & ~nxt) + 1
    return starts, ends


def shingle_spans(data: np.ndarray, offsets: np.ndarray, n: int, kind: str):
    """(doc index, start, end) of every shingle, sorted by doc; docs with fewer
    than ``n`` tokens get one shingle over all their tokens."""
    starts, ends = _token_spans(data, offsets, kind)
    n_docs = len(offsets) - 1
    if len(starts) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    tok_doc = np.searchsorted(offsets, starts, side="right") - 1
    ntok = np.bincount(tok_doc, minlength=n_docs)
    first = np.concatenate([[0], np.cumsum(ntok)[:-1]])
    if len(starts) >= n:
        i = np.arange(len(starts) - n + 1)
        ok = tok_doc[i] == tok_doc[i + n - 1]
        i = i[ok]
        doc, s, e = tok_doc[i], starts[i], ends[i + n - 1]
    else:
        doc = s = e = np.zeros(0, np.int64)
    short = np.flatnonzero((ntok > 0) & (ntok < n))
    if len(short):
        doc = np.concatenate([doc, short])
        s = np.concatenate([s, starts[first[short]]])
        e = np.concatenate([e, ends[first[short] + ntok[short] - 1]])
        order = np.argsort(doc, kind="stable")
        doc, s, e = doc[order], s[order], e[order]
    return doc, s, e


def span_hashes(data: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """``shingle_hash32`` of every byte span ``data[s:e]``, vectorized."""
    pw, inv = _powers(len(data) + 1)
    with np.errstate(over="ignore"):
        prefix = np.zeros(len(data) + 1, dtype=np.uint64)
        terms = prefix[1:]  # (byte + 1) * POLY**t, summed in place: no temporaries of the chunk's size
        np.add(data, np.uint64(1), out=terms, dtype=np.uint64)
        np.multiply(terms, pw[:len(data)], out=terms)
        np.cumsum(terms, out=terms)
        h = (prefix[e] - prefix[s]) * inv[s]
        return (_fmix64(h) >> np.uint64(32)).astype(np.uint32)


def _min_per_doc(sig: np.ndarray, doc: np.ndarray, h32: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """sig[d] = min(sig[d], min over d's shingles of a * fmix32(h) + b), in place.

    The products are laid out permutation by shingle, so the per-document
    minimum reduces contiguous runs, in one buffer that stays in cache
    (shingle by permutation took 1.9 s here on 38 MB of prose, this 0.2 s).
    """
    hv = _fmix32(h32)
    buf = np.empty((len(a), CHUNK_SHINGLES), dtype=np.uint32)
    for lo in range(0, len(hv), CHUNK_SHINGLES):
        hi = min(lo + CHUNK_SHINGLES, len(hv))
        phv = buf[:, :hi - lo]
        with np.errstate(over="ignore"):
            np.multiply(a[:, None], hv[None, lo:hi], out=phv)
            np.add(phv, b[:, None], out=phv)
        d = doc[lo:hi]
        seg = np.concatenate([[0], np.flatnonzero(d[1:] != d[:-1]) + 1])
        mins = np.minimum.reduceat(phv, seg, axis=1)
        rows = d[seg]
        sig[rows] = np.minimum(sig[rows], mins.T)


def signatures(texts: pa.Array, num_perm: int = 128, seed: int = 1, n: int = 5,
               kind: str = "word", lowercase: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Signatures (docs x num_perm, uint32) and shingle counts of an Arrow string array."""
    a, b = permutations(num_perm, seed)
    norm = normalize_array(texts, kind, lowercase)
    n_docs = len(norm)
    sig = np.full((n_docs, num_perm), EMPTY, dtype=np.uint32)
    counts = np.zeros(n_docs, dtype=np.int64)
    lo = 0
    while lo < n_docs:  # slices of whole documents of about CHUNK_BYTES
        part = norm.slice(lo)
        _, offsets = _buffers(part)
        hi = lo + max(1, int(np.searchsorted(offsets, CHUNK_BYTES, side="right")) - 1)
        hi = min(hi, n_docs)
        data, offsets = _buffers(norm.slice(lo, hi - lo))
        doc, s, e = shingle_spans(data, offsets, n, kind)
        if len(doc):
            h32 = span_hashes(data, s, e)
            _min_per_doc(sig[lo:hi], doc, h32, a, b)
            counts[lo:hi] = np.bincount(doc, minlength=hi - lo)
        lo = hi
    return sig, counts


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (doc, band): a hash of the band's ``rows`` values (docs x bands, int64)."""
    keys = np.zeros((len(sig), bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            h = np.full(len(sig), np.uint64(band + 1), dtype=np.uint64)
            for j in range(band * rows, (band + 1) * rows):
                h = h * np.uint64(POLY) + sig[:, j].astype(np.uint64)
            keys[:, band] = _fmix64(h)
    return keys.view(np.int64)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Share of equal signature values, row by row (datasketch ``MinHash.jaccard``)."""
    return (sig_a == sig_b).mean(axis=1)
