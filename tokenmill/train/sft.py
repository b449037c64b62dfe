"""Fine-tuning steps on SFT shards: masked loss over the global batch, eval prompts.

The loss of one optimizer step is

    sum of cross-entropy over every target token of the global batch
    ----------------------------------------------------------------
             number of target tokens in the global batch

where the global batch is every micro-batch of gradient accumulation on
every rank. Each micro-batch's loss sum is divided by that one global count
(all-reduced before the first backward pass), not by its own count: a mean
of per-micro-batch means would weigh a target in a short micro-batch more
than one in a long micro-batch. FSDP2 averages gradients over ranks, so each
rank scales its loss by the world size; the reduced gradient is then the
gradient of the loss above.

Eval prompts are answered greedily on every rank with the same inputs (every
FSDP forward pass needs every rank); rank 0's choice of each next token is
broadcast so that all ranks stop at the same step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.distributed as dist

from tokenmill.train.data import Batch, ShardsInfo
from tokenmill.train.model import masked_lm_loss

# (tokens (B, T), doc_ids (B, T)) -> logits (B, T, V)
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def local_targets(batches: list[Batch]) -> int:
    """Target tokens in these micro-batches (token t is one where loss_mask[t], t >= 1)."""
    return sum(int(b.loss_mask[:, 1:].sum()) for b in batches)


def global_sum(value: float, device: torch.device) -> float:
    """Sum of a number over all ranks."""
    total = torch.tensor(float(value), dtype=torch.float64, device=device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(total)
    return float(total.item())


def masked_backward(model, forward: Forward, batches: list[Batch], device: torch.device) -> float:
    """Backward of one optimizer step's masked loss (see the module docstring); returns the loss.

    Gradients are reduced across ranks only on the last micro-batch.
    """
    world = dist.get_world_size() if dist.is_initialized() else 1
    count = max(1.0, global_sum(local_targets(batches), device))  # a batch without targets adds nothing
    scale = world / count
    total = torch.zeros((), dtype=torch.float64, device=device)
    for i, batch in enumerate(batches):
        model.set_requires_gradient_sync(i == len(batches) - 1)
        tokens = batch.tokens.to(device, non_blocking=True)  # (B, T)
        logits = forward(tokens, batch.doc_ids.to(device, non_blocking=True))  # (B, T, V)
        loss_sum, _ = masked_lm_loss(logits, tokens, batch.loss_mask.to(device, non_blocking=True))
        (loss_sum * scale).backward()
        total += loss_sum.detach().double()
    return global_sum(total.item(), device) / count


def eval_sums(forward: Forward, batch: Batch, device: torch.device) -> torch.Tensor:
    """(loss sum, target count) of one val micro-batch, float64 on device."""
    tokens = batch.tokens.to(device)
    loss_sum, count = masked_lm_loss(forward(tokens, batch.doc_ids.to(device)), tokens, batch.loss_mask.to(device))
    return torch.stack([loss_sum.double(), count.double()])


# ----- eval prompts ---------------------------------------------------------------------


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
