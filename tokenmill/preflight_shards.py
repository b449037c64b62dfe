"""The pre-flight items about the data: shard files, the tokenizer, enough sequences.

Each function gives one item's (status, detail), as ``preflight.Check``
holds them, from the shards' ``ShardsInfo`` (``dataset.json`` as read by
the trainer); ``Preflight`` reads that first and skips these without it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

SAMPLES_DECODED = 64


def check_shard_files(info) -> tuple[str, str]:
    """Every split's index.json and shard files, sample counts, and decoded samples."""
    from tokenmill.shards import reader as mds
    from tokenmill.train import data

    root = Path(data.local_path(info.root))
    notes = []
    for split in ("train", "val"):
        files = mds.read_index(root / split)
        problems = mds.check_files(files)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return "fail", f"{split}: {problems[0]}{more}; rerun `tokenmill shards`"
        expected = info.splits[split]
        samples = sum(f.samples for f in files)
        if samples != expected.get("sequences"):
            return "fail", (f"{split}: index.json lists {samples:,} samples, dataset.json says "
                            f"{expected.get('sequences'):,}; rerun `tokenmill shards`")
        if not files:
            return "fail", f"{split}: no shard files; rerun `tokenmill shards` with more data"
        problem = decode_samples(info, files, split)
        if problem:
            return "fail", problem
        notes.append(f"{split} {samples:,} sequences in {len(files)} shard(s)")
    return "pass", f"{'; '.join(notes)}; seq_len {info.seq_len}, {info.dtype}; decoded samples look right"


def decode_samples(info, files, split: str) -> Optional[str]:
    """Decode the first samples of the first and the last shard."""
    import numpy as np

    from tokenmill.shards import reader as mds

    seen: set[int] = set()
    for f in {id(f): f for f in (files[0], files[-1])}.values():
        for i, row in enumerate(mds.decode(f, mds.shard_bytes(f))):
            if i >= SAMPLES_DECODED:
                break
            tokens = np.asarray(row.get(info.column))
            where = f"{split} {f.path.name} sample {i}"
            if tokens.shape != (info.seq_len,):
                return f"{where}: {tokens.shape} tokens, dataset.json says seq_len {info.seq_len}"
            if tokens.size and int(tokens.max()) >= info.vocab_size:
                return f"{where}: token id {int(tokens.max())} >= vocab_size {info.vocab_size}"
            if "seq_id" in row:
                if int(row["seq_id"]) in seen:
                    return f"{where}: seq_id {int(row['seq_id'])} appears twice"
                seen.add(int(row["seq_id"]))
    return None


def check_tokenizer(info, model_cfg) -> tuple[str, str]:
    """tokenizer.json against dataset.json (sha256, vocabulary, EOS) and the model's vocab_size / seq_len."""
    if info.eos_id >= model_cfg.vocab_size or info.eos_id < 0:
        return "fail", f"eos_id {info.eos_id} is outside the vocabulary (size {model_cfg.vocab_size})"
    limit = {"uint16": 1 << 16, "uint32": 1 << 32}.get(info.dtype)
    if limit is not None and info.vocab_size > limit:
        return "fail", f"vocab_size {info.vocab_size:,} does not fit token dtype {info.dtype}"
    path = info.tokenizer_path
    if not path.is_file():
        return "warn", (f"no tokenizer.json next to dataset.json ({path}): model and shards agree "
                        f"(vocab {info.vocab_size:,}, seq_len {info.seq_len}), but text cannot be decoded")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if info.tokenizer_sha256 and sha != info.tokenizer_sha256:
        return "fail", (f"{path} (sha256 {sha[:12]}) is not the tokenizer the shards were made with "
                        f"({info.tokenizer_sha256[:12]}); copy the right tokenizer.json or rebuild the shards")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    size = tok.get_vocab_size()
    if size > info.vocab_size:
        return "fail", f"tokenizer has {size:,} tokens but the model/shards vocab_size is {info.vocab_size:,}"
    eos = tok.id_to_token(info.eos_id)
    if eos is None:
        return "fail", f"eos_id {info.eos_id} is not a token of {path}"
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    if info.eos_id not in special:
        return "warn", f"EOS {eos!r} (id {info.eos_id}) is not a special token of the tokenizer"
    probe = "Pre-flight check: 42 tokens, café, naïve."
    if tok.decode(tok.encode(probe).ids) != probe:
        return "warn", "the tokenizer does not round-trip text exactly (decode(encode(x)) != x)"
    return "pass", (f"tokenizer {sha[:12]} matches; vocab {size:,} <= model {model_cfg.vocab_size:,}; "
                    f"EOS {eos!r} = {info.eos_id}; seq_len {model_cfg.seq_len}")


def check_data(cfg, info, nproc: int) -> tuple[str, str]:
    """Enough sequences for a step and an eval; the epochs the run will take."""
    train = int(info.splits["train"].get("sequences") or 0)
    val = int(info.splits["val"].get("sequences") or 0)
    if train < cfg.global_batch_size:
        return "fail", f"train has {train:,} sequences, fewer than one global batch ({cfg.global_batch_size})"
    eval_batch = cfg.micro_batch_size * nproc
    if val < eval_batch:
        return "warn", (f"val has {val:,} sequences, fewer than one eval batch ({cfg.micro_batch_size} x "
                        f"{nproc} ranks): evaluation will see no data")
    epochs = cfg.max_steps * cfg.global_batch_size / train
    detail = f"{epochs:.2f} epoch(s) over {train:,} train sequences; {val:,} val sequences"
    if epochs > 1:
        return "warn", detail + ": the run repeats data"
    return "pass", detail
