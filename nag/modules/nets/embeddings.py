"""Sinusoidal embeddings for diffusion time and node positions."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_embedding(values: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Transformer-style sin/cos features. values: [*] (float or int) -> [*, dim]."""
    if dim % 2:
        raise ValueError(f"sinusoidal_embedding needs an even dim, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device) / half)
    args = values.float().unsqueeze(-1) * freqs
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class TimeEmbedding(nn.Module):
    """t: [B] in [0, 1] -> [B, dim]: sinusoidal features of ``t * scale``, then a 2-layer MLP.

    ``scale`` spreads t in [0, 1] over the sinusoid's frequency range (as DDPM's step index does).
    """

    def __init__(self, dim: int, hidden: int | None = None, scale: float = 1000.0) -> None:
        super().__init__()
        self.dim, self.scale = dim, scale
        hidden = hidden or 2 * dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(t * self.scale, self.dim))
