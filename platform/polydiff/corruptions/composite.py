"""One corruption process per field, one shared time: the product process.

A State with several diffused fields (TabDDPM's numbers and categories, Kotelnikova et
al. 2023; a 3-D molecule's positions and atom types, Hoogeboom et al. 2022) is corrupted
field by field with independent noise at a single time t, so the joint forward process is
the product ``q(x_t | x0) = prod_f q_f(x_t^f | x0^f)`` and its negative ELBO is the sum of
the fields' terms. The training loss is therefore the sum of the fields' per-sample losses
(TabDDPM eq. 5: Gaussian MSE plus multinomial KL terms), and ancestral sampling steps every
field from t to s with the prediction of the one network call at (x_t, t).

The shared time is drawn by the first field's process (fields in declaration order); put
the field whose training-time distribution matters most first. Field processes that need
a paired source sample (bridges) receive it through ``sources``.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from polydiff.corruptions.base import Corrupted, Corruption, Prediction
from polydiff.spaces import State


def _pinned(process: Corruption, field: str, sources: State | None) -> dict[str, torch.Tensor]:
    """``{"source": x1}`` for a bridge field, ``{}`` otherwise (ValueError when x1 is missing)."""
    if process.family != "bridge":
        return {}
    if sources is None or field not in sources:
        raise ValueError(f"bridge field {field!r} ({process.name!r}) needs its paired source sample x1; "
                         f"the modality must declare pairs = {{{field!r}: '<conditioning field>'}}")
    return {"source": sources[field]}


def _variance(process: Corruption, variance: str | None) -> dict[str, str]:
    """``{"variance": variance}`` for a Gaussian field when a variance is chosen, ``{}`` otherwise."""
    return {"variance": variance} if variance is not None and process.family == "gaussian" else {}


class CompositeCorruption:
    """The product of per-field processes at one shared time.

    Args:
        processes: field -> Corruption (each bound to that field's space), at least one.

    Attributes:
        family: ``"composite"``.
        processes: the per-field processes, in field order.
    """

    family = "composite"

    def __init__(self, processes: Mapping[str, Corruption]) -> None:
        if not processes:
            raise ValueError("a composite process needs at least one field process")
        self.processes = dict(processes)

    @property
    def t_start(self) -> float:
        """Sampling starts at the latest start time of any field."""
        return max(p.t_start for p in self.processes.values())

    def sample_t(self, n: int, *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """The shared training times ``(n,)``, drawn by the first field's process."""
        return next(iter(self.processes.values())).sample_t(n, generator=generator, device=device)

    def corrupt(self, x0: State, t: torch.Tensor, *, generator: torch.Generator | None = None,
                sources: State | None = None) -> dict[str, Corrupted]:
        """Each field's ``corrupt(x0[f], t)`` with independent noise; ``t`` has shape ``(B,)``."""
        return {f: p.corrupt(x0[f], t, generator=generator, **_pinned(p, f, sources))
                for f, p in self.processes.items()}

    def loss(self, raw: State, x0: State, corrupted: Mapping[str, Corrupted]) -> dict[str, torch.Tensor]:
        """Per-field per-sample losses ``{field: (B,)}``; their sum is the composite loss."""
        return {f: p.loss(raw[f], x0[f], corrupted[f]) for f, p in self.processes.items()}

    def predict(self, raw: State, x_t: State, t: torch.Tensor) -> dict[str, Prediction]:
        """Each field's ``predict`` of its raw output."""
        return {f: p.predict(raw[f], x_t[f], t) for f, p in self.processes.items()}

    def prior(self, n: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None,
              sources: State | None = None) -> dict[str, torch.Tensor]:
        """A State of ``n`` prior samples, one per field (bridges start at their sources)."""
        return {f: p.prior(n, generator=generator, device=device, **_pinned(p, f, sources))
                for f, p in self.processes.items()}

    def reverse_step(self, x_t: State, t: torch.Tensor, s: torch.Tensor, predictions: Mapping[str, Prediction], *,
                     generator: torch.Generator | None = None, sources: State | None = None,
                     gaussian_variance: str | None = None) -> dict[str, torch.Tensor]:
        """One ancestral step of every field from ``t`` to ``s`` (both ``(B,)``).

        ``gaussian_variance`` (``"small"`` / ``"large"``), when given, is passed as ``variance``
        to the Gaussian fields' steps (``GaussianCorruption.reverse_step``).
        """
        return {f: p.reverse_step(x_t[f], t, s, predictions[f], generator=generator, **_pinned(p, f, sources),
                                  **_variance(p, gaussian_variance))
                for f, p in self.processes.items()}

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={p.name!r}" for f, p in self.processes.items())
        return f"CompositeCorruption({inner})"
