"""Causal self-attention with optional ALiBi and a document mask, no stored bias.

What is attended is defined once: query i sees key j when j <= i and, with a
document mask, both tokens belong to the same document of the packed row;
ALiBi subtracts slope_h * (i - j) from the score. Three ways compute it:

- plain causal (no ALiBi, no document mask): SDPA's causal kernel (flash on GPU);
- on GPU otherwise: FlexAttention, compiled, with the mask as a block mask
  (fully masked blocks are skipped) and ALiBi as a score function;
- on CPU otherwise: SDPA with a mask built for this batch (FlexAttention has
  no backward pass on CPU). Tests check that both give the same output.

Nothing of size T x T is kept between steps.

Shapes: B batch, H query heads, K key/value heads (H % K == 0), T tokens, Dh head dim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Optional

import torch
import torch.nn.functional as F


@dataclass
class Documents:
    """Where the documents of each packed row start and end."""

    ids: torch.Tensor  # (B, T) index of each token's document within its row
    positions: torch.Tensor  # (B, T) int64 position of each token within its document
    _block_mask: Any = field(default=None, repr=False)  # FlexAttention's mask, built on first use


def document_layout(tokens: torch.Tensor, eos_id: int) -> Documents:
    """Documents of packed rows (B, T): each EOS ends the document it belongs to.

    The next token starts a new document at position 0. A row's first token
    starts a document too (a window may begin inside one).
    """
    B, T = tokens.shape
    is_eos = tokens == eos_id
    ids = torch.cumsum(is_eos, dim=1) - is_eos.long()  # EOS stays with the document it ends
    index = torch.arange(T, device=tokens.device).expand(B, T)
    starts = torch.zeros_like(is_eos)
    starts[:, 0] = True
    starts[:, 1:] = is_eos[:, :-1]
    start_of_doc = torch.where(starts, index, 0).cummax(dim=1).values  # (B, T)
    return Documents(ids=ids, positions=index - start_of_doc)


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, alibi: Optional[torch.Tensor], docs: Optional[Documents]
) -> torch.Tensor:
    """q (B, H, T, Dh), k and v (B, K, T, Dh) -> (B, H, T, Dh)."""
    gqa = q.size(1) != k.size(1)
    if alibi is None and docs is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    if q.is_cuda:
        return flex_attend(q, k, v, alibi, docs)
    return masked_attend(q, k, v, alibi, docs)


def masked_attend(q, k, v, alibi: Optional[torch.Tensor], docs: Optional[Documents]) -> torch.Tensor:
    """SDPA with this batch's mask: (B or 1, 1, T, T) allowed, plus (1, H, T, T) ALiBi."""
    T = q.size(2)
    i = torch.arange(T, device=q.device)
    allowed = (i[:, None] >= i[None, :])[None, None]  # (1, 1, T, T) causal
    if docs is not None:
        allowed = allowed & (docs.ids[:, None, :, None] == docs.ids[:, None, None, :])  # (B, 1, T, T)
    if alibi is None:
        mask = allowed
    else:
        distance = (i[:, None] - i[None, :]).to(q.dtype)  # (T, T)
        bias = -alibi.to(q.dtype)[None, :, None, None] * distance  # (1, H, T, T)
        mask = bias.masked_fill(~allowed, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.size(1) != k.size(1))


def flex_attend(q, k, v, alibi: Optional[torch.Tensor], docs: Optional[Documents]) -> torch.Tensor:
    """FlexAttention: the mask as a block mask, ALiBi as a score function."""
    from torch.nn.attention.flex_attention import flex_attention

    T = q.size(2)
    if docs is None:
        block_mask = _causal_block_mask(T, str(q.device))
    else:
        if docs._block_mask is None:  # one block mask per batch, shared by all layers
            docs._block_mask = _document_block_mask(docs.ids, q.device)
        block_mask = docs._block_mask
    score_mod = None
    if alibi is not None:
        slopes = alibi.to(torch.float32)

        def score_mod(score, b, h, q_idx, kv_idx):
            return score - slopes[h] * (q_idx - kv_idx)

    run = _compiled_flex() if q.is_cuda else flex_attention
    return run(q, k, v, score_mod=score_mod, block_mask=block_mask, enable_gqa=q.size(1) != k.size(1))


def _document_block_mask(doc_ids: torch.Tensor, device):
    from torch.nn.attention.flex_attention import create_block_mask

    def same_document(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (doc_ids[b, q_idx] == doc_ids[b, kv_idx])

    B, T = doc_ids.shape
    return create_block_mask(same_document, B, None, T, T, device=device)


@lru_cache(maxsize=8)
def _causal_block_mask(T: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    return create_block_mask(causal, None, None, T, T, device=device)


@lru_cache(maxsize=1)
def _compiled_flex():
    # FlexAttention runs its fused kernel only when compiled.
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)
