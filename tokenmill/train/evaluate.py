"""Evaluation during training: validation loss, then greedy answers to the eval prompts.

Eval prompts are answered greedily on every rank with the same inputs (every
FSDP forward pass needs every rank); rank 0's choice of each next token is
broadcast so that all ranks stop at the same step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
import torch.distributed as dist

from tokenmill.train.data import ShardsInfo
from tokenmill.train.objective import Objective


def validation_loss(objective: Objective, val_batches: Iterable, max_batches: int, device: torch.device) -> dict[str, float]:
    """Val loss over at most max_batches micro-batches of every rank (per sequence for
    pretraining, per target token for SFT), and its perplexity. Collective: every rank calls it."""
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # (loss sum, weight)
    for i, batch in enumerate(val_batches):
        if i >= max_batches:
            break
        sums += objective.eval_sums(batch)
    dist.all_reduce(sums)
    val_loss = (sums[0] / sums[1].clamp(min=1)).item()
    return {"val_loss": val_loss, "val_perplexity": math.exp(min(val_loss, 50.0))}


@dataclass(frozen=True)
class Answer:
    prompt: str
    answer: str


def load_prompting(info: ShardsInfo):
    """(tokenizer, chat template or None) for the shards' eval prompts.

    SFT shards of chat rows carry their template (tokenizer_config.json);
    instruction rows have none; pretraining prompts are plain text.
    """
    from tokenizers import Tokenizer

    from tokenmill.chat.template import load_template

    tokenizer = Tokenizer.from_file(str(info.tokenizer_path))
    template = None
    if info.kind == "sft" and info.template_path.is_file():
        template = load_template(info.template_path)
    return tokenizer, template


def prompt_ids(tokenizer, template, info: ShardsInfo, prompt: str) -> list[int]:
    """The ids the model continues, laid out as its training examples were.

    Chat template: the prompt as a user turn plus the generation prompt.
    SFT without a template (instruction rows): [BOS] + prompt ids. Pretraining: the text's ids.
    """
    if info.kind == "pretrain":
        return tokenizer.encode(prompt).ids
    if template is None:
        bos = [] if info.bos_id is None else [int(info.bos_id)]
        return bos + tokenizer.encode(prompt, add_special_tokens=False).ids
    from tokenmill.chat.template import render

    text = render(template, [{"role": "user", "content": prompt}], add_generation_prompt=True)
    return tokenizer.encode(text, add_special_tokens=False).ids


def agree_with_rank0(device: torch.device) -> Optional[Callable[[int], int]]:
    """A function returning rank 0's value of an int on every rank; None on one rank."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return None

    def agree(value: int) -> int:
        box = torch.tensor([value], dtype=torch.int64, device=device)
        dist.broadcast(box, src=0)
        return int(box.item())

    return agree


def answer_prompts(model, info: ShardsInfo, prompts: tuple[str, ...], max_new_tokens: int,
                   device: torch.device) -> list[Answer]:
    """Greedy answers; every rank must call this with the same prompts (collective)."""
    from tokenmill.train.generate import sample

    tokenizer, template = load_prompting(info)
    agree = agree_with_rank0(device)
    answers = []
    for prompt in prompts:
        ids = prompt_ids(tokenizer, template, info, prompt)
        new = sample(model, ids, max_new_tokens, 0.0, 0, {info.eos_id}, seed=0, agree=agree)
        answers.append(Answer(prompt, tokenizer.decode(new)))
    return answers


def answers_text(step: int, answers: list[Answer]) -> str:
    """The answers as JSON lines, for an MLflow text artifact."""
    return "".join(json.dumps({"step": step, "prompt": a.prompt, "answer": a.answer}) + "\n" for a in answers)
