"""Reading MDS shards as they lie on disk (data card, pre-flight): every
compression the shards stage may write."""

from __future__ import annotations

import numpy as np
import pytest

from tokenmill.shards.reader import iter_split, read_index

# Every value shards.compression allows, as the writer receives it.
COMPRESSIONS = ["zstd", "zstd:1", "zstd:19", "gz", "br", "snappy", None]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_every_compression_reads_back(tmp_path, compression):
    from streaming import MDSWriter

    rows = [np.arange(i, i + 8, dtype=np.uint16) for i in range(40)]
    columns = {"tokens": "ndarray:uint16:8", "seq_id": "int64"}
    with MDSWriter(out=str(tmp_path), columns=columns, compression=compression, size_limit=1 << 8) as writer:
        for i, tokens in enumerate(rows):
            writer.write({"tokens": tokens, "seq_id": i})
    files = read_index(tmp_path)
    assert len(files) > 1 and all(f.compression == compression for f in files)
    got = list(iter_split(tmp_path))
    assert [r["seq_id"] for r in got] == list(range(40))
    assert all(np.array_equal(r["tokens"], t) for r, t in zip(got, rows))
