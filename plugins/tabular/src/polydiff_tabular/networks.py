"""The tabular denoiser ``"tabular_mlp"``: TabDDPM's MLP (Kotelnikov et al. 2023, Sec. 3 and App. A).

Every diffused field of a row goes in at once:

=====================  =========================================  ==========================
field space            network input                              raw output
=====================  =========================================  ==========================
continuous / bounded   the values, flattened (``"num"``: n_num)    ``(B, *shape)``
discrete, K classes    each id in ``[0, K]`` (K = the mask id)     logits ``(B, *shape, K)``
                       embedded into ``embed_dim`` features
=====================  =========================================  ==========================

The concatenated inputs are projected to ``time_dim`` features, the time embedding is added
(sinusoidal features of t, then Linear -> SiLU -> Linear, as TabDDPM), then blocks
Linear -> ReLU -> Dropout of the ``hidden`` widths and one linear head that is split back
into the fields. TabDDPM feeds categories one-hot; an embedding table is the same linear
map of the one-hot vector, with one extra row for the mask id.

Conditioning fields (``cond_spaces``): a class label ``Discrete((1,), K)`` adds an embedding
of its id in ``[0, K]`` to the time embedding (TabDDPM's ``label_emb``), id K being the null
label of a dropped condition (classifier-free guidance); a continuous field is flattened
and projected, zeros when dropped. A field absent from ``cond`` (or ``cond=None``) takes
that null value. Building the network prints its parameter count to stderr
(``"tabular_mlp: 0.12 M parameters"``) and keeps it as ``parameter_count``.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

import polydiff

NAME = "tabular_mlp"
SPACE_KINDS = frozenset({"continuous", "bounded", "discrete"})
DEFAULT_HIDDEN = (256, 256, 256)
"""TabDDPM's MLP widths are tuned per data set (App. A); three layers of 256 is a middle choice."""
KIT_OPTIONS = {"hidden": [64, 64], "time_dim": 64, "embed_dim": 8}
"""Small enough for the conformance kit's tiny runs; [32, 32] lowers the reflected process's loss on
``toy-box`` by under the 10% the kit asks in its 60 steps."""


def _report_size(module: nn.Module) -> int:
    """Print the parameter count of a freshly built network to stderr and return it."""
    count = sum(p.numel() for p in module.parameters())
    print(f"{NAME}: {count / 1e6:.2f} M parameters", file=sys.stderr)
    return count


def _check_sizes(hidden: Sequence[int], time_dim: int, embed_dim: int) -> list[int]:
    """The hidden widths as a list; ValueError naming the option when a size is not positive."""
    widths = [int(w) for w in hidden]
    if not widths or min(widths) < 1:
        raise ValueError(f"{NAME} denoiser: option 'hidden' = {list(hidden)} needs one or more positive widths")
    if time_dim < 2 or time_dim % 2:
        raise ValueError(f"{NAME} denoiser: option 'time_dim' = {time_dim} must be a positive even number")
    if embed_dim < 1:
        raise ValueError(f"{NAME} denoiser: option 'embed_dim' = {embed_dim} must be positive")
    return widths


class _FieldCodec(nn.Module):
    """Turns the diffused fields of a batch into one feature matrix and the head's output back into fields.

    Args:
        spaces: the diffused fields (continuous, bounded or discrete, any per-sample shape).
        embed_dim: features per discrete id.

    Raises:
        ValueError: no fields, or a field of another space kind.
    """

    def __init__(self, spaces: Mapping[str, polydiff.Space], embed_dim: int) -> None:
        super().__init__()
        if not spaces:
            raise ValueError(f"{NAME} denoiser: needs at least one diffused field")
        self.spaces = dict(spaces)
        self.embeddings = nn.ModuleDict()
        self.in_sizes: dict[str, int] = {}
        self.out_sizes: dict[str, int] = {}
        for name, space in self.spaces.items():
            if space.kind not in SPACE_KINDS:
                raise ValueError(f"{NAME} denoiser: field {name!r} is {space}; it takes continuous, bounded and "
                                 f"discrete fields")
            cells = math.prod(space.shape)
            if space.kind == "discrete":
                self.embeddings[name] = nn.Embedding(space.vocab_size + 1, embed_dim)
                self.in_sizes[name], self.out_sizes[name] = cells * embed_dim, cells * space.vocab_size
            else:
                self.in_sizes[name] = self.out_sizes[name] = cells
        self.in_features = sum(self.in_sizes.values())
        self.out_features = sum(self.out_sizes.values())

    def encode(self, x_t: polydiff.State) -> torch.Tensor:
        """``x_t`` (every field, ``(B, *shape)``) -> features ``(B, in_features)``.

        Raises:
            ValueError: a field is missing or has another per-sample shape.
        """
        parts = []
        for name, space in self.spaces.items():
            if name not in x_t:
                raise ValueError(f"{NAME} denoiser: input lacks field {name!r}; it was built for {sorted(self.spaces)}")
            x = x_t[name]
            if tuple(x.shape[1:]) != tuple(space.shape):
                raise ValueError(f"{NAME} denoiser: field {name!r} has shape {tuple(x.shape[1:])} per row; the "
                                 f"network was built for {tuple(space.shape)}")
            if space.kind == "discrete":
                parts.append(self.embeddings[name](x.long()).flatten(1))
            else:
                parts.append(x.flatten(1).float())
        return torch.cat(parts, dim=1)

    def decode(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head output ``(B, out_features)`` -> ``{field: (B, *shape)}`` or logits ``(B, *shape, K)``."""
        pieces = y.split(list(self.out_sizes.values()), dim=1)
        out = {}
        for (name, space), piece in zip(self.spaces.items(), pieces):
            tail = (space.vocab_size,) if space.kind == "discrete" else ()
            out[name] = piece.reshape(y.shape[0], *space.shape, *tail)
        return out


class _Conditioning(nn.Module):
    """The conditioning fields, as vectors added to the time embedding.

    Args:
        cond_spaces: class labels (``Discrete`` of one id, K + 1 embeddings, K = null) and
            continuous fields (flattened, projected; zeros = null).
        width: the time embedding's width.

    Raises:
        ValueError: a discrete conditioning field of more than one id.
    """

    def __init__(self, cond_spaces: Mapping[str, polydiff.Space] | None, width: int) -> None:
        super().__init__()
        self.spaces = dict(cond_spaces or {})
        self.layers = nn.ModuleDict()
        for name, space in self.spaces.items():
            cells = math.prod(space.shape)
            if space.kind == "discrete" and cells == 1:
                self.layers[name] = nn.Embedding(space.vocab_size + 1, width)
            elif space.kind in ("continuous", "bounded"):
                self.layers[name] = nn.Linear(cells, width)
            else:
                raise ValueError(f"{NAME} denoiser: conditioning field {name!r} is {space}; it takes class labels "
                                 f"Discrete((1,), K) and continuous fields")

    def null(self, name: str, n: int, device: torch.device) -> torch.Tensor:
        """The dropped value of field ``name`` for ``n`` rows: id K for labels, zeros otherwise."""
        space = self.spaces[name]
        if space.kind == "discrete":
            return torch.full((n, *space.shape), space.vocab_size, dtype=torch.long, device=device)
        return torch.zeros((n, *space.shape), device=device)

    def forward(self, emb: torch.Tensor, cond: polydiff.State | None) -> torch.Tensor:
        """``emb`` ``(B, width)`` plus the embedding of every conditioning field (null where absent)."""
        n = emb.shape[0]
        for name, layer in self.layers.items():
            value = cond[name] if cond is not None and name in cond else self.null(name, n, emb.device)
            if isinstance(layer, nn.Embedding):
                emb = emb + layer(value.reshape(n).long())
            else:
                emb = emb + layer(value.reshape(n, -1).float())
        return emb


class TabularMLP(nn.Module):
    """TabDDPM's denoising MLP (Kotelnikov et al. 2023, Sec. 3; App. A: ``MLPDiffusion``).

    ``h = Linear(x) + time(t) + sum of the label embeddings``, then for each width in
    ``hidden`` a block Linear -> ReLU -> Dropout, then a linear head of every field's raw
    output (see the module docstring for the per-field layout).

    Args:
        spaces: the diffused fields; a tabular row is ``{"num": (n_num,), "c_<col>": (1,), ...}``,
            and any mix of continuous, bounded and discrete fields of any shape works
            (the core's ``toy-mixed``: ``{"x": (2,), "label": (1,)}``).
        cond_spaces: conditioning fields (see ``_Conditioning``).
        hidden: widths of the MLP blocks.
        time_dim: width of the time embedding and of the projected input (TabDDPM: 128).
        embed_dim: features per discrete id.
        dropout: dropout after each ReLU.

    ``forward(x_t, t, cond=None)``: ``x_t`` every diffused field ``(B, *shape)`` (discrete ids
    in ``[0, K]``), ``t`` ``(B,)`` in [0, 1] -> ``{field: (B, *shape)}``, logits
    ``(B, *shape, K)`` for discrete fields.
    """

    def __init__(self, spaces: Mapping[str, polydiff.Space], cond_spaces: Mapping[str, polydiff.Space] | None = None,
                 *, hidden: Sequence[int] = DEFAULT_HIDDEN, time_dim: int = 128, embed_dim: int = 16,
                 dropout: float = 0.0) -> None:
        super().__init__()
        widths = _check_sizes(hidden, time_dim, embed_dim)
        self.codec = _FieldCodec(spaces, embed_dim)
        self.time = nn.Sequential(polydiff.SinusoidalEmbedding(time_dim), nn.Linear(time_dim, time_dim), nn.SiLU(),
                                  nn.Linear(time_dim, time_dim))
        self.conditioning = _Conditioning(cond_spaces, time_dim)
        self.proj = nn.Linear(self.codec.in_features, time_dim)
        blocks: list[nn.Module] = []
        for width_in, width_out in zip([time_dim, *widths[:-1]], widths):
            blocks += [nn.Linear(width_in, width_out), nn.ReLU(), nn.Dropout(dropout)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(widths[-1], self.codec.out_features)
        self.parameter_count = _report_size(self)

    def forward(self, x_t: polydiff.State, t: torch.Tensor, cond: polydiff.State | None = None
                ) -> dict[str, torch.Tensor]:
        """Raw output of every diffused field (see the class docstring)."""
        h = self.proj(self.codec.encode(x_t))
        emb = self.conditioning(self.time(t.reshape(-1).to(h.device)), cond)
        return self.codec.decode(self.head(self.blocks(h + emb)))


def denoiser_specs() -> Iterator[polydiff.DenoiserSpec]:
    """The ``"tabular_mlp"`` spec: TabDDPM's MLP over mixed continuous and discrete fields."""
    yield polydiff.DenoiserSpec(name=NAME, summary="TabDDPM's MLP (Kotelnikov et al. 2023) over numeric vectors "
                                "and embedded categories, sinusoidal time, label embeddings for guidance",
                                factory=TabularMLP, spaces=SPACE_KINDS, conditional=True, kit_options=KIT_OPTIONS)
