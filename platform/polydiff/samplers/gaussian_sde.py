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

from polydiff.samplers.common import (SampleOutput, alpha_sigma, call_model, check_grid, denoised, eps_of,
                                      require_families)
from polydiff.spaces import State

GAUSSIAN = frozenset({"gaussian"})


def _start(name: str, processes: Mapping[str, Any], grid: torch.Tensor) -> list[float]:
    check_grid(grid, name)
    require_families(processes, GAUSSIAN, name)
    return [float(t) for t in grid]


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _drift_diffusion(process: Any, t: float) -> tuple[float, float, float]:
    """(f(t), g(t)^2, sigma(t)) of the forward SDE of ``process`` at time t."""
    v = process.schedule(torch.tensor(t, dtype=torch.float64))
    f = float(v.d_alpha / v.alpha)
    g2 = float(-(v.sigma**2) * v.d_log_snr)
    return f, g2, float(v.sigma)


def _em_step(x: torch.Tensor, pred: Any, process: Any, t: float, dt: float,
             generator: torch.Generator | None) -> torch.Tensor:
    f, g2, s_t = _drift_diffusion(process, t)
    a_t = float(process.schedule(torch.tensor(t, dtype=torch.float64)).alpha)
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
    x = dict(x)
    for i in range(len(times) - 1):
        t, s = times[i], times[i + 1]
        pred = call_model(model, x, t)
        if s == 0:
            x = denoised(pred)
        else:
            x = {f: _em_step(x[f], pred[f], p, t, t - s, generator) for f, p in processes.items()}
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


def _corrector(model: Callable[..., Any], processes: Mapping[str, Any], x: State, t: float, s: float,
               snr: float, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    at, as_ = alpha_sigma(processes, t), alpha_sigma(processes, s)
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
    x, nfe = dict(x), 0
    for i in range(len(times) - 1):
        t, s = times[i], times[i + 1]
        for _ in range(corrector_steps):
            x, nfe = _corrector(model, processes, x, t, s, snr, generator), nfe + 1
        pred, nfe = call_model(model, x, t), nfe + 1
        if s == 0:
            x = denoised(pred)
        else:
            at, as_ = alpha_sigma(processes, t), alpha_sigma(processes, s)
            x = {f: _reverse_diffusion(x[f], pred[f], at[f], as_[f], generator) for f in processes}
        if callback is not None:
            callback(i, t, x, pred)
    return SampleOutput(state=x, nfe=nfe, info={"grid": grid})
