"""Transformer building blocks with grouped-query attention, shared by the zoo and the video models.

:class:`GQAttention` and :class:`TransformerBlock` take an optional attention mask (the
video world model passes a block-causal one over frames) and a :class:`KVCache` for
step-by-step generation; the zoo's VQ-VAE prior (:class:`render3d.zoo.transformer.TokenTransformer`)
stacks them causally.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class KVCache:
    """The keys and values one attention layer has seen so far (generation without recomputing the past)."""

    def __init__(self) -> None:
        self.k: Optional[Tensor] = None
        self.v: Optional[Tensor] = None

    def __len__(self) -> int:
        return 0 if self.k is None else int(self.k.shape[2])

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``k, v [B, kv_heads, t, head_dim]``; returns every key and value so far."""
        self.k = k if self.k is None else torch.cat([self.k, k], dim=2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
        return self.k, self.v


class GQAttention(nn.Module):
    """Causal self-attention where ``kv_heads`` key/value heads are shared by ``heads`` query heads.

    ``forward(x, mask, cache)``: ``mask`` (boolean ``[t, t_past + t]``, True where a query
    may attend) replaces the causal mask; ``cache`` holds the keys / values of earlier calls
    and is extended with this call's.
    """

    def __init__(self, dim: int, heads: int, kv_heads: int) -> None:
        super().__init__()
        if dim % heads or heads % kv_heads:
            raise ValueError(f"dim {dim} must divide into {heads} heads, and heads into {kv_heads} key/value groups")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * kv_heads * self.head_dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None, cache: Optional[KVCache] = None) -> Tensor:
        b, t, d = x.shape
        q = self.q(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(x).view(b, t, 2, self.kv_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        past = 0 if cache is None else len(cache)
        if cache is not None:
            k, v = cache.extend(k, v)
        causal = mask is None and past == 0
        if mask is None and past:  # causal, offset by the cached tokens
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(past)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=self.kv_heads != self.heads)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class TransformerBlock(nn.Module):
    """Pre-norm attention + MLP block; ``mask`` and ``cache`` go to :class:`GQAttention`.

    ``dropout`` drops elements of each branch's output before it joins the residual stream (GPT-2's
    residual dropout), in training only.
    """

    def __init__(self, dim: int, heads: int, kv_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = GQAttention(dim, heads, kv_heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None, cache: Optional[KVCache] = None) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask, cache))
        return x + self.drop(self.mlp(self.norm2(x)))
