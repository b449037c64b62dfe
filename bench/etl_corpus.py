"""Text corpora for the etl benchmarks, made from what is on the machine.

* ``sample_docs()``: the bundled sample corpus (``tokenmill sample``), as texts.
* ``machine_docs()``: real text installed with the system: man pages
  (``/usr/share/man``, troff source in many languages, with real author
  addresses) and package docs (``/usr/share/doc``: copyright files with
  maintainers' e-mail addresses, changelogs, READMEs). Binary files are skipped;
  legacy encodings are decoded with replacement characters.
* ``write_jsonl(docs, out, n_files)``: the same texts as JSONL input files.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

MACHINE_ROOTS = ("/usr/share/man", "/usr/share/doc")


def _read_text(path: Path) -> str | None:
    try:
        data = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError):
        return None
    if b"\x00" in data[:8192] or not data.strip():
        return None
    return data.decode("utf-8", "replace")


def machine_docs(max_bytes: int, seed: int = 0) -> list[str]:
    """Up to max_bytes (UTF-8) of man pages and package docs, in a seeded random order."""
    files = []
    for root in MACHINE_ROOTS:
        for dirpath, _, names in os.walk(root):
            files += [Path(dirpath) / n for n in names if not (Path(dirpath) / n).is_symlink()]
    files.sort()
    random.Random(seed).shuffle(files)
    docs, total = [], 0
    for f in files:
        text = _read_text(f)
        if text is None:
            continue
        docs.append(text)
        total += len(text.encode("utf-8"))
        if total >= max_bytes:
            break
    return docs


def sample_docs(n_docs: int = 3600) -> list[str]:
    """Texts of the bundled sample corpus (bad rows and the binary file left out)."""
    import pyarrow.parquet as pq

    from tokenmill.config.etl import EtlConfig, InputSpec
    from tokenmill.etl.ingest import plan_input, read_task
    from tokenmill.sample import write_sample

    cfg = EtlConfig()
    out = Path(tempfile.mkdtemp(prefix="tokenmill-bench-sample-"))
    write_sample(out, seed=0, n_docs=n_docs)
    texts = []
    for source in ("web", "news", "forum", "books", "code"):
        tasks, parquet, _ = plan_input(InputSpec(path=str(out / source)), cfg)
        for t in tasks:
            texts += [r[2] for r in read_task(t, cfg.ingest.max_doc_bytes, "replace") if r[2]]
        for p in parquet:
            texts += [t for t in pq.read_table(p).column("text").to_pylist() if t]
    return texts


def write_jsonl(docs: list[str], out: str | Path, n_files: int = 16) -> int:
    """Write docs round-robin into n_files JSONL files (ids doc-0000000, ...); returns the bytes written."""
    return write_records([{"id": f"doc-{i:07d}", "text": text} for i, text in enumerate(docs)], out, n_files)


def write_records(records: list[dict], out: str | Path, n_files: int = 16) -> int:
    """Write JSON records round-robin into n_files JSONL files; returns the bytes written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [open(out / f"part-{i:05d}.jsonl", "w", encoding="utf-8") for i in range(n_files)]
    try:
        for i, record in enumerate(records):
            files[i % n_files].write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        for f in files:
            f.close()
    return sum(p.stat().st_size for p in out.glob("*.jsonl"))


def print_result(result: dict, json_path: str | None) -> None:
    """A benchmark's result as JSON on stdout, and in ``json_path`` when one is given."""
    text = json.dumps(result, indent=1)
    print(text)
    if json_path:
        Path(json_path).write_text(text)


@contextlib.contextmanager
def work_folder(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A fresh temporary folder for one benchmark run, removed afterwards unless ``keep``."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def iter_chunks(docs: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(docs), size):
        yield docs[i:i + size]
