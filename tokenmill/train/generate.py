"""``tokenmill generate``: sample a continuation of a prompt, for quick looks.

``--checkpoint`` takes a Hugging Face folder (``tokenmill export``'s, or an
open model's), a run dir or a checkpoint dir. Sampling: temperature
(0: greedy) and top-k (0: no cut); stops at EOS.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from tokenmill.errors import UserError
from tokenmill.run_dir import RunDir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="export dir, run dir or checkpoint dir")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-new-tokens", type=int, default=64, help="at most this many tokens (>= 1)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0: greedy; higher: more varied")
    parser.add_argument("--top-k", type=int, default=50, help="sample among the k likeliest tokens; 0: all")
    parser.add_argument("--seed", type=int, default=0)


def check_sampling(max_new_tokens: int, temperature: float, top_k: int) -> None:
    """The sampling flags, checked before any checkpoint is loaded."""
    if max_new_tokens < 1:
        raise UserError(f"--max-new-tokens: must be >= 1, got {max_new_tokens}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise UserError(f"--temperature: must be >= 0 (0: greedy), got {temperature}")
    if top_k < 0:
        raise UserError(f"--top-k: must be >= 0 (0: no top-k cut), got {top_k}")


def load(path: Path):
    """(model, tokenizer, eos_ids) from a Hugging Face folder, run dir or checkpoint dir."""
    from tokenizers import Tokenizer

    from tokenmill.train.export import load_from_checkpoint, run_dir_of

    if (path / "config.json").is_file() and not RunDir(path).checkpoints.is_dir():
        from tokenmill.train.base_model import load_pretrained
        from tokenmill.train.hf_io import read_config

        model, _ = load_pretrained(path)
        tokenizer_path, eos_ids = path / "tokenizer.json", hf_eos_ids(path, read_config(path))
    else:
        model, state = load_from_checkpoint(path)
        tokenizer_path, eos_ids = run_dir_of(state["checkpoint"]) / "tokenizer.json", {state.get("eos_id")}
    if not tokenizer_path.exists():
        raise UserError(f"no tokenizer.json next to {path}")
    return model, Tokenizer.from_file(str(tokenizer_path)), eos_ids


def hf_eos_ids(path: Path, config: dict) -> set:
    """EOS ids of a Hugging Face folder: generation_config.json's (one or a list), else config.json's."""
    import json

    eos = config.get("eos_token_id")
    generation = path / "generation_config.json"
    if generation.is_file():
        eos = json.loads(generation.read_text()).get("eos_token_id", eos)
    return set(eos) if isinstance(eos, list) else {eos}


def sample(model, prompt_ids: list[int], max_new_tokens: int, temperature: float, top_k: int, eos_ids, seed: int,
           agree=None) -> list[int]:
    """Autoregressive sampling; the context is cropped to the model's seq_len.

    ``eos_ids``: a set of ids that end the text (not included in the output).
    ``agree``: maps each chosen id to the id all ranks use (under FSDP every
    rank runs every forward pass, so all must stop at the same step).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    eos_ids = {i for i in eos_ids if i is not None}
    ids = list(prompt_ids) or [min(eos_ids) if eos_ids else 0]
    out: list[int] = []
    device = next(model.parameters()).device
    with torch.no_grad():
        for _ in range(max_new_tokens):
            context = torch.tensor([ids[-model.cfg.seq_len :]], device=device)  # (1, T)
            logits = model(context)[0, -1].float()  # (V,)
            if temperature <= 0:
                next_id = int(logits.argmax())
            else:
                logits = logits / temperature
                if top_k > 0:
                    kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                next_id = int(torch.multinomial(torch.softmax(logits.cpu(), -1), 1, generator=gen))
            if agree is not None:
                next_id = agree(next_id)
            if next_id in eos_ids:
                break
            ids.append(next_id)
            out.append(next_id)
    return out


def main(args: argparse.Namespace) -> int:
    check_sampling(args.max_new_tokens, args.temperature, args.top_k)
    path = Path(args.checkpoint)
    if not path.exists():
        raise UserError(f"--checkpoint {path} does not exist")
    model, tokenizer, eos_ids = load(path)
    prompt_ids = tokenizer.encode(args.prompt).ids
    new_ids = sample(model, prompt_ids, args.max_new_tokens, args.temperature, args.top_k, eos_ids, args.seed)
    print(args.prompt + tokenizer.decode(new_ids))
    return 0
