"""Image denoisers: an ADM / EDM-style U-Net and a small DiT, registered as ``"unet"`` and ``"dit"``.

Both take one diffused image field of per-sample shape ``(C, H, W)`` and share the same
input / output and conditioning conventions:

=====================  ==========================================  ===============================
field space            network input                               raw output
=====================  ==========================================  ===============================
continuous / bounded   the pixels, ``C`` channels                  ``(B, C, H, W)``
discrete, vocab V      each id in ``[0, V]`` (V = mask) embedded   logits ``(B, C, H, W, V)``
                       into ``embed_dim`` channels: ``C * E``
=====================  ==========================================  ===============================

Conditioning fields (``cond_spaces``):

- a discrete field of one token (``"label"``, ``Discrete((1,), K)``): a table of ``K + 1``
  embeddings (id ``K`` = the null label of classifier-free guidance) added to the time
  embedding, which modulates every block;
- a field with the image's height and width (``"degraded"``): concatenated to the input
  channels, embedded first when discrete.

A missing ``cond`` (None, or the key absent) is the null value ``Experiment.drop_cond``
writes: id ``K`` for labels, zeros for a continuous degraded image, the mask id for a
discrete one.

Building either network prints one line with its parameter count to stderr
(``"unet: 1.23 M parameters"``).
"""
from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

import polydiff

SPACE_KINDS = frozenset({"continuous", "bounded", "discrete"})
POSITIONS = ("learned", "sinusoidal")
SKIP_SCALE = math.sqrt(0.5)
"""Residual sums are scaled by 1/sqrt(2) to keep activations at unit scale through depth
(NCSN++ / DDPM++, Song et al. 2021; EDM's ``skip_scale``)."""


def _report_size(name: str, module: nn.Module) -> None:
    """Print the parameter count of a freshly built network, once, to stderr."""
    count = sum(p.numel() for p in module.parameters())
    print(f"{name}: {count / 1e6:.2f} M parameters", file=sys.stderr)


def _image_field(network: str, spaces: Mapping[str, polydiff.Space]) -> tuple[str, polydiff.Space]:
    """The single diffused field and its space; ValueError unless it is one ``(C, H, W)`` field."""
    if len(spaces) != 1:
        raise ValueError(f"{network} denoiser: takes exactly one diffused image field, got fields {sorted(spaces)}; "
                         f"use the 'transformer' denoiser for several fields")
    field, space = next(iter(spaces.items()))
    if len(space.shape) != 3 or space.kind not in SPACE_KINDS:
        raise ValueError(f"{network} denoiser: field {field!r} is {space}; it needs a (C, H, W) continuous, "
                         f"bounded or discrete image field")
    return field, space


class _PixelEncoder(nn.Module):
    """One image-shaped field ``(B, C, H, W)`` -> feature map ``(B, channels, H, W)``.

    Continuous values pass through as ``C`` channels; discrete ids (``0..V``, V = mask) are
    embedded per pixel into ``embed_dim`` channels each, giving ``C * embed_dim`` channels.
    """

    def __init__(self, space: polydiff.Space, embed_dim: int) -> None:
        super().__init__()
        self.space = space
        c = space.shape[0]
        self.discrete = space.kind == "discrete"
        self.embed = nn.Embedding(space.vocab_size + 1, embed_dim) if self.discrete else None
        self.channels = c * embed_dim if self.discrete else c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.discrete:
            return x.float()
        b, c, h, w = x.shape
        return self.embed(x.long()).permute(0, 1, 4, 2, 3).reshape(b, self.channels, h, w)

    def null(self, n: int, device: torch.device) -> torch.Tensor:
        """The dropped value for ``n`` samples: the mask id for discrete fields, zeros otherwise."""
        if self.discrete:
            return torch.full((n, *self.space.shape), self.space.vocab_size, dtype=torch.long, device=device)
        return torch.zeros((n, *self.space.shape), device=device)


class _ImageIO(nn.Module):
    """The shared input, output and conditioning conventions of the image denoisers.

    ``inputs(x_t, cond)`` gives the network's input feature map ``(B, in_channels, H, W)``
    (the image field, then every spatial conditioning field); ``condition(t_emb, cond)``
    adds the label embeddings to the time embedding ``(B, dim)``; ``outputs(y)`` turns the
    network's ``(B, out_channels, H, W)`` map into the field's raw output.
    """

    def __init__(self, network: str, spaces: Mapping[str, polydiff.Space],
                 cond_spaces: Mapping[str, polydiff.Space] | None, embed_dim: int, cond_dim: int) -> None:
        super().__init__()
        self.field, self.space = _image_field(network, spaces)
        self.image = _PixelEncoder(self.space, embed_dim)
        self.labels = nn.ModuleDict()
        self.spatial = nn.ModuleDict()
        for name, space in (cond_spaces or {}).items():
            if space.kind == "discrete" and math.prod(space.shape) == 1:
                self.labels[name] = nn.Embedding(space.vocab_size + 1, cond_dim)
            elif len(space.shape) == 3 and tuple(space.shape[1:]) == tuple(self.space.shape[1:]):
                self.spatial[name] = _PixelEncoder(space, embed_dim)
            else:
                raise ValueError(f"{network} denoiser: conditioning field {name!r} is {space}; it takes class labels "
                                 f"(Discrete((1,), K)) and images of height and width {tuple(self.space.shape[1:])}")
        self.in_channels = self.image.channels + sum(e.channels for e in self.spatial.values())
        c = self.space.shape[0]
        self.out_channels = c * self.space.vocab_size if self.space.kind == "discrete" else c

    def inputs(self, x_t: polydiff.State, cond: polydiff.State | None) -> torch.Tensor:
        """``(B, in_channels, H, W)``: the embedded image and spatial conditioning fields."""
        x = x_t[self.field]
        if tuple(x.shape[1:]) != tuple(self.space.shape):
            raise ValueError(f"image denoiser: field {self.field!r} has shape {tuple(x.shape[1:])} per sample; the "
                             f"network was built for {tuple(self.space.shape)}; rebuild it for this image size")
        parts = [self.image(x)]
        for name, enc in self.spatial.items():
            value = cond[name] if cond is not None and name in cond else enc.null(x.shape[0], x.device)
            parts.append(enc(value))
        return torch.cat(parts, dim=1)

    def condition(self, emb: torch.Tensor, cond: polydiff.State | None) -> torch.Tensor:
        """Add each label's embedding (the null id where absent) to ``emb`` ``(B, dim)``."""
        n = emb.shape[0]
        for name, table in self.labels.items():
            if cond is not None and name in cond:
                ids = cond[name].reshape(n).long()
            else:
                ids = torch.full((n,), table.num_embeddings - 1, dtype=torch.long, device=emb.device)
            emb = emb + table(ids)
        return emb

    def outputs(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, out_channels, H, W)`` -> ``{field: (B, C, H, W)}`` or logits ``(B, C, H, W, V)``."""
        if self.space.kind != "discrete":
            return {self.field: y}
        b, _, h, w = y.shape
        c, v = self.space.shape[0], self.space.vocab_size
        return {self.field: y.view(b, c, v, h, w).permute(0, 1, 3, 4, 2)}


def _time_mlp(dim: int, out: int) -> nn.Sequential:
    """Sinusoidal features of t (DDPM, scaled by 1000) -> two-layer SiLU MLP (ADM's time embedding)."""
    return nn.Sequential(polydiff.SinusoidalEmbedding(dim), nn.Linear(dim, out), nn.SiLU(), nn.Linear(out, out))


def _zero(module: nn.Module) -> nn.Module:
    """Zero a layer's weights and bias so that its branch starts switched off."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


# ---------------------------------------------------------------------------------------
# U-Net
# ---------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    """ADM residual block with adaptive group normalisation (Dhariwal & Nichol 2021, Sec. 3).

    ``h = conv1(SiLU(GN(x)))``; ``h = GN(h) (1 + scale) + shift`` with ``(scale, shift)`` a
    linear map of SiLU(emb); ``out = (skip(x) + conv2(dropout(SiLU(h)))) / sqrt(2)``
    (``SKIP_SCALE``), ``conv2`` initialised at zero so that the block starts as (a scaled
    projection of) the identity.

    Args:
        in_ch, out_ch: channels in and out; emb_dim: conditioning vector size.
        groups: GroupNorm groups (must divide ``in_ch`` and ``out_ch``); dropout: before ``conv2``.
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.modulation = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch, affine=False)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, in_ch, H, W)``, ``emb`` ``(B, emb_dim)`` -> ``(B, out_ch, H, W)``."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.modulation(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return (self.skip(x) + self.conv2(self.drop(F.silu(h)))) * SKIP_SCALE


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the ``H * W`` positions of a feature map, residual,
    output projection initialised at zero (ADM's attention block)."""

    def __init__(self, ch: int, groups: int, head_channels: int) -> None:
        super().__init__()
        self.heads = max(1, ch // head_channels)
        if ch % self.heads:
            raise ValueError(f"unet attention: {ch} channels do not split into {self.heads} heads of about "
                             f"{head_channels}; choose head_channels dividing {ch}")
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, ch, H, W) -> (B, ch, H, W)``; ``emb`` is unused (uniform block interface)."""
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3x3 convolution: ``(B, ch, H, W) -> (B, ch, H / 2, W / 2)``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 convolution: ``(B, ch, H, W) -> (B, ch, 2H, 2W)``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _check_unet_options(space: polydiff.Space, channels: int, mults: Sequence[int], blocks: int, groups: int) -> None:
    """ValueError naming the problem and the fix for sizes the U-Net cannot take."""
    if not mults or blocks < 1 or channels < 1:
        raise ValueError(f"unet denoiser: need channels >= 1, blocks_per_level >= 1 and a non-empty channel_mults; "
                         f"got channels={channels}, blocks_per_level={blocks}, channel_mults={list(mults)}")
    bad = sorted({channels * m for m in mults if (channels * m) % groups})
    if bad:
        raise ValueError(f"unet denoiser: groups={groups} must divide every width channels * mult; widths {bad} are "
                         f"not divisible; choose groups dividing {channels} (e.g. {math.gcd(channels, 32)})")
    factor = 2 ** (len(mults) - 1)
    _, h, w = space.shape
    if h % factor or w % factor:
        raise ValueError(f"unet denoiser: field shape {tuple(space.shape)} has H, W not divisible by "
                         f"2^(levels - 1) = {factor} for {len(mults)} levels (channel_mults={list(mults)}); "
                         f"use fewer levels or resize / pad the images to a multiple of {factor}")


class UNet(nn.Module):
    """ADM / EDM "DDPM++"-family U-Net for one image field (Dhariwal & Nichol 2021; Karras et al. 2022).

    Encoder: per level ``blocks_per_level`` residual blocks (+ self-attention where the
    feature map's height is in ``attention_resolutions``), then a stride-2 downsample
    except at the last level; a middle of residual, attention, residual; a decoder that
    mirrors the encoder with ``blocks_per_level + 1`` blocks per level, each fed the
    matching encoder activation by concatenation (skip connections); GroupNorm, SiLU and a
    zero-initialised output convolution, so the network's initial output is zero. The time
    embedding (sinusoidal -> MLP) plus any class embedding modulates every residual block
    through adaptive group normalisation.

    Args:
        spaces: one diffused field ``(C, H, W)``, continuous, bounded or discrete.
        cond_spaces: optional ``"label"`` and / or ``"degraded"`` fields (module docstring).
        channels: base width; channel_mults: width multiplier per level (its length = levels).
        blocks_per_level: residual blocks per encoder level.
        attention_resolutions: feature-map heights with self-attention; None = the lowest.
        dropout: in residual blocks; groups: GroupNorm groups (must divide every width).
        head_channels: channels per attention head; embed_dim: embedding size per discrete pixel.

    ``forward(x_t, t, cond=None)``: ``x_t[field]`` ``(B, C, H, W)`` (ids for discrete),
    ``t`` ``(B,)`` -> ``{field: (B, C, H, W)}`` or logits ``(B, C, H, W, V)``.
    """

    def __init__(self, spaces: Mapping[str, polydiff.Space], cond_spaces: Mapping[str, polydiff.Space] | None = None,
                 *, channels: int = 64, channel_mults: Sequence[int] = (1, 2, 2), blocks_per_level: int = 2,
                 attention_resolutions: Sequence[int] | None = None, dropout: float = 0.0, groups: int = 32,
                 head_channels: int = 64, embed_dim: int = 8) -> None:
        super().__init__()
        emb_dim = 4 * channels
        self.io = _ImageIO("unet", spaces, cond_spaces, embed_dim, emb_dim)
        mults = [int(m) for m in channel_mults]
        _check_unet_options(self.io.space, channels, mults, blocks_per_level, groups)
        height = self.io.space.shape[1]
        attn = {height // 2 ** (len(mults) - 1)} if attention_resolutions is None else set(attention_resolutions)
        self.time = _time_mlp(channels, emb_dim)
        self.inp = nn.Conv2d(self.io.in_channels, channels, 3, padding=1)
        self.down, skips = self._encoder(channels, mults, blocks_per_level, attn, emb_dim, groups, dropout,
                                         head_channels, height)
        top = channels * mults[-1]
        self.middle = nn.ModuleList([ResBlock(top, top, emb_dim, groups, dropout),
                                     AttentionBlock(top, groups, head_channels),
                                     ResBlock(top, top, emb_dim, groups, dropout)])
        self.up = self._decoder(channels, mults, blocks_per_level, attn, emb_dim, groups, dropout, head_channels,
                                height, skips)
        self.out = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(),
                                 _zero(nn.Conv2d(channels, self.io.out_channels, 3, padding=1)))
        _report_size("unet", self)

    @staticmethod
    def _encoder(channels, mults, blocks, attn, emb_dim, groups, dropout, head_channels, height):
        """The encoder stages (each a ModuleList applied in order, its output kept as a skip)
        and the channel count of every skip."""
        stages, skips, ch = nn.ModuleList(), [channels], channels
        for level, mult in enumerate(mults):
            res = height // 2 ** level
            for _ in range(blocks):
                stage = [ResBlock(ch, channels * mult, emb_dim, groups, dropout)]
                ch = channels * mult
                if res in attn:
                    stage.append(AttentionBlock(ch, groups, head_channels))
                stages.append(nn.ModuleList(stage))
                skips.append(ch)
            if level < len(mults) - 1:
                stages.append(nn.ModuleList([Downsample(ch)]))
                skips.append(ch)
        return stages, skips

    @staticmethod
    def _decoder(channels, mults, blocks, attn, emb_dim, groups, dropout, head_channels, height, skips):
        """The decoder stages; each consumes one skip (popped from the end of ``skips``)."""
        stages, skips, ch = nn.ModuleList(), list(skips), channels * mults[-1]
        for level in reversed(range(len(mults))):
            res = height // 2 ** level
            for i in range(blocks + 1):
                stage = [ResBlock(ch + skips.pop(), channels * mults[level], emb_dim, groups, dropout)]
                ch = channels * mults[level]
                if res in attn:
                    stage.append(AttentionBlock(ch, groups, head_channels))
                if level > 0 and i == blocks:
                    stage.append(Upsample(ch))
                stages.append(nn.ModuleList(stage))
        return stages

    def forward(self, x_t: polydiff.State, t: torch.Tensor, cond: polydiff.State | None = None
                ) -> dict[str, torch.Tensor]:
        """Raw output of the image field (see the class docstring)."""
        emb = self.io.condition(self.time(t), cond)
        h = self.inp(self.io.inputs(x_t, cond))
        kept = [h]
        for stage in self.down:
            for layer in stage:
                h = layer(h, emb)
            kept.append(h)
        for layer in self.middle:
            h = layer(h, emb)
        for stage in self.up:
            h = torch.cat([h, kept.pop()], dim=1)
            for layer in stage:
                h = layer(h, emb)
        return self.io.outputs(self.out(h))


# ---------------------------------------------------------------------------------------
# DiT
# ---------------------------------------------------------------------------------------


def sincos_positions_2d(rows: int, cols: int, width: int) -> torch.Tensor:
    """Fixed 2-D sin / cos position codes (MAE / DiT): half the width codes the row, half the column.

    Returns:
        ``(rows * cols, width)`` float32, row-major over the patch grid.

    Raises:
        ValueError: ``width`` is not a multiple of 4.
    """
    if width % 4:
        raise ValueError(f"dit denoiser: sinusoidal positions need width divisible by 4, got {width}")
    quarter = width // 4
    freqs = torch.exp(-math.log(10000.0) * torch.arange(quarter, dtype=torch.float32) / quarter)

    def codes(n: int) -> torch.Tensor:
        args = torch.arange(n, dtype=torch.float32)[:, None] * freqs[None]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=1)

    r, c = codes(rows), codes(cols)
    return torch.cat([r[:, None].expand(rows, cols, -1), c[None].expand(rows, cols, -1)], dim=-1).reshape(-1, width)


class DiT(nn.Module):
    """A small Diffusion Transformer for one image field (Peebles & Xie 2023).

    The input feature map (module docstring) is cut into ``patch x patch`` patches, each
    linearly embedded (a stride-``patch`` convolution) plus a 2-D position code; ``depth``
    DiT blocks with adaLN-Zero conditioning on the time (+ label) embedding; a final
    adaptive LayerNorm and a zero-initialised linear map to ``patch * patch * out_channels``
    values per token, rearranged back into the image (unpatchify).

    Args:
        spaces: one diffused field ``(C, H, W)``, continuous, bounded or discrete.
        cond_spaces: optional ``"label"`` and / or ``"degraded"`` fields.
        patch: patch side (must divide H and W); width: token width; depth: blocks;
        heads: attention heads (must divide ``width``); mlp_ratio: MLP hidden / width.
        positions: ``"learned"`` or ``"sinusoidal"`` (fixed 2-D sin / cos).
        dropout: MLP dropout; embed_dim: embedding size per discrete pixel.

    ``forward(x_t, t, cond=None)`` as ``UNet.forward``.
    """

    def __init__(self, spaces: Mapping[str, polydiff.Space], cond_spaces: Mapping[str, polydiff.Space] | None = None,
                 *, patch: int = 2, width: int = 128, depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0,
                 positions: str = "learned", dropout: float = 0.0, embed_dim: int = 8) -> None:
        super().__init__()
        self.io = _ImageIO("dit", spaces, cond_spaces, embed_dim, width)
        _, h, w = self.io.space.shape
        _check_dit_options(self.io.space, patch, width, heads, positions)
        self.patch, self.grid = patch, (h // patch, w // patch)
        self.time = _time_mlp(width, width)
        self.embed = nn.Conv2d(self.io.in_channels, width, patch, stride=patch)
        n = self.grid[0] * self.grid[1]
        if positions == "learned":
            self.pos = nn.Parameter(0.02 * torch.randn(n, width))
        else:
            self.register_buffer("pos", sincos_positions_2d(*self.grid, width), persistent=False)
        self.blocks = nn.ModuleList(polydiff.DiTBlock(width, heads, mlp_ratio, dropout) for _ in range(depth))
        self.out_norm = polydiff.AdaLayerNorm(width, width)
        self.head = _zero(nn.Linear(width, patch * patch * self.io.out_channels))
        _report_size("dit", self)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, p * p * C_out)`` -> ``(B, C_out, H, W)``."""
        b, p, (gh, gw) = tokens.shape[0], self.patch, self.grid
        x = tokens.view(b, gh, gw, p, p, self.io.out_channels)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(b, self.io.out_channels, gh * p, gw * p)

    def forward(self, x_t: polydiff.State, t: torch.Tensor, cond: polydiff.State | None = None
                ) -> dict[str, torch.Tensor]:
        """Raw output of the image field (see the class docstring)."""
        c = self.io.condition(self.time(t), cond)
        h = self.embed(self.io.inputs(x_t, cond)).flatten(2).transpose(1, 2) + self.pos
        for block in self.blocks:
            h = block(h, c)
        return self.io.outputs(self.unpatchify(self.head(self.out_norm(h, F.silu(c)))))


def _check_dit_options(space: polydiff.Space, patch: int, width: int, heads: int, positions: str) -> None:
    """ValueError naming the problem and the fix for sizes the DiT cannot take."""
    _, h, w = space.shape
    if patch < 1 or h % patch or w % patch:
        raise ValueError(f"dit denoiser: patch={patch} must divide the field's height and width; field shape "
                         f"{tuple(space.shape)}; choose a patch dividing both {h} and {w}")
    if heads < 1 or width % heads:
        raise ValueError(f"dit denoiser: width={width} must be divisible by heads={heads}")
    if positions not in POSITIONS:
        raise ValueError(f"dit denoiser: positions {positions!r} is not one of {list(POSITIONS)}")


def denoiser_specs() -> Iterator[polydiff.DenoiserSpec]:
    """The ``"unet"`` and ``"dit"`` denoiser specs for the ``image`` modality."""
    common = {"spaces": frozenset(SPACE_KINDS), "modalities": frozenset({"image"}), "conditional": True}
    yield polydiff.DenoiserSpec(name="unet", summary="ADM / EDM-style U-Net, adaptive GroupNorm, self-attention",
                                factory=UNet, kit_options={"channels": 16, "channel_mults": [1, 2], "groups": 8,
                                                           "blocks_per_level": 1, "attention_resolutions": [4]},
                                **common)
    yield polydiff.DenoiserSpec(name="dit", summary="small DiT: patches, adaLN-Zero transformer blocks",
                                factory=DiT, **common)
