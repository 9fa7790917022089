"""Data spaces and the State mapping.

A modality declares, per field, the space its tensors live in. A ``State`` is a mapping
``field name -> tensor`` with the batch first: ``(B, *space.shape)``.

- ``Continuous(shape)``: unbounded reals (scaled images, latents, coordinates).
- ``Bounded(shape, low, high)``: a box; the natural space of the reflected process.
- ``Discrete(shape, vocab_size)``: integer tokens in ``[0, vocab_size)``; masked
  processes add one extra id (the mask) equal to ``vocab_size``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

import torch

from polydiff.errors import IncompatibleSpaceError

State: TypeAlias = Mapping[str, torch.Tensor]
"""A mapping field name -> tensor of shape ``(B, *field_shape)``."""


def _shape(shape: tuple[int, ...] | list[int] | int) -> tuple[int, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(int(s) for s in shape)
    if any(s <= 0 for s in shape):
        raise ValueError(f"space shape must have positive sizes, got {shape}")
    return shape


@dataclass(frozen=True)
class Continuous:
    """Unbounded real values of a fixed per-sample shape."""

    shape: tuple[int, ...]
    kind = "continuous"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _shape(self.shape))

    @property
    def dim(self) -> int:
        """Number of scalar dimensions per sample."""
        return math.prod(self.shape)

    def problem(self, x: torch.Tensor) -> str | None:
        """Return a description of why ``x`` is not a batch of this space, or None."""
        if not torch.is_floating_point(x):
            return f"expected a floating-point tensor, got dtype {x.dtype}"
        if tuple(x.shape[1:]) != self.shape:
            return f"expected shape (B, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}"
        if not torch.isfinite(x).all():
            return "contains NaN or infinite values"
        return None


@dataclass(frozen=True)
class Bounded(Continuous):
    """Reals inside the box ``[low, high]`` (per dimension, scalars broadcast)."""

    low: float = 0.0
    high: float = 1.0
    kind = "bounded"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.high > self.low:
            raise ValueError(f"Bounded space needs high > low, got low={self.low}, high={self.high}")

    def problem(self, x: torch.Tensor) -> str | None:
        """As ``Continuous.problem``, and every value inside ``[low, high]``."""
        base = super().problem(x)
        if base is not None:
            return base
        if x.numel() and (x.min() < self.low or x.max() > self.high):
            return (f"values outside the box [{self.low}, {self.high}]: "
                    f"min {x.min().item():.4g}, max {x.max().item():.4g}")
        return None


@dataclass(frozen=True)
class Discrete:
    """Integer tokens in ``[0, vocab_size)`` of a fixed per-sample shape."""

    shape: tuple[int, ...]
    vocab_size: int
    kind = "discrete"

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _shape(self.shape))
        if self.vocab_size < 2:
            raise ValueError(f"Discrete space needs vocab_size >= 2, got {self.vocab_size}")

    @property
    def dim(self) -> int:
        """Number of tokens per sample."""
        return math.prod(self.shape)

    def problem(self, x: torch.Tensor) -> str | None:
        """Return a description of why ``x`` is not a batch of this space, or None."""
        if x.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            return f"expected an integer tensor, got dtype {x.dtype}"
        if tuple(x.shape[1:]) != self.shape:
            return f"expected shape (B, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}"
        if x.numel() and (x.min() < 0 or x.max() >= self.vocab_size):
            return f"token ids outside [0, {self.vocab_size}): min {x.min().item()}, max {x.max().item()}"
        return None


Space: TypeAlias = Continuous | Bounded | Discrete


def validate_state(state: State, spaces: Mapping[str, Space], *, where: str = "state") -> None:
    """Check that ``state`` has exactly the declared fields, each a batch of its space.

    Raises:
        IncompatibleSpaceError: naming the field, the space and what is wrong.
    """
    missing = sorted(set(spaces) - set(state))
    extra = sorted(set(state) - set(spaces))
    if missing or extra:
        raise IncompatibleSpaceError(
            f"{where}: fields {sorted(state)} do not match the declared fields {sorted(spaces)}"
            + (f"; missing {missing}" if missing else "") + (f"; unexpected {extra}" if extra else ""))
    sizes = {name: x.shape[0] for name, x in state.items()}
    if len(set(sizes.values())) > 1:
        raise IncompatibleSpaceError(f"{where}: fields have different batch sizes {sizes}")
    for name, space in spaces.items():
        problem = space.problem(state[name])
        if problem is not None:
            raise IncompatibleSpaceError(f"{where}: field {name!r} ({space}) {problem}")


def batch_size(state: State) -> int:
    """The batch size shared by every field of ``state``."""
    return next(iter(state.values())).shape[0]
