"""A small causal transformer over token sequences (the VQ-VAE's prior), built from the shared blocks of
:mod:`render3d.nn.transformer`."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from render3d.nn.transformer import TransformerBlock

class TokenTransformer(nn.Module):
    """p(t_1..t_L) = prod_i p(t_i | t_<i) over ``vocab`` tokens, for sequences of length ``length``."""

    def __init__(self, vocab: int, length: int, dim: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2) -> None:
        super().__init__()
        self.vocab, self.length = vocab, length
        self.embed = nn.Embedding(vocab + 1, dim)  # the last id is the start token
        self.pos = nn.Parameter(torch.zeros(length, dim))
        self.layers = nn.Sequential(*[TransformerBlock(dim, heads, kv_heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def logits(self, tokens: Tensor) -> Tensor:
        """``tokens [B, L']`` (L' <= length) -> logits ``[B, L', vocab]`` for each next token."""
        start = torch.full_like(tokens[:, :1], self.vocab)
        inp = torch.cat([start, tokens[:, :-1]], dim=1)
        h = self.embed(inp) + self.pos[: inp.shape[1]]
        return self.head(self.norm(self.layers(h)))

    def nll(self, tokens: Tensor) -> Tensor:
        """Negative log-likelihood per sequence, in nats."""
        logits = self.logits(tokens).float()
        return F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none").sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None, temperature: float = 1.0) -> Tensor:
        device = self.pos.device
        tokens = torch.zeros(n, 0, dtype=torch.long, device=device)
        for i in range(self.length):
            padded = torch.cat([tokens, torch.zeros(n, 1, dtype=torch.long, device=device)], dim=1)
            probs = F.softmax(self.logits(padded)[:, i] / temperature, dim=-1).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator).to(device)
            tokens = torch.cat([tokens, nxt], dim=1)
        return tokens
