"""The corruption-process interface shared by every family.

A process is bound to one field's space. It provides the training distribution of t,
``corrupt(x0, t)``, ``predict(raw, x_t, t)`` (network output -> Prediction), the per-sample
training ``loss``, the prior, and the ancestral reverse step ``q(x_s | x_t, x0_hat)``, so
that every process can be sampled by ``polydiff.samplers.ancestral``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from polydiff.errors import IncompatibleSpaceError
from polydiff.spaces import Space


def append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton axes to ``x`` until it has ``ndim`` axes (k-diffusion)."""
    missing = ndim - x.ndim
    if missing < 0:
        raise ValueError(f"input has {x.ndim} dims but target ndim is {ndim}")
    return x[(...,) + (None,) * missing]


@dataclass(frozen=True)
class Corrupted:
    """A training example after the forward process.

    Attributes:
        t: times, shape ``(B,)``.
        x_t: the corrupted field, shape ``(B, *field_shape)``.
        noise: the Gaussian noise eps used (Gaussian family) or None.
    """

    t: torch.Tensor
    x_t: torch.Tensor
    noise: torch.Tensor | None = None


@dataclass(frozen=True)
class Prediction:
    """What a denoiser's raw output means for one field.

    Attributes:
        raw: the network output as returned, shape ``(B, *field_shape[, V])``.
        x0: E[x0 | x_t] for continuous fields; for discrete fields the
            probabilities p(x0 | x_t), shape ``(B, *field_shape, V)``.
        eps: the implied noise estimate (Gaussian family) or None.
        score: the estimate of grad_x log p_t(x_t), shape ``(B, *field_shape)``, for
            processes whose samplers integrate the score (reflected), else None.
    """

    raw: torch.Tensor
    x0: torch.Tensor
    eps: torch.Tensor | None = None
    score: torch.Tensor | None = None


class Corruption(ABC):
    """A forward process bound to one field's space.

    Subclasses set ``family`` (one of ``polydiff.specs.FAMILIES``) and ``space_kinds``.
    Processes are stateless between calls: every method is a pure function of its inputs
    and the fixed configuration given to ``__init__``.

    Bridges (family ``"bridge"``) are pinned at a paired sample x1: their ``corrupt`` and
    ``prior`` take a keyword ``source`` (the x1 batch, shape ``(B, *field_shape)``), which
    the experiment fills from the modality's ``pairs``; no other family receives it.

    Processes with a likelihood bound override ``nelbo`` (see there).
    """

    family: ClassVar[str] = ""
    space_kinds: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, space: Space, *, name: str = "", field: str = "") -> None:
        self.name = name or self.family
        self.field = field
        if space.kind not in self.space_kinds:
            where = f"field {field!r} " if field else ""
            raise IncompatibleSpaceError(
                f"corruption {self.name!r} (family {self.family!r}) accepts spaces "
                f"{sorted(self.space_kinds)}; {where}has space {space} of kind {space.kind!r}")
        self.space = space

    @abstractmethod
    def sample_t(self, n: int, *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """Training times, shape ``(n,)``."""

    @abstractmethod
    def corrupt(self, x0: torch.Tensor, t: torch.Tensor, *,
                generator: torch.Generator | None = None) -> Corrupted:
        """Draw x_t ~ q(x_t | x0) for times ``t`` of shape ``(B,)``."""

    @abstractmethod
    def predict(self, raw: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        """Interpret a raw network output at ``(x_t, t)``."""

    @abstractmethod
    def loss(self, raw: torch.Tensor, x0: torch.Tensor, corrupted: Corrupted) -> torch.Tensor:
        """Per-sample training loss, shape ``(B,)``; the docstring states its weighting."""

    @abstractmethod
    def prior(self, n: int, *, generator: torch.Generator | None = None,
              device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Draw ``n`` samples of the prior at the start of sampling, shape ``(n, *field_shape)``."""

    @abstractmethod
    def reverse_step(self, x_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor, prediction: Prediction, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """One ancestral step: draw x_s ~ q(x_s | x_t, x0 = prediction), with s < t of shape ``(B,)``."""

    def nelbo(self, raw: torch.Tensor, x0: torch.Tensor, corrupted: Corrupted) -> torch.Tensor:
        """Per-sample integrand of the negative ELBO in nats per dimension, shape ``(B,)``.

        Contract: for ``corrupted = corrupt(x0, t)`` with t ~ U(0, 1), ``E_t[nelbo] +
        nelbo_prior(x0)`` is the continuous-time NELBO of x0 divided by the number of
        dimensions (tokens) of the field. Processes without a bound raise
        NotImplementedError (the default).
        """
        raise NotImplementedError(f"corruption {self.name!r} (family {self.family!r}) has no likelihood bound")

    def nelbo_prior(self, x0: torch.Tensor) -> torch.Tensor:
        """KL(q(x_1 | x0) || prior) in nats per dimension, shape ``(B,)``; zero by default."""
        return torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)

    @property
    def t_start(self) -> float:
        """The time sampling starts from (usually 1)."""
        return 1.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, field={self.field!r}, space={self.space})"
