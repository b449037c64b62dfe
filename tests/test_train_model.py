"""The GPT model on one device: shapes, causality, positions, init, presets."""

from __future__ import annotations

import math

import pytest
import torch

from tokenmill.train.config import ModelConfig, load_config, model_config
from tokenmill.train.model import GPT, alibi_slopes, apply_rope, count_params, flops_per_token, lm_loss, rope_tables

VARIANTS = [
    dict(),
    dict(norm="rmsnorm", position="rope", mlp="swiglu", tie_embeddings=False),
    dict(n_heads=6, d_model=48),  # head count that is not a power of two (ALiBi)
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_shape_and_causality(variant):
    cfg = ModelConfig(**{"d_model": 32, "n_layers": 2, "n_heads": 4, "vocab_size": 50, "seq_len": 16, **variant})
    model = GPT(cfg)
    model.init_weights(0)
    tokens = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(0))
    logits = model(tokens)
    assert logits.shape == (2, 16, 50)
    # Changing tokens from position 10 on must not change logits before 10.
    changed = tokens.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 50
    other = model(changed)
    assert torch.equal(logits[:, :10], other[:, :10])
    assert not torch.allclose(logits[:, 10:], other[:, 10:])
    # Shorter inputs work too (generation crops the context).
    assert model(tokens[:, :5]).shape == (2, 5, 50)


def test_no_biases_anywhere():
    model = GPT(ModelConfig(d_model=32, n_layers=2, n_heads=4, vocab_size=50, seq_len=16))
    assert not [n for n, _ in model.named_parameters() if "bias" in n]


def test_alibi_slopes_follow_the_paper():
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    six = alibi_slopes(6)  # from the 8-head slopes: odd ones, then even ones
    assert torch.allclose(six, torch.tensor([2.0**-1, 2.0**-3, 2.0**-5, 2.0**-7, 2.0**-2, 2.0**-4]))


def test_rope_scores_depend_only_on_relative_position():
    cos, sin = rope_tables(8, 32, 10000.0)
    q = torch.randn(1, 1, 1, 8).expand(1, 1, 32, 8)
    k = torch.randn(1, 1, 1, 8).expand(1, 1, 32, 8)
    qr, kr = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    score = lambda i, j: (qr[0, 0, i] * kr[0, 0, j]).sum()  # noqa: E731
    assert torch.allclose(score(5, 2), score(20, 17), atol=1e-5)
    assert not torch.allclose(score(5, 2), score(5, 4), atol=1e-3)


def test_scaled_init_shrinks_residual_projections():
    cfg = ModelConfig(d_model=256, n_layers=8, n_heads=4, vocab_size=64, seq_len=8)
    model = GPT(cfg)
    model.init_weights(0)
    block = model.blocks["0"]
    assert block.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.attn.out.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert block.mlp.down.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert torch.equal(block.norm_attn.weight, torch.ones(256))
    # Same seed, same weights; tied head.
    again = GPT(cfg)
    again.init_weights(0)
    assert torch.equal(again.embed.weight, model.embed.weight)
    assert model.head.weight is model.embed.weight


def test_initial_loss_is_near_uniform():
    cfg = ModelConfig(d_model=64, n_layers=2, n_heads=4, vocab_size=300, seq_len=32)
    model = GPT(cfg)
    model.init_weights(0)
    tokens = torch.randint(0, 300, (4, 32))
    assert lm_loss(model(tokens), tokens).item() == pytest.approx(math.log(300), rel=0.05)


@pytest.mark.parametrize(
    "preset, low, high", [("125m", 115e6, 135e6), ("350m", 330e6, 380e6), ("1b", 1.2e9, 1.4e9), ("7b", 6.4e9, 7.0e9)]
)
def test_presets_have_their_size(preset, low, high):
    cfg = load_config(f"configs/train_{preset}.yaml")
    model_cfg = model_config(cfg.model, vocab_size=50304, seq_len=2048)
    n = count_params(model_cfg)  # meta device: nothing is allocated
    assert low <= n <= high
    assert flops_per_token(model_cfg) == pytest.approx(6 * n + 12 * model_cfg.n_layers * model_cfg.d_model * 2048)


def test_swiglu_width_keeps_parameter_count_close_to_gelu():
    gelu = count_params(ModelConfig(d_model=768, n_layers=2, n_heads=12, vocab_size=100, seq_len=8))
    swiglu = count_params(ModelConfig(d_model=768, n_layers=2, n_heads=12, vocab_size=100, seq_len=8, mlp="swiglu"))
    assert abs(swiglu - gelu) / gelu < 0.02
