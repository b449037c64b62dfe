"""The GPT model on one device: shapes, causality, positions, init, presets."""

from __future__ import annotations

import math

import pytest
import torch

from tokenmill.train.attention import Masking, document_layout, flex_attend, masked_attend
from tokenmill.train.config import AttentionConfig, ModelConfig, RopeScaling, load_config, model_config
from tokenmill.train.model import GPT, alibi_slopes, apply_rope, count_params, flops_per_token, lm_loss, rope_tables

VARIANTS = [
    dict(),
    dict(norm="rmsnorm", position="rope", mlp="swiglu", tie_embeddings=False),
    dict(n_heads=6, d_model=48),  # head count that is not a power of two (ALiBi)
    dict(norm="rmsnorm", position="rope", mlp="swiglu", n_kv_heads=2, qkv_bias=True, d_ff=40,
         rope_scaling=RopeScaling(factor=8.0, original_context=8)),  # Llama 3 / Qwen2 parts
    dict(attention=AttentionConfig(doc_mask=True)),
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


def test_no_biases_unless_asked():
    model = GPT(ModelConfig(d_model=32, n_layers=2, n_heads=4, vocab_size=50, seq_len=16))
    assert not [n for n, _ in model.named_parameters() if "bias" in n]
    qwen = GPT(ModelConfig(d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, vocab_size=50, seq_len=16, qkv_bias=True))
    qwen.init_weights(0)
    biases = {n: p for n, p in qwen.named_parameters() if "bias" in n}
    assert sorted(biases) == ["blocks.0.attn.k.bias", "blocks.0.attn.q.bias", "blocks.0.attn.v.bias"]
    assert all(torch.equal(p, torch.zeros_like(p)) for p in biases.values())
    assert qwen.blocks["0"].attn.k.weight.shape == (16, 32)  # 2 kv heads x head dim 8


def test_alibi_slopes_match_mpt():
    from transformers.models.mpt.modeling_mpt import build_mpt_alibi_tensor

    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    six = alibi_slopes(6)  # from the 8-head slopes: odd-numbered ones, then even ones (MPT's order)
    assert torch.allclose(six, torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]))
    for heads in (4, 6, 12):
        reference = build_mpt_alibi_tensor(heads, 2)[:, 0, 0]  # bias of the key one step back = -slope
        assert torch.allclose(alibi_slopes(heads), -reference)


def test_rope_scores_depend_only_on_relative_position():
    cos, sin = rope_tables(ModelConfig(d_model=32, n_heads=4, position="rope"), 32)
    q = torch.randn(1, 1, 1, 8).expand(1, 1, 32, 8)
    k = torch.randn(1, 1, 1, 8).expand(1, 1, 32, 8)
    qr, kr = apply_rope(q, cos[None, None], sin[None, None]), apply_rope(k, cos[None, None], sin[None, None])
    score = lambda i, j: (qr[0, 0, i] * kr[0, 0, j]).sum()  # noqa: E731
    assert torch.allclose(score(5, 2), score(20, 17), atol=1e-5)
    assert not torch.allclose(score(5, 2), score(5, 4), atol=1e-3)


def test_scaled_init_shrinks_residual_projections():
    cfg = ModelConfig(d_model=256, n_layers=8, n_heads=4, vocab_size=64, seq_len=8)
    model = GPT(cfg)
    model.init_weights(0)
    block = model.blocks["0"]
    assert block.attn.q.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.attn.o.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
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


def test_document_layout_from_eos():
    eos = 9
    tokens = torch.tensor([[1, 2, eos, 3, eos, eos, 4, 5], [eos, 1, 2, 3, 4, 5, 6, 7]])
    docs = document_layout(tokens, eos)
    assert docs.ids.tolist() == [[0, 0, 0, 1, 1, 2, 3, 3], [0, 1, 1, 1, 1, 1, 1, 1]]
    assert docs.positions.tolist() == [[0, 1, 2, 0, 1, 0, 0, 1], [0, 0, 1, 2, 3, 4, 5, 6]]


@pytest.mark.parametrize("position", ["alibi", "rope"])
def test_document_mask_isolates_documents(position):
    """Changing the first document of a packed row leaves the second one's logits alone,
    as if the second document stood alone at the start of a row."""
    eos, T = 0, 24
    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=4, vocab_size=50, seq_len=T, position=position,
                      attention=AttentionConfig(doc_mask=True))
    model = GPT(cfg)
    model.init_weights(0)
    gen = torch.Generator().manual_seed(1)
    first, second = torch.randint(1, 50, (9,), generator=gen), torch.randint(1, 50, (T - 10,), generator=gen)
    row = torch.cat([first, torch.tensor([eos]), second])[None]
    changed = row.clone()
    changed[0, :9] = torch.randint(1, 50, (9,), generator=gen)
    logits = model(row, document_layout(row, eos))
    other = model(changed, document_layout(changed, eos))
    assert not torch.allclose(logits[0, :10], other[0, :10])
    assert torch.allclose(logits[0, 10:], other[0, 10:], atol=1e-5)
    alone = model(second[None])  # positions restart: same as the document on its own
    assert torch.allclose(logits[0, 10:], alone[0], atol=1e-5)
    # Without the mask, the second document sees the first.
    assert not torch.allclose(model(row)[0, 10:], model(changed)[0, 10:], atol=1e-3)


@pytest.mark.parametrize("alibi, doc_mask, kv_heads", [(True, False, 4), (True, True, 2), (False, True, 2)])
def test_flex_attention_equals_masked_sdpa(alibi, doc_mask, kv_heads):
    """The GPU path (FlexAttention, run eagerly here) computes what the CPU path computes."""
    gen = torch.Generator().manual_seed(0)
    B, H, T, Dh = 2, 4, 40, 8
    q = torch.randn(B, H, T, Dh, generator=gen)
    k, v = torch.randn(B, kv_heads, T, Dh, generator=gen), torch.randn(B, kv_heads, T, Dh, generator=gen)
    tokens = torch.randint(0, 6, (B, T), generator=gen)
    docs = document_layout(tokens, 0) if doc_mask else None
    slopes = alibi_slopes(H) if alibi else None
    with torch.no_grad():
        expected = masked_attend(q, k, v, Masking(slopes, docs))
        got = flex_attend(q, k, v, Masking(slopes, docs))
    assert torch.allclose(got, expected, atol=1e-5)


def test_no_attention_buffer_of_size_t_squared():
    cfg = ModelConfig(d_model=64, n_layers=2, n_heads=8, vocab_size=50, seq_len=2048)
    buffers = dict(GPT(cfg).named_buffers())
    assert sum(b.numel() for b in buffers.values()) == 8  # the slopes, one per head


def test_swiglu_width_keeps_parameter_count_close_to_gelu():
    gelu = count_params(ModelConfig(d_model=768, n_layers=2, n_heads=12, vocab_size=100, seq_len=8))
    swiglu = count_params(ModelConfig(d_model=768, n_layers=2, n_heads=12, vocab_size=100, seq_len=8, mlp="swiglu"))
    assert abs(swiglu - gelu) / gelu < 0.02
