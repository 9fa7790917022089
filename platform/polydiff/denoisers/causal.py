"""A small causal transformer: the core's autoregressive baseline for one token sequence.

For a field ``Discrete((L,), V)`` the input ids are shifted right by one position (a learned
BOS vector at position 0), embedded with learned positions and mixed by DiT blocks with a
causal attention mask; the adaLN input is a learned constant (an autoregressive model has no
time). The raw output at position i, shape ``(B, L, V)``, are the logits of p(x^i | x^{<i})
and depend on ``x[:, :i]`` only, as the ``autoregressive`` process requires. No key / value
cache: the sampler re-evaluates the prefix (domain plugins, e.g. polydiff-text's
``text_causal``, offer cached decoding).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from polydiff.denoisers.embeddings import AdaLayerNorm
from polydiff.denoisers.transformer import DiTBlock
from polydiff.spaces import Space, State


class CausalTransformer(nn.Module):
    """Causal transformer over one ``Discrete((L,), V)`` field (module docstring).

    Args:
        spaces: exactly one discrete field of shape ``(L,)``; cond_spaces: must be empty.
        width, depth, heads, mlp_ratio, dropout: as ``TransformerDenoiser``.

    Raises:
        ValueError: other fields, a field that is not a one-axis discrete sequence, or conditioning.
    """

    def __init__(self, spaces: Mapping[str, Space], cond_spaces: Mapping[str, Space] | None = None, *,
                 width: int = 128, depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if len(spaces) != 1 or cond_spaces:
            raise ValueError(f"causal_transformer takes one token sequence and no conditioning; got fields "
                             f"{sorted(spaces)} and conditioning {sorted(cond_spaces or {})}")
        (self.field, space), = spaces.items()
        if space.kind != "discrete" or len(space.shape) != 1:
            raise ValueError(f"causal_transformer: field {self.field!r} must be Discrete((L,), V), got {space}")
        self.length, self.vocab_size = space.shape[0], space.vocab_size
        self.embed = nn.Embedding(space.vocab_size + 1, width)
        self.bos = nn.Parameter(0.02 * torch.randn(width))
        self.pos = nn.Parameter(0.02 * torch.randn(self.length, width))
        self.context = nn.Parameter(torch.zeros(width))
        self.blocks = nn.ModuleList(DiTBlock(width, heads, mlp_ratio, dropout, causal=True) for _ in range(depth))
        self.out_norm = AdaLayerNorm(width, width)
        self.head = nn.Linear(width, space.vocab_size)

    def forward(self, x_t: State, t: torch.Tensor, cond: State | None = None) -> dict[str, torch.Tensor]:
        """``{field: logits (B, L, V)}``; ``t`` and ``cond`` are ignored."""
        ids = x_t[self.field].long()
        n = ids.shape[0]
        h = self.embed(ids[:, :-1].clamp(max=self.vocab_size))
        h = torch.cat([self.bos.expand(n, 1, -1), h], dim=1) + self.pos
        c = self.context.expand(n, -1)
        for block in self.blocks:
            h = block(h, c)
        return {self.field: self.head(self.out_norm(h, F.silu(c)))}
