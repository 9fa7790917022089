"""Records and helpers shared by every sampler."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from polydiff.spaces import State, batch_size


@dataclass
class SampleOutput:
    """What a sampler returns.

    Attributes:
        state: the final samples, field -> ``(B, *field_shape)``.
        nfe: network evaluations actually spent (a batched call counts once).
        info: sampler-specific extras (e.g. ``{"grid": ...}``).
    """

    state: dict[str, torch.Tensor]
    nfe: int
    info: dict[str, Any] = field(default_factory=dict)


def time_vector(t: torch.Tensor | float, x: State) -> torch.Tensor:
    """Broadcast a scalar time to shape ``(B,)`` on the device of ``x`` (one fill kernel)."""
    ref = next(iter(x.values()))
    dtype = ref.dtype if torch.is_floating_point(ref) else torch.float32
    return torch.full((batch_size(x),), float(t), dtype=dtype, device=ref.device)


def check_grid(grid: torch.Tensor, sampler: str) -> None:
    """Raise ValueError unless ``grid`` is 1-D, strictly decreasing and ends at 0."""
    if grid.ndim != 1 or grid.numel() < 2:
        raise ValueError(f"sampler {sampler!r}: grid must be 1-D with at least 2 times, got shape {tuple(grid.shape)}")
    if not bool((grid[1:] < grid[:-1]).all()):
        raise ValueError(f"sampler {sampler!r}: grid must be strictly decreasing, got {grid.tolist()}")
    if float(grid[-1]) != 0.0:
        raise ValueError(f"sampler {sampler!r}: grid must end at t = 0 (data), got {float(grid[-1])}")


def require_families(processes: Mapping[str, Any], families: frozenset[str] | set[str], sampler: str) -> None:
    """Raise IncompatibleSpaceError naming the sampler, the field and its process family."""
    from polydiff.errors import IncompatibleSpaceError

    for name, proc in processes.items():
        if proc.family not in families:
            raise IncompatibleSpaceError(
                f"sampler {sampler!r} supports families {sorted(families)}; field {name!r} uses "
                f"{proc.name!r} (family {proc.family!r}). Use 'ancestral', which every family supports.")


def first_gaussian(processes: Mapping[str, Any]) -> Any | None:
    """The first process of the Gaussian family in ``processes`` (None when there is none)."""
    for proc in processes.values():
        if proc.family == "gaussian":
            return proc
    return None


def alpha_sigma(processes: Mapping[str, Any], t: float) -> dict[str, tuple[float, float]]:
    """Per-field ``(alpha(t), sigma(t))`` at a scalar time, as floats computed in float64."""
    tt = torch.tensor(float(t), dtype=torch.float64)
    out = {}
    for name, proc in processes.items():
        v = proc.schedule(tt)
        out[name] = (float(v.alpha), float(v.sigma))
    return out


def grid_values(processes: Mapping[str, Any], times: Sequence[float] | torch.Tensor
                ) -> dict[str, list[tuple[float, float]]]:
    """Per field, ``(alpha, sigma)`` at every grid time: one float64 schedule call per field.

    Samplers call this once before their loop, so each step only reads Python floats.

    Args:
        processes: field -> Gaussian-family Corruption (with a ``schedule``).
        times: the grid, ``N + 1`` times.

    Returns:
        field -> list of ``N + 1`` pairs ``(alpha(t_i), sigma(t_i))``.
    """
    t = torch.as_tensor(times, dtype=torch.float64)
    out = {}
    for name, proc in processes.items():
        v = proc.schedule(t)
        out[name] = list(zip(v.alpha.tolist(), v.sigma.tolist()))
    return out


def combine(*terms: tuple[float, torch.Tensor]) -> torch.Tensor:
    """The linear combination ``sum_k c_k v_k`` of tensors with Python-float coefficients ``c_k``.

    Samplers fold their update into such a combination (coefficients computed in float64
    once per step), which costs one multiply and one fused multiply-add per further term.
    """
    (c0, v0), *rest = terms
    out = v0.mul(c0)
    for c, v in rest:
        out.add_(v, alpha=c)
    return out


def eps_of(prediction: Any, x: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """The prediction's eps_hat, or ``(x - alpha x0_hat) / sigma`` when it carries none."""
    if prediction.eps is not None:
        return prediction.eps
    return (x - alpha * prediction.x0) / sigma


def call_model(model: Any, x: State, t: float) -> dict[str, Any]:
    """Evaluate ``model(x, t)`` with ``t`` broadcast to the batch, shape ``(B,)``."""
    return model(x, time_vector(t, x))


def denoised(predictions: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The State of x0_hat in ``predictions`` (the final step to t = 0)."""
    return {name: pred.x0 for name, pred in predictions.items()}
