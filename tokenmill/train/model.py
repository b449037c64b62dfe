"""A decoder-only transformer for one device: MPT-style, Llama, Mistral, Qwen2.

Read top to bottom like the papers: token embedding -> N x Block -> final
norm -> LM head. Each Block is pre-norm: x + Attn(Norm(x)), then
x + MLP(Norm(x)). The config picks the family's parts:

- position: ALiBi (a per-head linear penalty on scores by distance, MPT) or
  RoPE (rotating query/key features by position, Llama), with ``rope_theta``
  and Llama 3.1's frequency scaling. RoPE uses Hugging Face's layout: it
  rotates the first half of each head's features against the second half
  (``rotate_half``), so checkpoints load and export without permuting rows.
- attention: grouped-query (``n_kv_heads`` key/value heads shared by groups
  of query heads), optional q/k/v biases (Qwen2), and a document mask (a
  token attends only to earlier tokens of its own document in a packed
  sequence, positions restart at each document).
- norm: LayerNorm without bias (MPT) or RMSNorm; MLP: GELU or SwiGLU.
- LoRA (Hu et al. 2021): optional low-rank adapters on chosen projections,
  the base weights frozen.

Names follow the parts (``attn.q``, ``mlp.gate``); the mapping to and from
Hugging Face names lives in ``hf_adapter.py``. Parallelism (FSDP, activation
checkpointing, compile) is applied from outside in ``parallelize.py``.

Shapes: B = batch, T = sequence length, D = d_model, H = query heads,
K = key/value heads, Dh = head dim, F = MLP hidden width, V = vocab size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from tokenmill.train.attention import (  # noqa: F401 - re-exported
    Documents, Masking, attend, document_layout, documents_from_ids)
from tokenmill.train.config import LoraConfig, ModelConfig


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=False)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Per-head slopes m_h = 2^(-8h/n), h = 1..n, n = H rounded up to a power of two.

    For a head count that is not a power of two, keep the odd-numbered slopes
    then the even ones, as MPT does (llm-foundry, transformers' MptModel), so
    exported models compute the same scores.
    """
    n = 2 ** math.ceil(math.log2(n_heads))
    slopes = 1.0 / torch.pow(2, torch.arange(1, n + 1).float() * (8 / n))
    if n != n_heads:
        slopes = torch.cat([slopes[1::2], slopes[::2]])[:n_heads]
    return slopes


def rope_frequencies(cfg: ModelConfig) -> torch.Tensor:
    """Inverse frequencies (Dh/2,): theta^(-2i/Dh), scaled as Llama 3.1 does when asked.

    Llama 3.1 scaling: wavelengths longer than original_context / low_freq_factor
    are divided by ``factor``, shorter than original_context / high_freq_factor
    are kept, and those in between are blended smoothly.
    """
    dh = cfg.head_dim
    inv_freq = 1.0 / cfg.rope_theta ** (torch.arange(0, dh, 2, dtype=torch.int64).float() / dh)
    s = cfg.rope_scaling
    if s is None:
        return inv_freq
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen = s.original_context / s.low_freq_factor
    high_freq_wavelen = s.original_context / s.high_freq_factor
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (s.original_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    blended = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return torch.where(medium, blended, scaled)


def rope_tables(cfg: ModelConfig, n_positions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (P, Dh): each frequency twice, for the two halves."""
    angles = torch.outer(torch.arange(n_positions).float(), rope_frequencies(cfg))  # (P, Dh/2)
    angles = torch.cat([angles, angles], dim=-1)  # (P, Dh)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dim."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, T, Dh) by its positions' angles; cos/sin (B, 1, T, Dh)."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin


class Linear(nn.Linear):
    """A linear layer, with a low-rank adapter when LoRA targets it.

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T, with A (r, in) and
    B (out, r). B starts at zero, so the adapted model starts as the base
    model; only A and B are trained.
    """

    def __init__(self, d_in: int, d_out: int, bias: bool, lora: Optional[LoraConfig] = None):
        super().__init__(d_in, d_out, bias=bias)
        self.lora_scale = 0.0
        if lora is not None:
            self.lora_a = nn.Parameter(torch.empty(lora.rank, d_in))
            self.lora_b = nn.Parameter(torch.empty(d_out, lora.rank))
            self.lora_scale = lora.scale
            self.lora_dropout = nn.Dropout(lora.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if self.lora_scale:
            y = y + self.lora_scale * F.linear(F.linear(self.lora_dropout(x), self.lora_a), self.lora_b)
        return y


def linear(cfg: ModelConfig, name: str, d_in: int, d_out: int, bias: bool = False) -> Linear:
    """The projection ``name`` (q, k, v, o, gate, up, down), adapted when LoRA targets it."""
    lora = cfg.lora if cfg.lora is not None and name in cfg.lora.layers else None
    return Linear(d_in, d_out, bias, lora)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        H, K, Dh = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.q = linear(cfg, "q", cfg.d_model, H * Dh, bias=cfg.qkv_bias)
        self.k = linear(cfg, "k", cfg.d_model, K * Dh, bias=cfg.qkv_bias)
        self.v = linear(cfg, "v", cfg.d_model, K * Dh, bias=cfg.qkv_bias)
        self.o = linear(cfg, "o", H * Dh, cfg.d_model)

    def forward(self, x: torch.Tensor, ctx: "Context") -> torch.Tensor:
        B, T, _ = x.shape
        H, K, Dh = self.cfg.n_heads, self.cfg.kv_heads, self.cfg.head_dim
        q = self.q(x).view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        k = self.k(x).view(B, T, K, Dh).transpose(1, 2)  # (B, K, T, Dh)
        v = self.v(x).view(B, T, K, Dh).transpose(1, 2)  # (B, K, T, Dh)
        if ctx.cos is not None:
            q, k = apply_rope(q, ctx.cos, ctx.sin), apply_rope(k, ctx.cos, ctx.sin)
        y = attend(q, k, v, ctx.masking)  # (B, H, T, Dh)
        return self.o(y.transpose(1, 2).reshape(B, T, H * Dh))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.kind = cfg.mlp
        if cfg.mlp == "swiglu":
            self.gate = linear(cfg, "gate", cfg.d_model, cfg.d_hidden)
        self.up = linear(cfg, "up", cfg.d_model, cfg.d_hidden)
        self.down = linear(cfg, "down", cfg.d_hidden, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "swiglu":
            h = F.silu(self.gate(x)) * self.up(x)  # (B, T, F)
        else:
            h = F.gelu(self.up(x))  # exact GELU, as MPT
        return self.down(h)  # (B, T, D)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm_attn = make_norm(cfg)
        self.attn = Attention(cfg)
        self.norm_mlp = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, ctx: "Context") -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x), ctx)
        return x + self.mlp(self.norm_mlp(x))


@dataclass
class Context:
    """What every attention layer needs for one batch, computed once per forward."""

    cos: Optional[torch.Tensor]  # (B, 1, T, Dh) RoPE tables at each token's position
    sin: Optional[torch.Tensor]
    masking: Masking  # ALiBi slopes and/or documents; the mask is built once, for all layers


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        # A ModuleDict (not a list) so FSDP and checkpoint keys read "blocks.3".
        self.blocks = nn.ModuleDict({str(i): Block(cfg) for i in range(cfg.n_layers)})
        self.norm = make_norm(cfg)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight
        # Position tables are buffers computed from the config, not learned and
        # not saved (persistent=False): checkpoints hold only trained weights.
        self._register_position_buffers()

    def _register_position_buffers(self) -> None:
        device = self.embed.weight.device
        if self.cfg.position == "rope":
            cos, sin = rope_tables(self.cfg, self.cfg.seq_len)
            self.register_buffer("rope_cos", cos.to(device), persistent=False)
            self.register_buffer("rope_sin", sin.to(device), persistent=False)
        else:
            self.register_buffer("alibi", alibi_slopes(self.cfg.n_heads).to(device), persistent=False)

    def init_weights(self, seed: int) -> None:
        """Normal(0, std) weights; projections into the residual stream get
        std / sqrt(2 * n_layers) so the residual's variance does not grow
        with depth (GPT-2 / MPT scaled init). Norm weights 1, biases 0."""
        gen = torch.Generator().manual_seed(seed)
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if is_adapter(name):
                continue  # init_adapters
            if name.endswith("bias"):
                _copy_full(p, torch.zeros(p.shape))
                continue
            if p.dim() == 1:
                _copy_full(p, torch.ones(p.shape))
                continue
            scale = 1.0
            if name.endswith("attn.o.weight") or name.endswith("mlp.down.weight"):
                scale = 1.0 / math.sqrt(2 * self.cfg.n_layers)
            # Draw on CPU with our own generator so the weights are the same on
            # any device and any number of ranks.
            values = torch.randn(p.shape, generator=gen) * (std * scale)
            _copy_full(p, values)
        self.init_adapters(seed)
        self.reset_buffers()

    def init_adapters(self, seed: int) -> None:
        """LoRA: A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's default), B = 0."""
        gen = torch.Generator().manual_seed(seed + 1)
        for name, p in self.named_parameters():
            if name.endswith("lora_a"):
                bound = 1.0 / math.sqrt(p.shape[1])
                _copy_full(p, (torch.rand(p.shape, generator=gen) * 2 - 1) * bound)
            elif name.endswith("lora_b"):
                _copy_full(p, torch.zeros(p.shape))

    def freeze_base(self) -> None:
        """Only the adapters train: no gradients (hence no optimizer state) for the rest."""
        for name, p in self.named_parameters():
            p.requires_grad_(is_adapter(name))

    def reset_buffers(self) -> None:
        """Recompute position tables (needed after building on the meta device)."""
        self._register_position_buffers()

    def tie_weights(self) -> None:
        """Share the head with the embedding again: ``to_empty`` unties them
        in a plain module (FSDP2 keeps them shared)."""
        if self.cfg.tie_embeddings:
            self.head.weight = self.embed.weight

    def context(self, tokens: torch.Tensor, docs: Optional[Documents], dtype: torch.dtype) -> Context:
        B, T = tokens.shape
        if self.cfg.position == "alibi":
            return Context(None, None, Masking(self.alibi, docs).build(T, tokens.device, dtype))
        if docs is None:  # one document: positions 0..T-1 for every row
            cos, sin = self.rope_cos[:T].expand(B, T, -1), self.rope_sin[:T].expand(B, T, -1)
        else:  # positions restart at each document
            cos, sin = self.rope_cos[docs.positions], self.rope_sin[docs.positions]
        return Context(cos[:, None], sin[:, None], Masking(None, docs).build(T, tokens.device, dtype))

    def forward(self, tokens: torch.Tensor, docs: Optional[Documents] = None) -> torch.Tensor:
        """tokens (B, T) int64 -> logits (B, T, V).

        ``docs`` (from ``document_layout``) masks attention between the
        documents of a packed sequence; None attends causally over all of it.
        """
        if tokens.size(1) > self.cfg.seq_len:
            raise ValueError(f"sequence of {tokens.size(1)} tokens is longer than seq_len {self.cfg.seq_len}")
        x = self.embed(tokens)  # (B, T, D)
        ctx = self.context(tokens, docs, x.dtype)
        for block in self.blocks.values():
            x = block(x, ctx)
        return self.head(self.norm(x))


def is_adapter(name: str) -> bool:
    return name.endswith(("lora_a", "lora_b"))


def _copy_full(param: torch.Tensor, values: torch.Tensor) -> None:
    """Copy a full (unsharded) tensor into a parameter, sharded or not."""
    with torch.no_grad():
        if isinstance(param, DTensor):
            # FSDP2 parameter: keep only this rank's shard of the full values.
            values = distribute_tensor(values.to(param.device), param.device_mesh, param.placements)
        param.copy_(values.to(param.device, param.dtype))


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: position t predicts token t+1.

    logits (B, T, V), tokens (B, T) -> scalar. Sequences are packed windows,
    so every position has a real target except the last.
    """
    V = logits.size(-1)
    return F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), tokens[:, 1:].reshape(-1))


def masked_lm_loss(logits: torch.Tensor, tokens: torch.Tensor, loss_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy over target tokens, and their count.

    logits (B, T, V), tokens (B, T), loss_mask (B, T) -> (sum, count), both
    scalars. ``loss_mask[t] == 1`` means token t is a target (as
    ``tokenmill/chat/mask.py`` defines it), so position t-1's logits are
    scored against token t where ``loss_mask[t]`` is set: the mask's
    index is the predicted token's. An example's first token is never a
    target, so no position predicts across a boundary between examples.
    The caller divides the sum by the target count of the global batch.
    """
    V = logits.size(-1)
    weights = loss_mask[:, 1:].reshape(-1).float()  # (B * (T-1),)
    losses = F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), tokens[:, 1:].reshape(-1), reduction="none")
    return (losses * weights).sum(), weights.sum()


def count_params(cfg: ModelConfig) -> int:
    """Parameters, counted without allocating (meta device); tied weights once."""
    with torch.device("meta"):
        model = GPT(cfg)
    return sum(p.numel() for p in model.parameters())


def flops_per_token(cfg: ModelConfig) -> float:
    """Training FLOPs per token: 6 per matmul weight (forward + backward)
    plus attention scores 12 * L * H * Dh * T (PaLM, appendix B).

    The input embedding is a lookup, not a matmul: leave it out unless it is
    tied to the head, whose matmul does count.
    """
    n = count_params(cfg)
    if not cfg.tie_embeddings:
        n -= cfg.vocab_size * cfg.d_model
    return 6.0 * n + 12.0 * cfg.n_layers * cfg.n_heads * cfg.head_dim * cfg.seq_len
