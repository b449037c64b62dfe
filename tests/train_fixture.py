"""Write a small shards dir in the shards-stage format, for tests and benches.

The text is synthetic but regular (simple sentences from a small grammar),
so a tiny model's loss falls quickly. The tokenizer is a small byte-level BPE
trained in-process: nothing is downloaded. Test scaffolding, not part of the
package: tests import it as a sibling module (``from train_fixture import
write_fixture``), benches put tests/ on ``sys.path`` first.

    python tests/train_fixture.py OUT [--train 256 --val 32 --seq-len 64]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from pathlib import Path

import numpy as np

from tokenmill.shards.dataset_info import TEXT_FORMAT, DatasetInfo

SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the small bird", "a farmer", "the teacher"]
VERBS = ["sees", "likes", "carries", "follows", "paints", "finds", "feeds"]
OBJECTS = ["the red ball", "a green apple", "the river", "two stones", "the big house", "a letter", "the garden"]
ENDINGS = ["today", "at night", "in the morning", "again", "with care", "near the hill"]


def synthetic_documents(n_docs: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        sentences = []
        for _ in range(rng.randint(2, 6)):
            words = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(ENDINGS)]
            sentences.append(" ".join(words).capitalize() + ".")
        docs.append(" ".join(sentences))
    return docs


def train_tokenizer(docs: list[str], vocab_size: int, special_tokens: tuple[str, ...] = ("<|endoftext|>",)):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(docs, trainer)
    return tokenizer


def pack(docs: list[str], tokenizer, eos_id: int, seq_len: int, n_sequences: int) -> np.ndarray:
    """Concatenate documents, each followed by EOS, into (n_sequences, seq_len) windows."""
    stream: list[int] = []
    needed = n_sequences * seq_len
    i = 0
    while len(stream) < needed:
        stream.extend(tokenizer.encode(docs[i % len(docs)]).ids)
        stream.append(eos_id)
        i += 1
    return np.array(stream[:needed], dtype=np.int64).reshape(n_sequences, seq_len)


def write_split(out: Path, sequences: np.ndarray, first_id: int, dtype: str, size_limit: int) -> int:
    from streaming import MDSWriter

    columns = {"tokens": f"ndarray:{dtype}:{sequences.shape[1]}", "seq_id": "int64"}
    with MDSWriter(out=str(out), columns=columns, compression="zstd", size_limit=size_limit) as writer:
        for i, row in enumerate(sequences):
            writer.write({"tokens": row.astype(dtype), "seq_id": first_id + i})
    return len(list(out.glob("shard.*.mds*")))


def write_fixture(
    out: str | Path,
    n_train: int = 256,
    n_val: int = 32,
    seq_len: int = 64,
    vocab_size: int = 512,
    seed: int = 0,
    size_limit: int = 1 << 14,
) -> Path:
    """Write S/{dataset.json, tokenizer.json, train/, val/}; returns S."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    docs = synthetic_documents(400, seed)
    tokenizer = train_tokenizer(docs, vocab_size)
    tokenizer.save(str(out / "tokenizer.json"))
    eos_id = tokenizer.token_to_id("<|endoftext|>")
    dtype = "uint16" if tokenizer.get_vocab_size() <= 65535 else "uint32"
    all_seqs = pack(docs, tokenizer, eos_id, seq_len, n_train + n_val)
    splits = {}
    # seq_ids are unique across splits: train 0..n_train-1, val after.
    for name, rows, first in (("train", all_seqs[:n_train], 0), ("val", all_seqs[n_train:], n_train)):
        shards = write_split(out / name, rows, first, dtype, size_limit)
        splits[name] = {"sequences": len(rows), "tokens": int(rows.size), "shards": shards}
    DatasetInfo(
        format=TEXT_FORMAT,
        column="tokens",
        dtype=dtype,
        seq_len=seq_len,
        vocab_size=tokenizer.get_vocab_size(),
        eos_id=eos_id,
        bos_id=None,
        tokenizer_sha256=hashlib.sha256((out / "tokenizer.json").read_bytes()).hexdigest(),
        splits=splits,
    ).write(out)
    return out


# --- fine-tuning shards (format tokenmill-mds-sft-v1), without Spark ----------------

CHAT_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def synthetic_conversations(n: int, seed: int) -> list[list[dict]]:
    """Questions about a subject answered with that subject's fixed sentence (learnable), 1-2 turns."""
    rng = random.Random(seed)
    answer = {s: f"{s.capitalize()} {VERBS[i % len(VERBS)]} {OBJECTS[(3 * i) % len(OBJECTS)]}."
              for i, s in enumerate(SUBJECTS)}
    conversations = []
    for _ in range(n):
        turns = []
        for _ in range(rng.randint(1, 2)):
            subject = rng.choice(SUBJECTS)
            turns += [{"role": "user", "content": f"What does {subject} do?"},
                      {"role": "assistant", "content": answer[subject]}]
        conversations.append(turns)
    return conversations


def _write_sft_split(out: Path, windows: list, spec) -> dict:
    from streaming import MDSWriter

    from tokenmill.chat.shards import columns

    with MDSWriter(out=str(out), columns=columns(spec), compression="zstd", size_limit=spec.size_limit) as writer:
        for sid, w, _, _ in windows:
            writer.write({"tokens": w.tokens.astype(spec.dtype), "loss_mask": w.loss_mask.astype(np.uint8),
                          "doc_ids": w.doc_ids.astype(np.uint16), "seq_id": int(sid)})
    return {"sequences": len(windows), "examples": sum(r[2] for r in windows),
            "tokens": sum(r[1].n_tokens for r in windows), "targets": sum(r[1].n_targets for r in windows),
            "shards": len(list(out.glob("shard.*.mds*"))), "bytes": 0}


def write_sft_fixture(out: str | Path, n_train: int = 256, n_val: int = 32, seq_len: int = 64,
                      vocab_size: int = 512, seed: int = 0, size_limit: int = 1 << 14) -> Path:
    """SFT shards S/{dataset.json, tokenizer.json, tokenizer_config.json, train/, val/} of
    (at most) n_train / n_val ChatML conversations, encoded, masked and packed by the chat stage's
    own functions (tokenmill/chat/mask.py, pack.py); returns S."""
    from tokenmill.config.chat import ChatConfig
    from tokenmill.chat.mask import ChatEncoder
    from tokenmill.chat.pack import pack_group
    from tokenmill.chat.shards import SftShardSpec, dataset_info, write_metadata
    from tokenmill.chat.template import CHATML, ChatTemplate
    from tokenmill.chat.validate import Message

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    conversations = synthetic_conversations(n_train + n_val, seed)
    tok = train_tokenizer(synthetic_documents(200, seed) + [m["content"] for c in conversations for m in c],
                          vocab_size, CHAT_SPECIALS)
    template = ChatTemplate(CHATML, "chatml", (("eos_token", "<|im_end|>"), ("pad_token", "<|endoftext|>")))
    enc = ChatEncoder(tok, template, ChatConfig(), seq_len)
    encoded = [enc.encode(tuple(Message(m["role"], m["content"]) for m in c)).example for c in conversations]
    examples = [e for e in encoded if e is not None]  # too long for seq_len: left out
    spec = SftShardSpec(seq_len, "uint16", tok.get_vocab_size(), enc.special.eos_id, None, enc.special.pad_id,
                        hashlib.sha256(tok.to_str().encode()).hexdigest(), template.sha256, size_limit=size_limit)
    written = []
    for group, (split, part) in enumerate((("train", examples[:n_train]), ("val", examples[n_train:]))):
        part = sorted(part, key=lambda e: -len(e.ids))  # longest first, as the packer wants
        windows = pack_group(group, [np.array(e.ids) for e in part], [np.array(e.mask) for e in part],
                             ["fixture"] * len(part), seq_len, spec.pad_id)
        written.append({"split": split, "part": 0, **_write_sft_split(out / split, windows, spec)})
    write_metadata(str(out), tok.to_str(), template)
    dataset_info(spec, written).write(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--val", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--vocab-size", type=int, default=512)
    args = parser.parse_args()
    write_fixture(args.out, args.train, args.val, args.seq_len, args.vocab_size)
    print(args.out)


if __name__ == "__main__":
    main()


# --- tiny open-model checkpoints, made with transformers itself ----------------------

TINY_HF = {
    # GQA and Llama 3.1's RoPE scaling (its original context below the test lengths).
    "llama": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, rope_theta=500000.0, max_position_embeddings=256,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                  tie_word_embeddings=True),
    "mistral": dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=1, max_position_embeddings=256, tie_word_embeddings=False),
    "qwen2": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False),
    "mpt": dict(d_model=64, n_heads=4, n_layers=2, max_seq_len=256),
}
HF_CLASSES = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "mpt": "Mpt"}


def write_hf_model(
    out: str | Path,
    family: str,
    vocab_size: int = 512,
    tokenizer_dir: str | Path | None = None,
    seed: int = 0,
    dtype: str = "float32",
    max_shard_size: str | None = None,
    **overrides,
) -> Path:
    """A random ``<Family>ForCausalLM`` saved with ``save_pretrained`` (tiny unless overridden).

    ``tokenizer_dir``: copy its tokenizer.json in, with a tokenizer_config.json
    that names its EOS, so the folder looks like a real open model.
    """
    import shutil

    import torch
    import transformers

    out = Path(out)
    name = HF_CLASSES[family]
    config = getattr(transformers, f"{name}Config")(vocab_size=vocab_size, **{**TINY_HF[family], **overrides})
    torch.manual_seed(seed)
    model = getattr(transformers, f"{name}ForCausalLM")(config).to(getattr(torch, dtype))
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(out), **kwargs)
    if tokenizer_dir is not None:
        shutil.copyfile(Path(tokenizer_dir) / "tokenizer.json", out / "tokenizer.json")
        tokenizer_config = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>",
                            "bos_token": None, "model_max_length": 256}
        (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    return out
