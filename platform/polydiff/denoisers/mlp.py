"""A generic MLP denoiser for flat continuous fields (toy data, tabular numbers, low-dim latents)."""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from polydiff.denoisers.embeddings import AdaLayerNorm, SinusoidalEmbedding
from polydiff.spaces import Space, State


class _Block(nn.Module):
    def __init__(self, width: int, cond_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm = AdaLayerNorm(width, cond_dim)
        self.lin1, self.lin2 = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return h + self.lin2(self.drop(nn.functional.silu(self.lin1(self.norm(h, c)))))


class MLPDenoiser(nn.Module):
    """Residual MLP with adaLN time conditioning over the concatenation of all fields.

    Args:
        spaces: diffused fields (continuous or bounded); each is flattened.
        cond_spaces: conditioning fields. Discrete conditioning fields of one token
            (class labels) are embedded with an extra "null" id used when ``cond`` is None
            or a label is dropped; continuous ones are flattened and projected.
        width, depth: hidden width and number of residual blocks.
        dropout: dropout inside blocks.

    ``forward(x_t, t, cond=None)`` returns ``{field: (B, *field_shape)}``.
    """

    def __init__(self, spaces: Mapping[str, Space], cond_spaces: Mapping[str, Space] | None = None, *,
                 width: int = 256, depth: int = 4, time_dim: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        self.spaces = dict(spaces)
        self.cond_spaces = dict(cond_spaces or {})
        for name, space in self.spaces.items():
            if space.kind == "discrete":
                raise ValueError(f"mlp denoiser takes continuous fields; field {name!r} is {space}")
        self.sizes = {name: math.prod(s.shape) for name, s in self.spaces.items()}
        self.time = nn.Sequential(SinusoidalEmbedding(time_dim), nn.Linear(time_dim, width), nn.SiLU(),
                                  nn.Linear(width, width))
        self.cond_embed = nn.ModuleDict()
        for name, space in self.cond_spaces.items():
            if space.kind == "discrete":
                self.cond_embed[name] = nn.Embedding(space.vocab_size + 1, width)
            else:
                self.cond_embed[name] = nn.Linear(math.prod(space.shape), width)
        self.inp = nn.Linear(sum(self.sizes.values()), width)
        self.blocks = nn.ModuleList(_Block(width, width, dropout) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, sum(self.sizes.values()))

    def forward(self, x_t: State, t: torch.Tensor, cond: State | None = None) -> dict[str, torch.Tensor]:
        """Raw output per field, shape ``(B, *field_shape)``."""
        flat = torch.cat([x_t[name].flatten(1).float() for name in self.spaces], dim=1)
        c = self.time(t)
        for name, layer in self.cond_embed.items():
            c = c + self._embed_cond(name, layer, cond, flat.shape[0], flat.device)
        h = self.inp(flat)
        for block in self.blocks:
            h = block(h, c)
        out = self.out(self.out_norm(h))
        pieces = out.split(list(self.sizes.values()), dim=1)
        return {name: p.view(-1, *self.spaces[name].shape) for name, p in zip(self.spaces, pieces)}

    def _embed_cond(self, name: str, layer: nn.Module, cond: State | None, n: int, device) -> torch.Tensor:
        space = self.cond_spaces[name]
        if space.kind == "discrete":
            null = torch.full((n,), space.vocab_size, dtype=torch.long, device=device)
            labels = null if cond is None or name not in cond else cond[name].reshape(n, -1)[:, 0].long()
            return layer(labels)
        if cond is None or name not in cond:
            return torch.zeros(n, layer.out_features, device=device)
        return layer(cond[name].flatten(1).float())
