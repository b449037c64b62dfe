"""Get the tokenizer: read a tokenizer.json, or train a byte-level BPE.

Training uses a seeded sample of the input table chosen by a hash of each
document id, so the sample (and hence the vocabulary) does not depend on
how Spark partitions or orders the table.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tokenmill.config.tokenize import AUTO, DEFAULT_EOS, TokenizeConfig
from tokenmill.errors import UserError
from tokenmill.hashing import file_sha256


@dataclass(frozen=True)
class TokenizerInfo:
    path: str  # the tokenizer.json used (copied into the output)
    sha256: str
    vocab_size: int
    eos_id: int
    bos_id: int | None
    train_s: float = 0.0  # seconds spent sampling and training (0 for a given tokenizer)

    @property
    def dtype(self) -> str:
        return token_dtype(self.vocab_size)


def token_dtype(vocab_size: int) -> str:
    """The smallest unsigned dtype that holds every token id."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def tokenizer_file(source: str | Path) -> Path:
    """The tokenizer.json of ``tokenize.tokenizer``: the file itself, or the one in a model folder."""
    path = Path(source)
    return path / "tokenizer.json" if path.is_dir() else path


def load(path: str | Path) -> Tokenizer:
    path = tokenizer_file(path)
    if not path.is_file():
        raise UserError(f"tokenizer file not found: {path} (set tokenize.tokenizer to a tokenizer.json, "
                        "or leave it empty to train one)")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
        raise UserError(f"cannot read tokenizer {path}: {exc}") from None


def special_id(tok: Tokenizer, token: str | None, field: str) -> int | None:
    if token is None:
        return None
    tid = tok.token_to_id(token)
    if tid is None:
        raise UserError(f"tokenize.{field}: {token!r} is not in the tokenizer's vocabulary; "
                        "set it to one of its special tokens")
    return tid


def train_bpe(texts: list[str], cfg: TokenizeConfig) -> Tokenizer:
    """A byte-level BPE (GPT-2 style, no normaliser: decode(encode(t)) == t)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(cfg.special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def sample_texts(df, n_docs: int, seed: int, total: int, max_bytes: int = 0) -> list[str]:
    """A seeded random sample of the table's ``total`` texts, in id order.

    At most ``n_docs`` texts, and with ``max_bytes`` (> 0) about that much
    UTF-8 text: the hash picks a fraction of the rows that holds that many
    bytes on average, and the texts past the budget are cut off. Picked by a
    hash of the id, so the sample does not depend on partitioning or order.
    """
    from pyspark.sql import functions as F

    if total == 0:
        raise UserError("cannot train a tokenizer on an empty table; give tokenize.tokenizer a tokenizer.json")
    fraction = min(1.0, n_docs / total)
    if max_bytes:
        total_bytes = df.agg(F.sum(F.octet_length("text"))).first()[0] or 0
        fraction = min(fraction, max_bytes / max(total_bytes, 1))
    bucket = F.pmod(F.xxhash64(F.lit(seed), F.col("id")), F.lit(1_000_000))
    picked = df.where(bucket < int(fraction * 1_000_000) if fraction < 1 else F.lit(True))
    texts = picked.select("id", "text").orderBy("id").limit(n_docs).toArrow().column("text").to_pylist()
    return within_bytes(texts, max_bytes) if max_bytes else texts


def within_bytes(texts: list[str], max_bytes: int) -> list[str]:
    """The leading texts up to the one that reaches ``max_bytes`` (at least one text)."""
    kept, size = [], 0
    for text in texts:
        if kept and size >= max_bytes:
            break
        kept.append(text)
        size += len(text.encode("utf-8", "surrogatepass"))
    return kept


def prepare(df, cfg: TokenizeConfig, out_path: str | Path, total: int) -> TokenizerInfo:
    """Write the tokenizer to ``out_path`` (copy or freshly trained) and describe it."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    started = time.perf_counter()
    if cfg.tokenizer:
        source = tokenizer_file(cfg.tokenizer)
        load(source)  # fail early on a bad file
        shutil.copyfile(source, tmp)
    else:
        tok = train_bpe(sample_texts(df, cfg.train_docs, cfg.train_seed, total, cfg.train_bytes), cfg)
        tok.save(str(tmp))
    os.replace(tmp, out_path)
    train_s = 0.0 if cfg.tokenizer else round(time.perf_counter() - started, 2)
    return dataclasses.replace(describe(out_path, cfg), train_s=train_s)


def describe(path: str | Path, cfg: TokenizeConfig) -> TokenizerInfo:
    tok = load(path)
    eos, bos = special_tokens(cfg, tok)
    return TokenizerInfo(
        path=str(path),
        sha256=file_sha256(path),
        # Ids may be sparse: the dtype and the model's embedding need max id + 1.
        vocab_size=max(tok.get_vocab(with_added_tokens=True).values()) + 1,
        eos_id=special_id(tok, eos, "eos_token"),
        bos_id=special_id(tok, bos, "bos_token"),
    )


def special_tokens(cfg: TokenizeConfig, tok: Tokenizer) -> tuple[str, str | None]:
    """(EOS, BOS or None): as configured, or "auto" from the model folder the tokenizer came from."""
    folder = Path(cfg.tokenizer) if cfg.tokenizer and Path(cfg.tokenizer).is_dir() else None
    named = model_folder_tokens(folder, tok) if folder else {}
    eos = cfg.eos_token
    if eos == AUTO:
        eos = named.get("eos_token") or DEFAULT_EOS
        if folder and not named.get("eos_token"):
            raise UserError(f"{folder}: neither tokenizer_config.json nor generation_config.json names an EOS "
                            f"token; set tokenize.eos_token")
    bos = cfg.bos_token
    if bos == AUTO:
        bos = named.get("bos_token") if named.get("bos_token") and adds_bos(tok, named["bos_token"]) else None
    return eos, bos


def model_folder_tokens(folder: Path, tok: Tokenizer) -> dict[str, str]:
    """eos_token / bos_token of a Hugging Face model folder (tokenizer_config.json first)."""
    import json

    def read(name: str) -> dict:
        path = folder / name
        try:
            return json.loads(path.read_text()) if path.is_file() else {}
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} is not valid JSON: {exc}") from None

    def content(value):  # a token is a string or {"content": ...}
        return value.get("content") if isinstance(value, dict) else value

    found = {k: content(read("tokenizer_config.json").get(k)) for k in ("eos_token", "bos_token")}
    generation = read("generation_config.json")
    for key in ("eos_token", "bos_token"):
        token_id = generation.get(f"{key}_id")
        if not found[key] and token_id is not None:
            token_id = token_id[0] if isinstance(token_id, list) else token_id
            found[key] = tok.id_to_token(int(token_id))
    return {k: v for k, v in found.items() if v}


def adds_bos(tok: Tokenizer, bos: str) -> bool:
    """Whether the tokenizer puts ``bos`` in front of a text by itself (its post-processor)."""
    ids = tok.encode("a", add_special_tokens=True).ids
    return bool(ids) and ids[0] == tok.token_to_id(bos)
