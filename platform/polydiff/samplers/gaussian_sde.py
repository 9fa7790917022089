"""Stochastic samplers of the Gaussian family: reverse-time SDE (Song et al. 2021).

For x_t = alpha x0 + sigma eps the forward SDE is dx = f(t) x dt + g(t) dw with
f = alpha'/alpha and g^2 = (sigma^2)' - 2 f sigma^2 = -sigma^2 lambda'(t) (lambda the
log-SNR). The reverse SDE is dx = [f x - g^2 score] dt + g dw_bar with
score = -eps_hat / sigma (Song et al. 2021, eq. 6). The last step to t = 0 returns x0_hat
(the "denoising" step of Song et al.'s samplers).

Notation (per field): a_t, s_t = alpha(t), sigma(t); dt = t - s > 0; z ~ N(0, I).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from polydiff.samplers.common import (SampleOutput, call_model, check_grid, denoised, eps_of, grid_values,
                                      require_families)
from polydiff.spaces import State

GAUSSIAN = frozenset({"gaussian"})


def _start(name: str, processes: Mapping[str, Any], grid: torch.Tensor) -> list[float]:
    check_grid(grid, name)
    require_families(processes, GAUSSIAN, name)
    return grid.tolist()


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _drift_diffusion(process: Any, times: list[float]) -> list[tuple[float, float, float, float]]:
    """``(f, g^2, alpha, sigma)`` of the forward SDE of ``process`` at each of ``times`` (float64)."""
    v = process.schedule(torch.tensor(times, dtype=torch.float64))
    f, g2 = v.d_alpha / v.alpha, -(v.sigma**2) * v.d_log_snr
    return list(zip(f.tolist(), g2.tolist(), v.alpha.tolist(), v.sigma.tolist()))


def _em_step(x: torch.Tensor, pred: Any, coefficients: tuple[float, float, float, float], dt: float,
             generator: torch.Generator | None) -> torch.Tensor:
    f, g2, a_t, s_t = coefficients
    score = -eps_of(pred, x, a_t, s_t) / s_t
    # x_s = x_t - [f x - g^2 score] dt + g sqrt(dt) z
    return x - (f * x - g2 * score) * dt + math.sqrt(g2 * dt) * _randn_like(x, generator)


def sample_euler_maruyama(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor,
                          *, generator: torch.Generator | None = None,
                          callback: Callable[..., None] | None = None) -> SampleOutput:
    """Euler-Maruyama on the reverse-time SDE (Song et al. 2021, eq. 6); NFE = N.

    A first-order weak scheme: it needs many steps (a log-SNR grid keeps g^2 dt balanced).
    """
    times = _start("euler_maruyama", processes, grid)
    sde = {f: _drift_diffusion(p, times[:-1]) for f, p in processes.items()}
    x = dict(x)
    for i in range(len(times) - 1):
        t, s = times[i], times[i + 1]
        pred = call_model(model, x, t)
        if s == 0:
            x = denoised(pred)
        else:
            x = {f: _em_step(x[f], pred[f], sde[f][i], t - s, generator) for f in processes}
        if callback is not None:
            callback(i, t, x, pred)
    return SampleOutput(state=x, nfe=len(times) - 1, info={"grid": grid})


def _reverse_diffusion(x: torch.Tensor, pred: Any, ts: tuple[float, float], ss: tuple[float, float],
                       generator: torch.Generator | None) -> torch.Tensor:
    """Reverse-diffusion predictor (Song et al. 2021, eq. 46) for the discretised forward step
    x_t = a_ts x_s + G z with a_ts = a_t / a_s, G^2 = s_t^2 - a_ts^2 s_s^2."""
    (a_t, s_t), (a_s, s_s) = ts, ss
    a_ts = a_t / a_s
    g2 = max(s_t**2 - a_ts**2 * s_s**2, 0.0)
    score = -eps_of(pred, x, a_t, s_t) / s_t
    return x - (a_ts - 1) * x + g2 * score + math.sqrt(g2) * _randn_like(x, generator)


def _langevin(x: torch.Tensor, pred: Any, ts: tuple[float, float], snr: float, scale: float,
              generator: torch.Generator | None) -> torch.Tensor:
    """One Langevin corrector step (Song et al. 2021, Algorithm 5), step size from the target snr."""
    a_t, s_t = ts
    score = -eps_of(pred, x, a_t, s_t) / s_t
    z = _randn_like(x, generator)
    dims = tuple(range(1, x.ndim))
    z_norm, g_norm = z.norm(dim=dims).mean(), score.norm(dim=dims).mean()
    step = 2 * scale * (snr * z_norm / g_norm) ** 2
    return x + step * score + (2 * step).sqrt() * z


def _corrector(model: Callable[..., Any], processes: Mapping[str, Any], x: State, t: float,
               at: Mapping[str, tuple[float, float]], as_: Mapping[str, tuple[float, float]], snr: float,
               generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    pred = call_model(model, x, t)
    # Song et al. scale the step by alpha_i = 1 - beta_i for VP; a_ts^2 is its continuous form
    return {f: _langevin(x[f], pred[f], at[f], snr, (at[f][0] / as_[f][0]) ** 2, generator) for f in processes}


def sample_pc(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
              generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
              snr: float = 0.1, corrector_steps: int = 1) -> SampleOutput:
    """Predictor-corrector sampling (Song et al. 2021, Algorithm 1 with Algorithms 2-5).

    At each grid time: ``corrector_steps`` Langevin corrections targeting p_t, then the
    reverse-diffusion predictor to the next time (x0_hat on the last step to t = 0).
    NFE = N (1 + corrector_steps).
    """
    times = _start("pc", processes, grid)
    vals = grid_values(processes, times)
    x, nfe = dict(x), 0
    for i in range(len(times) - 1):
        t, s = times[i], times[i + 1]
        at, as_ = {f: v[i] for f, v in vals.items()}, {f: v[i + 1] for f, v in vals.items()}
        for _ in range(corrector_steps):
            x, nfe = _corrector(model, processes, x, t, at, as_, snr, generator), nfe + 1
        pred, nfe = call_model(model, x, t), nfe + 1
        if s == 0:
            x = denoised(pred)
        else:
            x = {f: _reverse_diffusion(x[f], pred[f], at[f], as_[f], generator) for f in processes}
        if callback is not None:
            callback(i, t, x, pred)
    return SampleOutput(state=x, nfe=nfe, info={"grid": grid})
