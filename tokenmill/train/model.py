"""A GPT decoder in the MPT style, written for one device.

Read top to bottom like the paper: token embedding -> N x Block -> final norm
-> LM head. Each Block is pre-norm: x + Attn(Norm(x)), then x + MLP(Norm(x)).
No biases anywhere. Position information comes from ALiBi (a per-head linear
penalty on attention scores by distance) or RoPE (rotating query/key pairs).
Attention uses ``scaled_dot_product_attention``. Parallelism (FSDP,
activation checkpointing, compile) is applied from outside in ``fsdp.py``.

Shapes: B = batch, T = sequence length, D = d_model, H = heads,
Dh = D // H (head dim), V = vocab size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from tokenmill.train.config import ModelConfig


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=False)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Per-head slopes m_h = 2^(-8h/H), h = 1..H (ALiBi paper, Sec. 3).

    For a head count that is not a power of two, take the slopes of the next
    power of two and keep every other one, as the paper's reference code does.
    """
    n = 2 ** math.ceil(math.log2(n_heads))
    slopes = torch.tensor([2 ** (-8 * (h + 1) / n) for h in range(n)])
    if n != n_heads:
        slopes = torch.cat([slopes[0::2], slopes[1::2]])[:n_heads]
    return slopes


def alibi_bias(n_heads: int, seq_len: int) -> torch.Tensor:
    """Additive attention bias (1, H, T, T): -m_h * (i - j) for j <= i, -inf above.

    The causal mask is folded in, so attention needs no separate mask.
    """
    pos = torch.arange(seq_len)
    distance = (pos[:, None] - pos[None, :]).float()  # (T, T), i - j
    bias = -alibi_slopes(n_heads)[:, None, None] * distance  # (H, T, T)
    bias = bias.masked_fill(distance < 0, float("-inf"))
    return bias[None]


def rope_tables(head_dim: int, seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables (T, Dh/2) for rotary position embedding."""
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)  # (Dh/2,)
    angles = torch.outer(torch.arange(seq_len).float(), freqs)  # (T, Dh/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (even, odd) pair of x (B, H, T, Dh) by its position's angle."""
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, H, T, Dh/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, H, T, Dh/2, 2)
    return out.flatten(-2)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, positions: tuple[torch.Tensor, ...]) -> torch.Tensor:
        B, T, D = x.shape
        H, Dh = self.cfg.n_heads, self.cfg.head_dim
        q, k, v = self.qkv(x).split(D, dim=-1)  # 3 x (B, T, D)
        q, k, v = (t.view(B, T, H, Dh).transpose(1, 2) for t in (q, k, v))  # (B, H, T, Dh)
        if self.cfg.position == "rope":
            cos, sin = positions
            q, k = apply_rope(q, cos[:T], sin[:T]), apply_rope(k, cos[:T], sin[:T])
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            (bias,) = positions
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[:, :, :T, :T].to(q.dtype))
        y = y.transpose(1, 2).reshape(B, T, D)  # heads back side by side
        return self.out(y)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.kind = cfg.mlp
        n_in = 2 if cfg.mlp == "swiglu" else 1  # SwiGLU: gate and value in one matmul
        self.up = nn.Linear(cfg.d_model, n_in * cfg.d_hidden, bias=False)
        self.down = nn.Linear(cfg.d_hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)  # (B, T, n_in * d_hidden)
        if self.kind == "swiglu":
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        else:
            h = F.gelu(h, approximate="tanh")
        return self.down(h)  # (B, T, D)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm_attn = make_norm(cfg)
        self.attn = Attention(cfg)
        self.norm_mlp = make_norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, positions: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x), positions)
        return x + self.mlp(self.norm_mlp(x))


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
        if cfg.position == "rope":
            cos, sin = rope_tables(cfg.head_dim, cfg.seq_len, cfg.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        else:
            self.register_buffer("alibi", alibi_bias(cfg.n_heads, cfg.seq_len), persistent=False)

    def init_weights(self, seed: int) -> None:
        """Normal(0, std) weights; projections into the residual stream get
        std / sqrt(2 * n_layers) so the residual's variance does not grow
        with depth (GPT-2 / MPT scaled init). Norm weights start at 1."""
        gen = torch.Generator().manual_seed(seed)
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if p.dim() == 1:
                _copy_full(p, torch.ones(p.shape))
                continue
            scale = 1.0
            if name.endswith("attn.out.weight") or name.endswith("mlp.down.weight"):
                scale = 1.0 / math.sqrt(2 * self.cfg.n_layers)
            # Draw on CPU with our own generator so the weights are the same on
            # any device and any number of ranks.
            values = torch.randn(p.shape, generator=gen) * (std * scale)
            _copy_full(p, values)
        self.reset_buffers()

    def reset_buffers(self) -> None:
        """Recompute position tables (needed after building on the meta device)."""
        cfg = self.cfg
        device = self.embed.weight.device
        if cfg.position == "rope":
            cos, sin = rope_tables(cfg.head_dim, cfg.seq_len, cfg.rope_theta)
            self.rope_cos = cos.to(device)
            self.rope_sin = sin.to(device)
        else:
            self.alibi = alibi_bias(cfg.n_heads, cfg.seq_len).to(device)

    def positions(self) -> tuple[torch.Tensor, ...]:
        if self.cfg.position == "rope":
            return (self.rope_cos, self.rope_sin)
        return (self.alibi,)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) int64 -> logits (B, T, V)."""
        x = self.embed(tokens)  # (B, T, D)
        positions = self.positions()
        for block in self.blocks.values():
            x = block(x, positions)
        return self.head(self.norm(x))


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


def count_params(cfg: ModelConfig) -> int:
    """Parameters, counted without allocating (meta device); tied weights once."""
    with torch.device("meta"):
        model = GPT(cfg)
    return sum(p.numel() for p in model.parameters())


def flops_per_token(cfg: ModelConfig) -> float:
    """Training FLOPs per token: 6 per matmul weight (forward + backward)
    plus attention scores 12 * L * D * T (PaLM, appendix B).

    The input embedding is a lookup, not a matmul: leave it out unless it is
    tied to the head, whose matmul does count.
    """
    n = count_params(cfg)
    if not cfg.tie_embeddings:
        n -= cfg.vocab_size * cfg.d_model
    return 6.0 * n + 12.0 * cfg.n_layers * cfg.d_model * cfg.seq_len
