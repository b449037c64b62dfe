"""FSDP2 on 2 gloo ranks computes the same gradients as one plain process,
with gradient accumulation and with activation checkpointing."""

from __future__ import annotations

import torch

from tokenmill.train.config import ModelConfig
from tokenmill.train.parallelize import build_model
from tokenmill.train.model import GPT, lm_loss

from ranks import spawn_ranks

CFG = ModelConfig(d_model=32, n_layers=2, n_heads=4, vocab_size=97, seq_len=16, mlp="swiglu", position="rope")
SEED = 3


def batch() -> torch.Tensor:
    return torch.randint(0, CFG.vocab_size, (8, CFG.seq_len), generator=torch.Generator().manual_seed(11))


def fsdp_worker(rank: int, world: int, out: str) -> None:
    """Gradients with 1 and with 2 micro-batches per rank; rank 0 saves them."""
    results = {}
    # (micro-batches per rank, activation checkpointing)
    for accum, ac in ((1, False), (2, False), (2, True)):
        model = build_model(CFG, torch.device("cpu"), activation_checkpointing=ac)
        model.init_weights(SEED)
        # This rank's rows of the global batch, split into `accum` micro-batches.
        mine = batch().chunk(world)[rank].chunk(accum)
        for i, micro in enumerate(mine):
            # Reduce-scatter only after the last micro-batch (no_sync for the others).
            model.set_requires_gradient_sync(i == accum - 1)
            (lm_loss(model(micro), micro) / accum).backward()
        results[(accum, ac)] = {_clean(name): p.grad.full_tensor() for name, p in model.named_parameters()}
    if rank == 0:
        torch.save(results, out)


def _clean(name: str) -> str:
    """Parameter name without the activation-checkpoint wrapper's prefix."""
    return name.replace("_checkpoint_wrapped_module.", "")


def reference_grads() -> dict[str, torch.Tensor]:
    model = GPT(CFG)
    model.init_weights(SEED)
    tokens = batch()
    lm_loss(model(tokens), tokens).backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_fsdp_grads_on_two_ranks_equal_single_process(tmp_path):
    out = str(tmp_path / "grads.pt")
    spawn_ranks(fsdp_worker, out)
    results, want = torch.load(out), reference_grads()
    assert len(results) == 3
    for (accum, ac), got in results.items():
        assert got.keys() == want.keys()
        for name in want:
            assert want[name].abs().max() > 0, name
            torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7, msg=f"accum={accum} ac={ac} {name}")
