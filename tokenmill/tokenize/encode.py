"""Pre-tokenize documents in Spark: Arrow batches in, token id lists out.

The tokenizer is built once per Python worker (cached by its hash) and
encodes whole Arrow batches with ``encode_batch_fast``. Special-token strings that
occur in document text are encoded as plain text, so the only EOS ids in the
output are the ones appended here (packing and readers split at EOS).
"""

from __future__ import annotations

import array
import hashlib

import numpy as np
import pyarrow as pa

_CACHE: dict[str, object] = {}


def worker_tokenizer(tokenizer_json: str):
    """The tokenizer for this Python worker, parsed once per distinct JSON."""
    key = hashlib.sha256(tokenizer_json.encode()).hexdigest()
    tok = _CACHE.get(key)
    if tok is None:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(tokenizer_json)
        tok.encode_special_tokens = True
        tok.no_padding()
        tok.no_truncation()
        _CACHE[key] = tok
    return tok


def encode_texts(tok, texts: list[str], eos_id: int, bos_id: int | None) -> pa.ListArray:
    """Token ids per text, [BOS] + ids + [EOS], as one Arrow list<int32> column.

    ``encode_batch_fast`` gives the same ids as ``encode_batch`` without
    computing character offsets, which packing never needs (~25% less time).
    """
    encodings = tok.encode_batch_fast(texts, add_special_tokens=False)
    values = array.array("i")
    offsets = np.zeros(len(encodings) + 1, dtype=np.int32)
    for i, e in enumerate(encodings):
        if bos_id is not None:
            values.append(bos_id)
        values.extend(e.ids)
        values.append(eos_id)
        offsets[i + 1] = len(values)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.frombuffer(values, dtype=np.int32)))


def make_encoder(tokenizer_json: str, eos_id: int, bos_id: int | None):
    """An Arrow batch function: ``text`` is replaced by ``tokens``, other columns pass through."""

    def encode(batches):
        tok = worker_tokenizer(tokenizer_json)
        for batch in batches:
            texts = batch.column("text").to_pylist()
            texts = ["" if t is None else t for t in texts]
            tokens = encode_texts(tok, texts, eos_id, bos_id)
            keep = [name for name in batch.schema.names if name != "text"]
            yield pa.RecordBatch.from_arrays([batch.column(n) for n in keep] + [tokens], names=keep + ["tokens"])

    return encode

