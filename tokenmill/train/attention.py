"""Causal self-attention with optional ALiBi and a document mask, no stored bias.

What is attended is defined once: query i sees key j when j <= i and, with a
document mask, both tokens belong to the same document of the packed row;
ALiBi subtracts slope_h * (i - j) from the score. Three ways compute it:

- plain causal (no ALiBi, no document mask): SDPA's causal kernel (flash on GPU);
- on GPU otherwise: FlexAttention, compiled, with the mask as a block mask
  (fully masked blocks are skipped) and ALiBi as a score function;
- on CPU otherwise: SDPA with a mask built once per batch and shared by all
  layers (FlexAttention has no backward pass on CPU). Tests check that both
  give the same output.

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


@dataclass
class Masking:
    """What one batch's attention masks: ALiBi slopes and/or documents.

    ``build`` makes the mask the backend needs once per batch, before the
    (possibly compiled) blocks run; all layers share it.
    """

    alibi: Optional[torch.Tensor] = None  # (H,) ALiBi slopes
    docs: Optional[Documents] = None
    built: Any = field(default=None, repr=False)  # block mask (GPU) or dense mask (CPU)

    @property
    def causal_only(self) -> bool:
        return self.alibi is None and self.docs is None

    def build(self, T: int, device: torch.device, dtype: torch.dtype) -> "Masking":
        if self.causal_only:
            return self
        if device.type == "cuda":
            ids = self.docs.ids if self.docs is not None else None
            self.built = _document_block_mask(ids, device) if ids is not None else _causal_block_mask(T, str(device))
        else:
            self.built = dense_mask(T, device, dtype, self)
        return self


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


def documents_from_ids(doc_ids: torch.Tensor) -> Documents:
    """Documents of packed fine-tuning rows from their doc_ids (B, T): 1, 2, ... per example, 0 on padding.

    Tokens attend only within a run of equal ids; positions restart at 0
    where the id changes. Each padding token (id 0) becomes a document of
    its own (id -1 - index), so it attends only to itself: no example sees
    padding, and padding, which carries no loss, stays finite.
    """
    B, T = doc_ids.shape
    index = torch.arange(T, device=doc_ids.device).expand(B, T)  # (B, T)
    ids = torch.where(doc_ids > 0, doc_ids.long(), -1 - index)  # (B, T)
    starts = torch.ones_like(ids, dtype=torch.bool)
    starts[:, 1:] = ids[:, 1:] != ids[:, :-1]
    start_of_doc = torch.where(starts, index, 0).cummax(dim=1).values  # (B, T)
    return Documents(ids=ids, positions=index - start_of_doc)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, masking: Masking) -> torch.Tensor:
    """q (B, H, T, Dh), k and v (B, K, T, Dh) -> (B, H, T, Dh)."""
    if masking.causal_only:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=q.size(1) != k.size(1))
    if q.is_cuda:
        return flex_attend(q, k, v, masking)
    return masked_attend(q, k, v, masking)


def masked_attend(q, k, v, masking: Masking) -> torch.Tensor:
    """SDPA with this batch's dense mask (built once, shared by every layer)."""
    mask = masking.built if masking.built is not None else dense_mask(q.size(2), q.device, q.dtype, masking)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype) if mask.is_floating_point() else mask,
                                          enable_gqa=q.size(1) != k.size(1))


def dense_mask(T: int, device, dtype, masking: Masking) -> torch.Tensor:
    """(B or 1, 1, T, T) allowed pairs, or with ALiBi a (B or 1, H, T, T) additive bias."""
    i = torch.arange(T, device=device)
    allowed = (i[:, None] >= i[None, :])[None, None]  # (1, 1, T, T) causal
    if masking.docs is not None:
        ids = masking.docs.ids
        allowed = allowed & (ids[:, None, :, None] == ids[:, None, None, :])  # (B, 1, T, T)
    if masking.alibi is None:
        return allowed
    distance = (i[:, None] - i[None, :]).to(dtype)  # (T, T)
    bias = -masking.alibi.to(dtype)[None, :, None, None] * distance  # (1, H, T, T)
    return bias.masked_fill(~allowed, float("-inf"))


def flex_attend(q, k, v, masking: Masking) -> torch.Tensor:
    """FlexAttention: the mask as a block mask, ALiBi as a score function."""
    from torch.nn.attention.flex_attention import flex_attention

    block_mask = masking.built
    if block_mask is None:  # not built beforehand (tests call this directly)
        T = q.size(2)
        docs = masking.docs
        block_mask = _document_block_mask(docs.ids, q.device) if docs is not None else _causal_block_mask(T, str(q.device))
    score_mod = alibi_score(masking.alibi.to(torch.float32)) if masking.alibi is not None else None

    run = _compiled_flex() if q.is_cuda else flex_attention
    return run(q, k, v, score_mod=score_mod, block_mask=block_mask, enable_gqa=q.size(1) != k.size(1))


def alibi_score(slopes: torch.Tensor):
    """FlexAttention score function: subtract slope_h * (i - j)."""

    def score_mod(score, b, h, q_idx, kv_idx):
        return score - slopes[h] * (q_idx - kv_idx)

    return score_mod


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
