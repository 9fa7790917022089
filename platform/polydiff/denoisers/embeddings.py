"""Time embeddings and adaptive layer norm, shared by the generic networks and plugins."""
from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of t in [0, 1] (Vaswani et al. 2017; DDPM).

    ``t`` is scaled by ``scale`` (1000 by default, as DDPM's integer steps) before the
    sin/cos features of ``dim // 2`` geometric frequencies.
    """

    def __init__(self, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.scale = scale

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` of shape ``(B,)`` -> ``(B, dim)``."""
        args = (t.float() * self.scale)[:, None] * self.freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of t (Tancik et al. 2020; EDM's NCSN++ noise embedding)."""

    def __init__(self, dim: int, scale: float = 16.0, seed: int = 0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(dim // 2, generator=g) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` of shape ``(B,)`` -> ``(B, dim)``."""
        args = 2 * math.pi * t.float()[:, None] * self.freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class AdaLayerNorm(nn.Module):
    """LayerNorm whose scale and shift come from a conditioning vector (DiT's adaLN).

    The projection starts at zero, so at initialisation it is a plain LayerNorm
    (adaLN-Zero, Peebles & Xie 2023).
    """

    def __init__(self, dim: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.proj = nn.Linear(cond_dim, 2 * dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``(B, ..., dim)``, ``c`` of shape ``(B, cond_dim)``."""
        scale, shift = self.proj(c).chunk(2, dim=-1)
        extra = x.ndim - 2
        scale, shift = scale.view(scale.shape[0], *([1] * extra), -1), shift.view(shift.shape[0], *([1] * extra), -1)
        return self.norm(x) * (1 + scale) + shift
