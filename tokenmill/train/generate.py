"""``tokenmill generate``: sample a continuation of a prompt, for quick looks.

``--checkpoint`` takes an export dir (model.safetensors), a run dir or a
checkpoint dir. Sampling: temperature and top-k; stops at EOS.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenmill.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="export dir, run dir or checkpoint dir")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.8, help="0: greedy")
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)


def load(path: Path):
    """(model, tokenizer, eos_id) from an export, run or checkpoint dir."""
    from tokenizers import Tokenizer

    from tokenmill.train.export import WEIGHTS, load_export, load_from_checkpoint, run_dir_of

    if (path / WEIGHTS).exists():
        model, config = load_export(path)
        tokenizer_path, eos_id = path / "tokenizer.json", config["eos_id"]
    else:
        model, state = load_from_checkpoint(path)
        tokenizer_path, eos_id = run_dir_of(state["checkpoint"]) / "tokenizer.json", state.get("eos_id")
    if not tokenizer_path.exists():
        raise UserError(f"no tokenizer.json next to {path}")
    return model, Tokenizer.from_file(str(tokenizer_path)), eos_id


def sample(model, prompt_ids: list[int], max_new_tokens: int, temperature: float, top_k: int, eos_id, seed: int) -> list[int]:
    """Autoregressive sampling; the context is cropped to the model's seq_len."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = list(prompt_ids) or [eos_id if eos_id is not None else 0]
    out: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            context = torch.tensor([ids[-model.cfg.seq_len :]])  # (1, T)
            logits = model(context)[0, -1].float()  # (V,)
            if temperature <= 0:
                next_id = int(logits.argmax())
            else:
                logits = logits / temperature
                if top_k > 0:
                    kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                next_id = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen))
            if next_id == eos_id:
                break
            ids.append(next_id)
            out.append(next_id)
    return out


def main(args: argparse.Namespace) -> int:
    path = Path(args.checkpoint)
    if not path.exists():
        raise UserError(f"--checkpoint {path} does not exist")
    model, tokenizer, eos_id = load(path)
    prompt_ids = tokenizer.encode(args.prompt).ids
    new_ids = sample(model, prompt_ids, args.max_new_tokens, args.temperature, args.top_k, eos_id, args.seed)
    print(args.prompt + tokenizer.decode(new_ids))
    return 0
