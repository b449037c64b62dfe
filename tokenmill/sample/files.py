"""The sample corpus's input files: each source written in its own format.

JSONL (plain, gzip, zstd) with bad rows at fixed lines, Parquet books, and
code as one text file per document plus one binary file. Writing a document
sets its ``key``, the name planted.json uses for it. Compression carries no
name or time, so the same documents give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import random
from pathlib import Path

FILES = {"web": 3, "news": 3, "forum": 2, "books": 2}


@dataclasses.dataclass(eq=False)
class Doc:
    source: str
    text: str
    meta: dict
    id: str | None = None
    path: str | None = None  # code files: path relative to OUT_DIR
    key: str | None = None  # set when written
    planted: bool = False


BAD_ROWS = [
    ("web", 0, 5, "malformed_json", None, b'{"id": "web-broken-1", "text": "The report was cut off mid'),
    ("web", 0, 11, "invalid_utf8", "web-bad-utf8",
     b'{"id": "web-bad-utf8", "text": "Caf\xe9 prices rose \xff\xfe again in the old town this spring.", "meta": {}}'),
    ("web", 1, 3, "null_text", "web-null-text", b'{"id": "web-null-text", "text": null, "meta": {"lang": "en"}}'),
    ("web", 1, 8, "missing_text", "web-missing-text", b'{"id": "web-missing-text", "meta": {"lang": "en"}}'),
    ("web", 1, 20, "malformed_json", None, b"this line is not json at all"),
    ("news", 1, 4, "nul_bytes", "news-nul-bytes",
     b'{"id": "news-nul-bytes", "text": "Raw NUL\x00\x00 bytes sit inside this line.", "meta": {}}'),
    ("forum", 0, 7, "malformed_json", None, b'{"text": "Has anyone tried the new trellis design?", "meta": {"board": '),
]


def _split(docs: list[Doc], parts: int) -> list[list[Doc]]:
    size = -(-len(docs) // parts)
    return [docs[i * size:(i + 1) * size] for i in range(parts)]


def _jsonl_lines(source: str, index: int, docs: list[Doc], rel: str, with_ids: bool, ids: list[int]) -> tuple[bytes, list[dict]]:
    """Encode one JSONL file, setting each doc's key; bad rows go at their fixed lines."""
    bad = {line: (kind, bid, raw) for s, i, line, kind, bid, raw in BAD_ROWS if s == source and i == index}
    lines, bad_found, pending = [], [], list(docs)
    while pending or bad:
        n = len(lines) + 1
        if n in bad or not pending:
            kind, bid, raw = bad.pop(n if n in bad else min(bad))
            lines.append(raw)
            bad_found.append({"path": rel, "line": n, "kind": kind, "id": bid})
            continue
        doc = pending.pop(0)
        row: dict = {}
        if with_ids:
            ids[0] += 1
            doc.id = f"{source}-{ids[0]:06d}"
            row["id"] = doc.id
        row["text"], row["meta"] = doc.text, doc.meta
        doc.key = doc.id if with_ids else f"{rel}:{n}"
        lines.append(json.dumps(row, ensure_ascii=False).encode("utf-8"))
    return b"".join(line + b"\n" for line in lines), bad_found


def _write_jsonl(out: Path, source: str, docs: list[Doc], suffix: str, with_ids: bool) -> tuple[list[str], int, list[dict]]:
    files, rows, bad_rows, ids = [], 0, [], [0]
    for index, part in enumerate(_split(docs, FILES[source])):
        rel = f"{source}/part-{index:05d}{suffix}"
        data, bad = _jsonl_lines(source, index, part, rel, with_ids, ids)
        rows += data.count(b"\n")
        bad_rows += bad
        (out / rel).write_bytes(_compress(data, suffix))
        files.append(rel)
    return files, rows, bad_rows


def _compress(data: bytes, suffix: str) -> bytes:
    if suffix.endswith(".gz"):
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as f:  # no name/time: stable bytes
            f.write(data)
        return buf.getvalue()
    if suffix.endswith(".zst"):
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(data)
    return data


def _write_books(out: Path, docs: list[Doc]) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = []
    for index, part in enumerate(_split(docs, FILES["books"])):
        rel = f"books/part-{index:05d}.parquet"
        table = pa.table({"id": [d.id for d in part], "text": [d.text for d in part],
                          "meta": [d.meta for d in part]})
        pq.write_table(table, out / rel, row_group_size=32)
        for d in part:
            d.key = d.id
        files.append(rel)
    return files


def _write_code(out: Path, docs: list[Doc], rng: random.Random) -> tuple[list[str], dict]:
    for d in docs:
        (out / d.path).parent.mkdir(parents=True, exist_ok=True)
        (out / d.path).write_text(d.text, encoding="utf-8")
        d.key = d.path
    # A binary file among the text files: a PNG header and random bytes.
    binary = "code/misc/blob.txt"
    (out / binary).parent.mkdir(parents=True, exist_ok=True)
    (out / binary).write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(rng.randrange(256) for _ in range(2048)))
    return sorted(d.path for d in docs), {"path": binary, "kind": "binary_file"}


def write_sources(out: Path, by_source: dict[str, list[Doc]], rng: random.Random) -> tuple[dict, list[dict], dict]:
    """Write every source in its own format; return what each holds, the bad rows and the binary file."""
    sources, bad_rows = {}, []
    for s, suffix, ids in (("web", ".jsonl", True), ("news", ".jsonl.gz", True), ("forum", ".jsonl.zst", False)):
        files, rows, bad = _write_jsonl(out, s, by_source[s], suffix, ids)
        bad_rows += bad
        sources[s] = {"format": suffix.lstrip("."), "files": files, "rows": rows,
                      "documents": len(by_source[s]), "ids": ids}
    (out / "web/part-00003.jsonl").write_bytes(b"")
    sources["web"]["files"].append("web/part-00003.jsonl")
    files = _write_books(out, by_source["books"])
    sources["books"] = {"format": "parquet", "files": files, "rows": len(by_source["books"]),
                        "documents": len(by_source["books"]), "ids": True}
    files, binary = _write_code(out, by_source["code"], rng)
    sources["code"] = {"format": "text", "files": files, "rows": len(files),
                       "documents": len(files), "ids": False}
    return sources, bad_rows, binary
