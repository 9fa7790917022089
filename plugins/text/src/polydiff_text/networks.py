"""Text denoisers: MDLM's transformer backbone ``"text_transformer"`` and its autoregressive
baseline ``"text_causal"`` of the same blocks.

Both take one diffused sequence field and stack the core's DiT blocks (Peebles & Xie 2023:
pre-norm self-attention and MLP, adaLN-Zero modulation) with rotary position embeddings
(RoPE, Su et al. 2021) applied to the queries and keys of every attention layer, then a
final adaptive LayerNorm and a zero-initialised linear head:

=================  ==========================  ============================  ====================
network            field space                 input per position            raw output
=================  ==========================  ============================  ====================
text_transformer   ``Discrete((L,), V)``       embedding of an id in [0, V]  logits ``(B, L, V)``
                                               (V = the mask / placeholder)
text_transformer   ``Continuous((L, d))``      linear map of the d-vector    ``(B, L, d)``
                   (Diffusion-LM embeddings)
text_transformer   ``Continuous((L,))``        linear map of the scalar      ``(B, L)``
text_causal        ``Discrete((L,), V)``       embedding of the id at i - 1  logits ``(B, L, V)``
                                               (a learned BOS at i = 0)      of p(x_i | x_<i)
=================  ==========================  ============================  ====================

``text_transformer`` is bidirectional and modulated by a time embedding (MDLM, Sahoo et al.
2024, Sec. 3 and App. C); with ``time_conditioning=False`` the modulation vector is a learned
constant and ``t`` is ignored (MDLM's observation that a masked model needs no time input).
``text_causal`` attends causally, takes no time input (its modulation vector is a learned
constant) and offers ``decoder(n, cond)`` for cached decoding: an object whose
``step(prev)`` takes the ids at the previous position (None at the first) and returns the
next position's logits ``(n, V)`` from a key / value cache of the earlier positions.

``text_transformer`` also takes class labels and per-position conditioning fields (a
bridge's source sequence); ``text_causal`` takes none. Building either prints its parameter
count to stderr (``"text_transformer: 1.23 M parameters"``) and keeps it as
``parameter_count``.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping

import torch
from torch import nn
from torch.nn import functional as F

import polydiff

ROPE_BASE = 10000.0
"""RoPE frequency base: channel pair j turns by ``position * ROPE_BASE^(-2j / head_dim)`` (RoFormer eq. 15)."""


def _report_size(name: str, module: nn.Module) -> int:
    """Print the parameter count of a freshly built network to stderr and return it."""
    count = sum(p.numel() for p in module.parameters())
    print(f"{name}: {count / 1e6:.2f} M parameters", file=sys.stderr)
    return count


def _sequence_field(network: str, spaces: Mapping[str, polydiff.Space], kinds: frozenset[str],
                    cond_spaces: Mapping[str, polydiff.Space] | None = None) -> tuple[str, polydiff.Space]:
    """The one diffused sequence field and its space.

    Raises:
        ValueError: not exactly one field, a field that is not ``(L,)`` discrete or
            ``(L,)`` / ``(L, d)`` continuous (of ``kinds``), or conditioning fields were given.
    """
    if cond_spaces:
        raise ValueError(f"{network} denoiser: takes no conditioning fields, got {sorted(cond_spaces)}; "
                         f"give a prompt or context through inpainting (known tokens and a mask) instead")
    if len(spaces) != 1:
        raise ValueError(f"{network} denoiser: takes exactly one diffused sequence field, got fields {sorted(spaces)}")
    field, space = next(iter(spaces.items()))
    ranks = {"discrete": (1,), "continuous": (1, 2)}
    if space.kind not in kinds or len(space.shape) not in ranks.get(space.kind, ()):
        continuous = ["Continuous((L, d))", "Continuous((L,))"] if "continuous" in kinds else []
        accepted = " or ".join(["Discrete((L,), V)", *continuous])
        raise ValueError(f"{network} denoiser: field {field!r} is {space}; it needs a sequence field {accepted}")
    return field, space


class Rotary(nn.Module):
    """Rotary position embedding (RoPE, Su et al. 2021, eq. 34) of one attention head.

    Channel ``j`` and channel ``j + D/2`` of a query or key at position ``m`` are turned by the
    angle ``m * theta_j``, ``theta_j = base^(-2j / D)`` (the "rotate half" pairing of
    GPT-NeoX; a permutation of the paper's adjacent pairs). Rotations compose, so the score
    ``<R(m) q, R(n) k> = <q, R(n - m) k>`` depends on positions only through ``n - m``.

    Args:
        head_dim: channels per head ``D`` (even).
        base: frequency base.
    """

    def __init__(self, head_dim: int, base: float = ROPE_BASE) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding: head width {head_dim} must be even; choose width / heads even")
        self.register_buffer("inv_freq", base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim),
                             persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``x`` ``(..., N, D)`` at positions ``offset .. offset + N - 1`` -> rotated, same shape and dtype."""
        positions = torch.arange(offset, offset + x.shape[-2], device=x.device, dtype=torch.float32)
        angles = positions[:, None] * self.inv_freq[None]
        cos, sin = angles.cos(), angles.sin()
        x1, x2 = x.float().chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


class KVCache:
    """The rotated keys and the values of the positions decoded so far, for one attention layer.

    Args:
        n: sequences decoded together; heads, head_dim: the layer's attention shape.
        capacity: the most positions it holds (the field's length).
        like: a tensor whose device and dtype the cache takes.
    """

    def __init__(self, n: int, heads: int, head_dim: int, capacity: int, like: torch.Tensor) -> None:
        self.keys = like.new_zeros(n, heads, capacity, head_dim)
        self.values = like.new_zeros(n, heads, capacity, head_dim)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k``, ``v`` ``(n, heads, m, head_dim)`` after the cached positions and return all
        keys and values so far ``(n, heads, length, head_dim)``.

        Raises:
            ValueError: the cache would hold more than ``capacity`` positions.
        """
        end = self.length + k.shape[2]
        if end > self.keys.shape[2]:
            raise ValueError(f"cached decoding: position {end - 1} is past the sequence length {self.keys.shape[2]}; "
                             f"a decoder gives exactly one step per position")
        self.keys[:, :, self.length:end] = k
        self.values[:, :, self.length:end] = v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]


class TextBlock(polydiff.DiTBlock):
    """The core's DiT block (adaLN-Zero, Peebles & Xie 2023) with RoPE on queries and keys,
    bidirectional or causal, plus a cached one-position ``step`` for decoding.

    Args:
        width, heads, mlp_ratio, dropout: as ``polydiff.DiTBlock``.
        causal: position i attends to positions <= i only.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float, *, causal: bool) -> None:
        super().__init__(width, heads, mlp_ratio, dropout)
        self.causal = causal
        self.rotary = Rotary(width // heads)

    def _heads(self, h: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries and keys (rotated from position ``offset``) and values, each ``(B, heads, N, W / heads)``."""
        b, n, w = h.shape
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        return self.rotary(q, offset), self.rotary(k, offset), v

    def _merge(self, out: torch.Tensor) -> torch.Tensor:
        """Per-head outputs ``(B, heads, N, W / heads)`` -> projected ``(B, N, W)``."""
        b, _, n, _ = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))

    def attention(self, h: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention with RoPE (causal if the block is), ``(B, N, W) -> (B, N, W)``."""
        q, k, v = self._heads(h, 0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                             is_causal=self.causal)
        return self._merge(out)

    def step(self, h: torch.Tensor, c: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """The block at the next position only: ``h`` ``(B, 1, W)``, ``c`` ``(B, W)``; the position's
        key and value join ``cache`` and its query attends to every cached position."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c))[:, None].chunk(6, dim=-1)
        q, k, v = self._heads(self.norm1(h) * (1 + scale1) + shift1, cache.length)
        keys, values = cache.append(k, v)
        h = h + gate1 * self._merge(F.scaled_dot_product_attention(q, keys, values))
        return h + gate2 * self.mlp(self.norm2(h) * (1 + scale2) + shift2)


class _Trunk(nn.Module):
    """``depth`` text blocks, the final adaLN and a zero-initialised linear head (DiT's final layer)."""

    def __init__(self, network: str, width: int, depth: int, heads: int, mlp_ratio: float, dropout: float,
                 out_features: int, *, causal: bool) -> None:
        super().__init__()
        if width < 1 or depth < 1 or heads < 1 or width % heads or (width // heads) % 2:
            raise ValueError(f"{network} denoiser: need width >= 1, depth >= 1 and heads dividing width into even "
                             f"head widths; got width={width}, depth={depth}, heads={heads}")
        self.blocks = nn.ModuleList(TextBlock(width, heads, mlp_ratio, dropout, causal=causal) for _ in range(depth))
        self.out_norm = polydiff.AdaLayerNorm(width, width)
        self.head = nn.Linear(width, out_features)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, N, W)`` and modulation vector ``(B, W)`` -> outputs ``(B, N, out_features)``."""
        for block in self.blocks:
            h = block(h, c)
        return self.head(self.out_norm(h, F.silu(c)))

    def step(self, h: torch.Tensor, c: torch.Tensor, caches: list[KVCache]) -> torch.Tensor:
        """``forward`` for one new position ``(B, 1, W)`` given a cache per block."""
        for block, cache in zip(self.blocks, caches):
            h = block.step(h, c, cache)
        return self.head(self.out_norm(h, F.silu(c)))


def _per_position(space: polydiff.Space, length: int) -> bool:
    """Whether ``space`` has one entry per position of a length-``length`` sequence."""
    rank = (1,) if space.kind == "discrete" else (1, 2)
    return len(space.shape) in rank and space.shape[0] == length


class _Conditioning(nn.Module):
    """The conditioning fields of a ``TextTransformer``.

    A class label (``Discrete((1,), K)``, ids ``0..K``, K = null) adds an embedding to the
    modulation vector (DiT's class conditioning); a field with one entry per position
    (``(L,)`` ids, or ``(L,)`` / ``(L, d)`` values, e.g. a bridge's source sequence) adds a
    per-position embedding to the input tokens (as the image networks concatenate a
    degraded image). A field absent from ``cond`` takes the null value that
    ``Experiment.drop_cond`` writes: id K for discrete fields, zeros otherwise.

    Raises:
        ValueError: a field of any other shape.
    """

    def __init__(self, cond_spaces: Mapping[str, polydiff.Space], length: int, width: int) -> None:
        super().__init__()
        self.spaces = dict(cond_spaces)
        self.labels, self.positional = nn.ModuleDict(), nn.ModuleDict()
        for name, space in self.spaces.items():
            if space.kind == "discrete" and tuple(space.shape) == (1,):
                self.labels[name] = nn.Embedding(space.vocab_size + 1, width)
            elif _per_position(space, length):
                features = space.shape[1] if len(space.shape) == 2 else 1
                self.positional[name] = (nn.Embedding(space.vocab_size + 1, width) if space.kind == "discrete"
                                         else nn.Linear(features, width))
            else:
                raise ValueError(f"text_transformer denoiser: conditioning field {name!r} is {space}; it takes "
                                 f"class labels Discrete((1,), K) and fields of {length} positions")

    def _value(self, name: str, cond: polydiff.State | None, n: int, device: torch.device) -> torch.Tensor:
        if cond is not None and name in cond:
            return cond[name]
        space = self.spaces[name]
        if space.kind == "discrete":
            return torch.full((n, *space.shape), space.vocab_size, dtype=torch.long, device=device)
        return torch.zeros((n, *space.shape), device=device)

    def modulation(self, c: torch.Tensor, cond: polydiff.State | None) -> torch.Tensor:
        """``c`` ``(B, W)`` plus the embedding of every class label."""
        for name, table in self.labels.items():
            c = c + table(self._value(name, cond, c.shape[0], c.device).reshape(-1).long())
        return c

    def tokens(self, h: torch.Tensor, cond: polydiff.State | None) -> torch.Tensor:
        """Tokens ``(B, L, W)`` plus the per-position embedding of every per-position field."""
        for name, embed in self.positional.items():
            value = self._value(name, cond, h.shape[0], h.device)
            if self.spaces[name].kind == "discrete":
                h = h + embed(value.long())
            else:
                h = h + embed(value.float().reshape(*value.shape[:2], -1))
        return h


class TextTransformer(nn.Module):
    """MDLM's bidirectional backbone (Sahoo et al. 2024, App. C): a DiT (Peebles & Xie 2023)
    over the positions of one sequence field, RoPE in every attention layer (Su et al. 2021),
    adaLN-Zero modulation from a time embedding (sinusoidal, then a SiLU MLP), or from a
    learned constant when ``time_conditioning`` is False.

    Args:
        spaces: one field, ``Discrete((L,), V)`` (ids in [0, V], V = mask),
            ``Continuous((L, d))`` (Diffusion-LM token embeddings, Li et al. 2022) or
            ``Continuous((L,))`` (one scalar per position).
        cond_spaces: class labels and per-position fields (see ``_Conditioning``).
        width: token width; depth: blocks; heads: attention heads (``width / heads`` even);
        mlp_ratio: MLP hidden / width; dropout: attention and MLP dropout.
        time_conditioning: modulate by ``t``; False = a learned constant, ``t`` ignored.
        time_dim: sinusoidal time-feature size.

    ``forward(x_t, t, cond=None)``: ``x_t[field]`` ``(B, L)`` ids, ``(B, L, d)`` or ``(B, L)``
    scalars, ``t`` ``(B,)`` -> ``{field: logits (B, L, V)}`` or the field's shape; L may differ
    from the space's.
    """

    def __init__(self, spaces: Mapping[str, polydiff.Space], cond_spaces: Mapping[str, polydiff.Space] | None = None,
                 *, width: int = 256, depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 time_conditioning: bool = True, time_dim: int = 256) -> None:
        super().__init__()
        self.field, self.space = _sequence_field("text_transformer", spaces, frozenset({"discrete", "continuous"}))
        self.conditioning = _Conditioning(cond_spaces or {}, self.space.shape[0], width)
        self.discrete = self.space.kind == "discrete"
        if self.discrete:
            self.embed: nn.Module = nn.Embedding(self.space.vocab_size + 1, width)
            out_features = self.space.vocab_size
        else:
            self.features = self.space.shape[1] if len(self.space.shape) == 2 else 1
            out_features = self.features
            self.embed = nn.Linear(out_features, width)
        self.time_conditioning = bool(time_conditioning)
        if self.time_conditioning:
            self.time = nn.Sequential(polydiff.SinusoidalEmbedding(time_dim), nn.Linear(time_dim, width), nn.SiLU(),
                                      nn.Linear(width, width))
        else:
            self.constant = nn.Parameter(torch.randn(width))
        self.trunk = _Trunk("text_transformer", width, depth, heads, mlp_ratio, dropout, out_features, causal=False)
        self.parameter_count = _report_size("text_transformer", self)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The field ``(B, L)`` ids, ``(B, L, d)`` or ``(B, L)`` scalars -> tokens ``(B, L, width)``."""
        rank = len(self.space.shape) + 1
        if x.ndim != rank or (rank == 3 and x.shape[-1] != self.features):
            expected = "(B, L)" if rank == 2 else f"(B, L, {self.features})"
            raise ValueError(f"text_transformer: field {self.field!r} has shape {tuple(x.shape)}; expected {expected}")
        if self.discrete:
            return self.embed(x.long())
        return self.embed(x.float().reshape(*x.shape[:2], self.features))

    def forward(self, x_t: polydiff.State, t: torch.Tensor, cond: polydiff.State | None = None
                ) -> dict[str, torch.Tensor]:
        """Raw output of the field (see the class docstring)."""
        x = x_t[self.field]
        h = self.conditioning.tokens(self._inputs(x), cond)
        c = self.time(t) if self.time_conditioning else self.constant.expand(h.shape[0], -1)
        out = self.trunk(h, self.conditioning.modulation(c, cond))
        return {self.field: out if self.discrete else out.reshape(x.shape)}


class TextCausal(nn.Module):
    """The autoregressive baseline: the blocks of ``TextTransformer`` with a causal attention
    mask and no time input (a GPT-style decoder with RoPE; Radford et al. 2019, Su et al. 2021).

    The input is shifted right inside the network: position i sees the embeddings of the ids
    at positions < i, with a learned BOS embedding at position 0, so ``raw[:, i]`` are the
    logits of ``p(x_i | x_<i)``. The modulation vector of every block is a learned constant.

    Args:
        spaces: one field ``Discrete((L,), V)``.
        cond_spaces: must be empty.
        width, depth, heads, mlp_ratio, dropout: as ``TextTransformer``.

    ``forward(x_t, t, cond=None)``: ``x_t[field]`` ``(B, L)`` ids in [0, V] -> ``{field: logits
    (B, L, V)}``; ``t`` is ignored. ``decoder(n, cond=None)`` gives a ``CausalDecoder``.
    """

    def __init__(self, spaces: Mapping[str, polydiff.Space], cond_spaces: Mapping[str, polydiff.Space] | None = None,
                 *, width: int = 256, depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.field, self.space = _sequence_field("text_causal", spaces, frozenset({"discrete"}), cond_spaces)
        self.embed = nn.Embedding(self.space.vocab_size + 1, width)
        self.bos = nn.Parameter(torch.randn(width))
        self.constant = nn.Parameter(torch.randn(width))
        self.trunk = _Trunk("text_causal", width, depth, heads, mlp_ratio, dropout, self.space.vocab_size, causal=True)
        self.parameter_count = _report_size("text_causal", self)

    def forward(self, x_t: polydiff.State, t: torch.Tensor | None = None, cond: polydiff.State | None = None
                ) -> dict[str, torch.Tensor]:
        """Next-token logits of the field (see the class docstring); ``t`` and ``cond`` are unused."""
        x = x_t[self.field]
        if x.ndim != 2:
            raise ValueError(f"text_causal: field {self.field!r} has shape {tuple(x.shape)}; expected (B, L) ids")
        b = x.shape[0]
        h = torch.cat([self.bos.expand(b, 1, -1), self.embed(x[:, :-1].long())], dim=1)
        return {self.field: self.trunk(h, self.constant.expand(b, -1))}

    def decoder(self, n: int, cond: polydiff.State | None = None) -> CausalDecoder:
        """A cached decoder of ``n`` sequences of the field's length (``cond`` must be None or empty)."""
        if cond:
            raise ValueError(f"text_causal: takes no conditioning, got fields {sorted(cond)}")
        return CausalDecoder(self, n)


class CausalDecoder:
    """Cached left-to-right decoding with a ``TextCausal`` network (one key / value cache per block).

    ``step(prev)`` gives the logits of the next position: call it first with ``prev=None``
    (position 0, the BOS input), then with the ids ``(n,)`` chosen at each position, at most
    L times in all. The logits equal those of the full forward on the same prefix.

    Args:
        network: the causal network (its current train / eval mode is used).
        n: sequences decoded together.
    """

    def __init__(self, network: TextCausal, n: int) -> None:
        self.network, self.n = network, n
        block = network.trunk.blocks[0]
        width = network.bos.shape[0]
        capacity = network.space.shape[0]
        self.caches = [KVCache(n, block.heads, width // block.heads, capacity, network.bos)
                       for _ in network.trunk.blocks]
        self.position = 0

    @torch.no_grad()
    def step(self, prev: torch.Tensor | None) -> torch.Tensor:
        """``prev`` ``(n,)`` ids at the previous position (None at the first) -> logits ``(n, V)``."""
        net = self.network
        if (prev is None) != (self.position == 0):
            raise ValueError(f"cached decoding: step {self.position} needs "
                             f"{'prev=None' if self.position == 0 else 'the ids of the previous position'}")
        if prev is None:
            h = net.bos.expand(self.n, 1, -1)
        else:
            h = net.embed(prev.reshape(self.n).long())[:, None]
        logits = net.trunk.step(h, net.constant.expand(self.n, -1), self.caches)[:, 0]
        self.position += 1
        return logits


def denoiser_specs() -> Iterator[polydiff.DenoiserSpec]:
    """The ``"text_transformer"`` (MDLM backbone) and ``"text_causal"`` (autoregressive baseline) specs."""
    kit = {"width": 32, "depth": 1, "heads": 2}
    yield polydiff.DenoiserSpec(name="text_transformer",
                                summary="MDLM backbone: DiT blocks with RoPE and adaLN-Zero time conditioning",
                                factory=TextTransformer, spaces=frozenset({"discrete", "continuous"}),
                                conditional=True, kit_options=kit)
    yield polydiff.DenoiserSpec(name="text_causal",
                                summary="autoregressive baseline: the same blocks, causal, cached decoding",
                                factory=TextCausal, spaces=frozenset({"discrete"}), causal=True, kit_options=kit)
