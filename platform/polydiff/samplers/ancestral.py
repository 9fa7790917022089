"""The generic ancestral sampler: each process's own reverse step in a loop.

Works for every family because every ``Corruption`` implements
``reverse_step(x_t, t, s, prediction)``, a draw from q(x_s | x_t, x0 = prediction). For the
Gaussian family this is DDPM ancestral sampling (Ho et al. 2020, Algorithm 2, in the
continuous-time form of Kingma et al. 2021, eq. 33).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from polydiff.corruptions.composite import CompositeCorruption
from polydiff.corruptions.gaussian import REVERSE_VARIANCES
from polydiff.samplers.common import SampleOutput, call_model, check_grid, require_families, time_vector
from polydiff.spaces import State
from polydiff.specs import FAMILIES

ANCESTRAL_FAMILIES = FAMILIES - {"autoregressive"}


def sample_ancestral(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                     generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                     source: State | None = None, gaussian_variance: str = "small") -> SampleOutput:
    """Ancestral sampling: ``x_s ~ q(x_s | x_t, x0_hat(x_t, t))`` for each grid interval.

    Args:
        model: ``PredictFn``, ``model(x, t) -> {field: Prediction}``.
        processes: field -> Corruption of any family.
        x: prior State at ``grid[0]``, field -> ``(B, *field_shape)``.
        grid: descending times, shape ``(N + 1,)``, ending at 0.
        generator: source of the reverse-step noise.
        callback: ``callback(i, t, x, predictions)`` after step ``i``.
        source: field -> the paired sample x1 that pins a bridge field, ``(B, *field_shape)``;
            passed to the ``reverse_step`` of bridge processes only.
        gaussian_variance: the Gaussian fields' reverse variance (Ho et al. 2020, section 3.2):
            ``"small"``, the posterior's (DDPM's beta-tilde), or ``"large"``, the forward
            step's (DDPM's beta; TabDDPM samples with it). Other families ignore it.

    Returns:
        ``SampleOutput`` with ``nfe == N`` (one call per interval).

    Notation:
        t, s: grid[i], grid[i + 1] (s < t); pred: {field: Prediction} at (x_t, t).
    """
    check_grid(grid, "ancestral")
    if gaussian_variance not in REVERSE_VARIANCES:
        raise ValueError(f"ancestral: gaussian_variance {gaussian_variance!r} is not one of {list(REVERSE_VARIANCES)}")
    require_families(processes, ANCESTRAL_FAMILIES, "ancestral")
    product = CompositeCorruption(processes)
    x = dict(x)
    for i in range(len(grid) - 1):
        t, s = float(grid[i]), float(grid[i + 1])
        pred = call_model(model, x, t)
        s_vec = time_vector(s, x)
        t_vec = time_vector(t, x)
        x = product.reverse_step(x, t_vec, s_vec, pred, generator=generator, sources=source,
                                 gaussian_variance=gaussian_variance)
        if callback is not None:
            callback(i, t, x, pred)
    return SampleOutput(state=x, nfe=len(grid) - 1, info={"grid": grid})

