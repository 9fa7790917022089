"""A generic bidirectional transformer denoiser with adaLN-Zero time conditioning.

Every field becomes a sequence of tokens, all fields are concatenated into one sequence,
and a stack of DiT blocks (Peebles & Xie 2023: self-attention and an MLP, each with
shift / scale / gate from the conditioning vector, gates initialised at zero) mixes them.

Tokenisation of a field of per-sample shape ``shape``:

=====================  ====================================  =================================
space                  tokens                                features per token
=====================  ====================================  =================================
continuous ``(C,)``    C (each scalar is a token)            1
continuous ``(L, C)``  L                                     C
continuous, rank > 2   prod(shape[:-1])                      shape[-1]
discrete (any shape)   prod(shape)                           an embedding of the id (the
                                                             vocabulary plus a mask id)
=====================  ====================================  =================================

Conditioning: a discrete field of one token (a class label) is embedded and added to the
time embedding (the adaLN input); any other conditioning field is tokenised as above and
prepended to the sequence (in-context conditioning; its outputs are discarded). A missing
``cond`` (or a dropped entry) is the null value that ``Experiment.drop_cond`` writes: id
``vocab_size`` for discrete fields, zeros for continuous ones.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from polydiff.denoisers.embeddings import AdaLayerNorm, SinusoidalEmbedding
from polydiff.spaces import Space, State

POSITIONS = ("learned", "sinusoidal")


def token_layout(space: Space) -> tuple[int, int]:
    """``(number of tokens, features per token)`` of one sample of ``space`` (see the module table)."""
    if space.kind == "discrete":
        return math.prod(space.shape), 1
    if len(space.shape) == 1:
        return space.shape[0], 1
    return math.prod(space.shape[:-1]), space.shape[-1]


def sinusoidal_positions(n: int, width: int) -> torch.Tensor:
    """Fixed sin / cos position codes (Vaswani et al. 2017), shape ``(n, width)``."""
    half = width // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half, 1))
    args = torch.arange(n, dtype=torch.float32)[:, None] * freqs[None]
    codes = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(codes, (0, width - codes.shape[1]))


class _Tokenizer(nn.Module):
    """Maps one field to ``(B, n_tokens, width)`` tokens with position and field embeddings."""

    def __init__(self, space: Space, width: int, positions: str) -> None:
        super().__init__()
        self.space = space
        self.n_tokens, self.features = token_layout(space)
        if space.kind == "discrete":
            self.embed = nn.Embedding(space.vocab_size + 1, width)
        else:
            self.embed = nn.Linear(self.features, width)
        self.field = nn.Parameter(torch.zeros(width))
        if positions == "learned":
            self.pos = nn.Parameter(0.02 * torch.randn(self.n_tokens, width))
        else:
            self.register_buffer("pos", sinusoidal_positions(self.n_tokens, width), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.space.kind == "discrete":
            h = self.embed(x.reshape(x.shape[0], self.n_tokens).long())
        else:
            h = self.embed(x.reshape(x.shape[0], self.n_tokens, self.features).float())
        return h + self.pos + self.field

    def null(self, n: int, device: torch.device) -> torch.Tensor:
        """The null value of this field for ``n`` samples (dropped conditioning)."""
        if self.space.kind == "discrete":
            return torch.full((n, *self.space.shape), self.space.vocab_size, dtype=torch.long, device=device)
        return torch.zeros((n, *self.space.shape), device=device)


class DiTBlock(nn.Module):
    """Pre-norm self-attention and MLP, each modulated by adaLN-Zero (Peebles & Xie 2023, Fig. 3).

    ``h = h + gate_1 * Attn(LN(h) (1 + scale_1) + shift_1)``, then the same for the MLP; the
    six modulation vectors come from a zero-initialised linear map of SiLU(c), so the
    block starts as the identity. ``causal=True`` masks attention to earlier tokens only.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float, *, causal: bool = False) -> None:
        super().__init__()
        self.causal = causal
        if width % heads:
            raise ValueError(f"transformer width {width} must be divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 nn.Linear(hidden, width))
        self.dropout = dropout
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def attention(self, h: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention (causal when the block is), ``(B, N, W) -> (B, N, W)``."""
        b, n, w = h.shape
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                             is_causal=self.causal)
        return self.proj(out.transpose(1, 2).reshape(b, n, w))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``h`` of shape ``(B, N, W)``, ``c`` of shape ``(B, W)``."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c))[:, None].chunk(6, dim=-1)
        h = h + gate1 * self.attention(self.norm1(h) * (1 + scale1) + shift1)
        return h + gate2 * self.mlp(self.norm2(h) * (1 + scale2) + shift2)


class TransformerDenoiser(nn.Module):
    """Bidirectional transformer over the tokens of every field (see the module docstring).

    Args:
        spaces: diffused fields (continuous, bounded or discrete).
        cond_spaces: conditioning fields.
        width: token width; heads: attention heads (``width % heads == 0``).
        depth: number of DiT blocks.
        mlp_ratio: MLP hidden width / ``width``.
        time_dim: sinusoidal time-embedding size.
        positions: ``"learned"`` (one vector per token, per field) or ``"sinusoidal"``.
        dropout: attention and MLP dropout.

    ``forward(x_t, t, cond=None)`` returns ``{field: (B, *field_shape)}`` for continuous
    fields and ``{field: (B, *field_shape, vocab_size)}`` logits for discrete ones.
    """

    def __init__(self, spaces: Mapping[str, Space], cond_spaces: Mapping[str, Space] | None = None, *,
                 width: int = 128, depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0, time_dim: int = 128,
                 positions: str = "learned", dropout: float = 0.0) -> None:
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"transformer denoiser: positions {positions!r} is not one of {list(POSITIONS)}")
        self.spaces, self.cond_spaces = dict(spaces), dict(cond_spaces or {})
        self.time = nn.Sequential(SinusoidalEmbedding(time_dim), nn.Linear(time_dim, width), nn.SiLU(),
                                  nn.Linear(width, width))
        self.tokenizers = nn.ModuleDict({f: _Tokenizer(s, width, positions) for f, s in self.spaces.items()})
        self.labels = nn.ModuleDict({f: nn.Embedding(s.vocab_size + 1, width) for f, s in self.cond_spaces.items()
                                     if s.kind == "discrete" and math.prod(s.shape) == 1})
        self.prefix = nn.ModuleDict({f: _Tokenizer(s, width, positions) for f, s in self.cond_spaces.items()
                                     if f not in self.labels})
        self.blocks = nn.ModuleList(DiTBlock(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.out_norm = AdaLayerNorm(width, width)
        self.outputs = nn.ModuleDict({f: nn.Linear(width, s.vocab_size if s.kind == "discrete" else token_layout(s)[1])
                                    for f, s in self.spaces.items()})
        for head in self.outputs.values():
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def _conditioning(self, t: torch.Tensor, cond: State | None, n: int,
                      device: torch.device) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The adaLN vector ``(B, W)`` and the prefix token blocks of the conditioning fields."""
        c = self.time(t)
        for f, embed in self.labels.items():
            ids = cond[f] if cond is not None and f in cond else None
            ids = torch.full((n,), self.cond_spaces[f].vocab_size, device=device) if ids is None else ids.reshape(n)
            c = c + embed(ids.long())
        prefix = []
        for f, tok in self.prefix.items():
            value = cond[f] if cond is not None and f in cond else tok.null(n, device)
            prefix.append(tok(value))
        return c, prefix

    def forward(self, x_t: State, t: torch.Tensor, cond: State | None = None) -> dict[str, torch.Tensor]:
        """Raw outputs per field (see the class docstring)."""
        first = x_t[next(iter(self.spaces))]
        n, device = first.shape[0], first.device
        c, prefix = self._conditioning(t, cond, n, device)
        tokens = [self.tokenizers[f](x_t[f]) for f in self.spaces]
        h = torch.cat(prefix + tokens, dim=1)
        for block in self.blocks:
            h = block(h, c)
        h = self.out_norm(h, F.silu(c))
        start = sum(p.shape[1] for p in prefix)
        out = {}
        for f, space in self.spaces.items():
            count = self.tokenizers[f].n_tokens
            raw = self.outputs[f](h[:, start:start + count])
            start += count
            tail = (space.vocab_size,) if space.kind == "discrete" else ()
            out[f] = raw.reshape(n, *space.shape, *tail)
        return out
