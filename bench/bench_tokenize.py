"""Tokenize stage throughput vs raw ``Tokenizer.encode_batch`` on the same text and cores.

    python -m bench.bench_tokenize --mb 20 --cores 2

Builds ~MB of synthetic prose (the sample corpus's generators), trains a
byte-level BPE (vocab 8192) once, then measures:

* raw: ``encode_batch`` over the texts in batches of 2000, RAYON_NUM_THREADS=cores
  (and ``encode_batch_fast``, the call the stage makes, the same way);
* stage: the whole tokenize stage (encode in Spark through Arrow, pack,
  write tables/sequences) with that tokenizer.json, Spark local[cores], run
  twice in one Spark session: ``cold`` is the session's first job (Python
  workers start, the JVM compiles the shuffle/sort/Arrow code paths), ``warm``
  the same stage again, as it runs inside ``tokenmill run`` after other stages.

Prints one JSON line with MB/s of text for each and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_docs(mb: float, seed: int = 0) -> list[tuple[str, str, str]]:
    from tokenmill.sample import prose

    rng = random.Random(seed)
    makers = [("web", prose.web_page), ("news", prose.news_story), ("forum", prose.forum_post)]
    docs, size, i = [], 0, 0
    while size < mb * 1e6:
        if i % 10 == 0:
            source, text = "books", prose.long_article(rng, 800)
        else:
            source, make = makers[i % 3]
            text = make(rng)[0]
        docs.append((f"doc{i:08d}", source, text))
        size += len(text.encode())
        i += 1
    return docs


def raw(tokenizer_json: str, texts: list[str], cores: int, method: str = "encode_batch") -> float:
    """Seconds for ``method`` over all texts, in a fresh process pinned to cores threads."""
    code = (
        "import json,sys,time\n"
        "from tokenizers import Tokenizer\n"
        "tok=Tokenizer.from_file(sys.argv[1]); texts=json.load(open(sys.argv[2]))\n"
        f"encode=tok.{method}\n"
        "t=time.perf_counter()\n"
        "for i in range(0,len(texts),2000): encode(texts[i:i+2000], add_special_tokens=False)\n"
        "print(time.perf_counter()-t)\n"
    )
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "t.json").write_text(json.dumps(texts))
        env = {**os.environ, "RAYON_NUM_THREADS": str(cores), "TOKENIZERS_PARALLELISM": "true"}
        out = subprocess.run([sys.executable, "-c", code, tokenizer_json, str(Path(d) / "t.json")],
                             env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def stage(tokenizer_json: str, docs, cores: int, workdir: Path) -> tuple[float, float, int]:
    """Seconds for the tokenize stage (tokenizer given, so no training): cold, then warm; tokens."""
    os.environ["TOKENMILL_SPARK_CORES"] = str(cores)
    os.environ.setdefault("TOKENMILL_PROGRESS_S", "0")
    from tokenmill import tables
    from tokenmill.config import RunConfig, from_dict
    from tokenmill.pipeline import run_stages
    from tokenmill.spark import get_spark

    spark = get_spark("bench-tokenize", cores=cores)
    rows = [(i, s, t, "{}", len(t), len(t.split()), 1.0) for i, s, t in docs]
    schema = "id string, source string, text string, meta string, n_chars int, n_words int, quality double"
    out = workdir / "out"
    tables.write(spark.createDataFrame(rows, schema).repartition(cores * 2), str(out / "tables" / "clean"))
    cfg = from_dict(RunConfig, {"output": str(out), "tokenize": {
        "tokenizer": tokenizer_json, "seq_len": 2048, "pack_groups": cores * 2}})
    walls = []
    for _ in ("cold", "warm"):
        t = time.perf_counter()
        manifest = run_stages(spark, cfg, ["tokenize"], force=True)
        walls.append(time.perf_counter() - t)
    return walls[0], walls[1], manifest.stages["tokenize"].extra["tokens"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=20)
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    from tokenmill.config.tokenize import TokenizeConfig
    from tokenmill.tokenize.tokenizer import train_bpe

    docs = make_docs(args.mb)
    texts = [t for _, _, t in docs]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    with tempfile.TemporaryDirectory() as d:
        tok_path = str(Path(d) / "tokenizer.json")
        train_bpe(texts[:3000], TokenizeConfig(vocab_size=8192)).save(tok_path)
        raw_s = raw(tok_path, texts, args.cores)
        raw_fast_s = raw(tok_path, texts, args.cores, "encode_batch_fast")
        cold_s, stage_s, tokens = stage(tok_path, docs, args.cores, Path(d))
    print(json.dumps({
        "text_mb": round(mb, 2), "docs": len(docs), "tokens": tokens, "cores": args.cores,
        "raw_s": round(raw_s, 2), "raw_mb_s": round(mb / raw_s, 2),
        "raw_fast_s": round(raw_fast_s, 2), "raw_fast_mb_s": round(mb / raw_fast_s, 2),
        "stage_cold_s": round(cold_s, 2), "stage_cold_mb_s": round(mb / cold_s, 2),
        "stage_s": round(stage_s, 2), "stage_mb_s": round(mb / stage_s, 2),
        "stage_over_raw": round(raw_s / stage_s, 3),
        "cold_over_raw": round(raw_s / cold_s, 3),
        "stage_over_raw_fast": round(raw_fast_s / stage_s, 3),
        "load": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
