"""Samplers of the reflected family (Lou & Ermon 2023): the reverse reflected SDE and the
probability-flow ODE, every step followed by reflection at the walls.

Both read the score of each field through ``process.unit_score`` (unit-box coordinates,
``polydiff.corruptions.reflected``) and move each field in unit coordinates, folding the
result back into [0, 1] with ``reflect``; no value is ever clipped. The grid runs from
t = 1 (sigma_max, uniform prior) to t = 0, where the noise level is sigma_min > 0: the
last step ends on the t = 0 marginal (the data blurred by sigma_min) unless ``denoise``
asks for the Tweedie estimate x0_hat at the last grid time instead. A grid uniform in t
is geometric in sigma (the default grid ``"uniform"``).

Notation (per field, unit-box coordinates):
    u               the state (x - low) / (high - low)
    t, s            grid[i], grid[i + 1] (s < t)
    sig_t, sig_s    sigma(t), sigma(s) of the field's process, in box widths
    score           d/du log p_t(u), from the prediction
    d               du/dsigma = -sigma score, the probability-flow ODE in the sigma variable
    z               N(0, I) drawn from ``generator``
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from polydiff.corruptions.reflected import reflect
from polydiff.samplers.common import (SampleOutput, call_model, check_grid, denoised, require_families,
                                      time_vector)
from polydiff.spaces import State

REFLECTED = frozenset({"reflected"})
ODE_METHODS = ("heun", "euler")


def _start(name: str, processes: Mapping[str, Any], grid: torch.Tensor) -> tuple[list[float], dict[str, list[float]]]:
    """Validate, then the grid as floats and each field's sigma at every grid time (float64, once)."""
    check_grid(grid, name)
    require_families(processes, REFLECTED, name)
    times = grid.tolist()
    t64 = torch.tensor(times, dtype=torch.float64)
    return times, {f: p.sigma(t64).tolist() for f, p in processes.items()}


def _randn(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype).double()


def _moved(process: Any, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``x`` moved by ``delta`` in unit coordinates and reflected back into the box, in the dtype of x."""
    return process.from_unit(reflect(process.to_unit(x) + delta), x.dtype)


# ---------------------------------------------------------------- reverse SDE

def _langevin(process: Any, x: torch.Tensor, pred: Any, t_vec: torch.Tensor, sig_t: float, snr: float,
              generator: torch.Generator | None) -> torch.Tensor:
    """One reflected Langevin corrector step targeting p_t (Song et al. 2021, Algorithm 5 for
    the VE SDE, followed by reflection): ``u <- reflect(u + eps score + sqrt(2 eps) z)``.

    eps = 2 (snr |z| / |score|)^2 with batch-mean norms, capped at sig_t^2 (our addition: it
    is inactive at useful snr, where eps ~ 2 snr^2 sig_t^2, and keeps eps finite where the
    score vanishes). Reflected Langevin dynamics leaves p_t invariant because p_t meets the
    Neumann condition at the walls.
    """
    score = process.unit_score(pred, x, t_vec)
    z = _randn(x, generator)
    dims = tuple(range(1, x.ndim))
    z_norm, g_norm = float(z.norm(dim=dims).mean()), float(score.norm(dim=dims).mean())
    eps = sig_t**2 if g_norm == 0 else min(2 * (snr * z_norm / g_norm) ** 2, sig_t**2)
    return _moved(process, x, eps * score + math.sqrt(2 * eps) * z)


def _correct(model: Callable[..., Any], processes: Mapping[str, Any], x: State, t: float,
             sig: Mapping[str, float], snr: float, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    pred, t_vec = call_model(model, x, t), time_vector(t, x)
    return {f: _langevin(p, x[f], pred[f], t_vec, sig[f], snr, generator) for f, p in processes.items()}


def _reverse(processes: Mapping[str, Any], x: State, pred: Mapping[str, Any], t: float, s: float,
             generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    t_vec, s_vec = time_vector(t, x), time_vector(s, x)
    return {f: p.reverse_step(x[f], t_vec, s_vec, pred[f], generator=generator) for f, p in processes.items()}


def sample_reflected_sde(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                         generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                         corrector_steps: int = 0, snr: float = 0.16, denoise: bool = False) -> SampleOutput:
    """Reflected Euler-Maruyama on the reverse reflected SDE, optionally with a reflected
    Langevin corrector (Lou & Ermon 2023, Section 3 and their predictor-corrector sampler;
    Song et al. 2021, Algorithm 1 with the VE predictor and corrector, reflected).

    Each interval: ``corrector_steps`` Langevin corrections at t, then the predictor
    ``u_s = reflect(u_t + (sig_t^2 - sig_s^2) score + sqrt(sig_t^2 - sig_s^2) z)``
    (``ReflectedCorruption.reverse_step``: Euler-Maruyama with g^2 dt integrated exactly).

    Args:
        model: ``PredictFn``, ``model(x, t) -> {field: Prediction}``.
        processes: field -> reflected-family Corruption.
        x: prior State at ``grid[0]`` (uniform on each box), field -> ``(B, *field_shape)``.
        grid: descending times, shape ``(N + 1,)``, ending at 0.
        generator: source of all noise.
        callback: ``callback(i, t, x, predictions)`` after step ``i``.
        corrector_steps: Langevin steps per grid time (0: predictor only).
        snr: target signal-to-noise ratio of the corrector (0.16: Song et al.'s VE value).
        denoise: return x0_hat of the prediction at the last grid time instead of the last step.

    Returns:
        ``SampleOutput``, every value inside its box; ``nfe = N (1 + corrector_steps)``.
    """
    name = "reflected_sde"
    times, sigmas = _start(name, processes, grid)
    x, nfe = dict(x), 0
    for i in range(len(times) - 1):
        t, s = times[i], times[i + 1]
        for _ in range(corrector_steps):
            x, nfe = _correct(model, processes, x, t, {f: v[i] for f, v in sigmas.items()}, snr, generator), nfe + 1
        pred, nfe = call_model(model, x, t), nfe + 1
        x = denoised(pred) if denoise and s == 0 else _reverse(processes, x, pred, t, s, generator)
        if callback is not None:
            callback(i, t, x, pred)
    return SampleOutput(state=x, nfe=nfe, info={"grid": grid})


# ---------------------------------------------------------------- probability-flow ODE

def _slopes(processes: Mapping[str, Any], x: State, pred: Mapping[str, Any], t: float,
            sigmas: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """d = du/dsigma = -sigma score per field (float64)."""
    t_vec = time_vector(t, x)
    return {f: -sigmas[f] * p.unit_score(pred[f], x[f], t_vec) for f, p in processes.items()}


def _ode_step(model: Callable[..., Any], processes: Mapping[str, Any], x: State, pred: Mapping[str, Any],
              times: tuple[float, float], sig: tuple[Mapping[str, float], Mapping[str, float]],
              heun: bool) -> dict[str, torch.Tensor]:
    """One Euler or Heun step in sigma (Karras et al. 2022, Algorithm 1), each stage reflected."""
    (t, s), (sig_t, sig_s) = times, sig
    d_t = _slopes(processes, x, pred, t, sig_t)
    # Euler: u_s = reflect(u_t + (sig_s - sig_t) d_t)
    euler = {f: _moved(p, x[f], (sig_s[f] - sig_t[f]) * d_t[f]) for f, p in processes.items()}
    if not heun:
        return euler
    d_s = _slopes(processes, euler, call_model(model, euler, s), s, sig_s)
    # trapezoid: u_s = reflect(u_t + (sig_s - sig_t) (d_t + d_s) / 2)
    return {f: _moved(p, x[f], 0.5 * (sig_s[f] - sig_t[f]) * (d_t[f] + d_s[f])) for f, p in processes.items()}


def sample_reflected_ode(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                         generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                         method: str = "heun", denoise: bool = False) -> SampleOutput:
    """The probability-flow ODE of the reflected SDE, ``du = -1/2 g^2 score dt``, by Heun or
    Euler steps in sigma, each stage followed by reflection (Lou & Ermon 2023, Section
    "Probability flow ODE"; Song et al. 2021, eq. 13; steps of Karras et al. 2022, Alg. 1).

    With g^2 = d sigma^2 / dt the ODE is ``du/dsigma = -sigma score``, which a step in sigma
    integrates exactly for a single point mass away from the walls (straight lines in
    sigma). Why reflect: p_t satisfies the Neumann condition d/du p_t = 0 at the walls
    (the kernel does, see ``reflected_kernel_score``), so the exact velocity has no normal
    component there and exact trajectories never leave the box; the ODE needs no boundary
    term. A finite step, or a learned score that is not exactly zero at the walls, can
    overshoot a wall; folding the step back with the same ``reflect`` as the reflected
    Euler-Maruyama steps of Lou & Ermon's SDE sampler is the identity on steps that stay
    inside, keeps every iterate in the box, and its correction vanishes
    as the step shrinks because the normal velocity does. (Lou & Ermon's released code
    instead damps the drift with a mollifier near the walls; reflection leaves the
    interior dynamics untouched.)

    Args:
        model: ``PredictFn``, ``model(x, t) -> {field: Prediction}``.
        processes: field -> reflected-family Corruption.
        x: prior State at ``grid[0]``, field -> ``(B, *field_shape)``.
        grid: descending times, shape ``(N + 1,)``, ending at 0.
        generator: unused (the ODE is deterministic); accepted for the sampler protocol.
        callback: ``callback(i, t, x, predictions)`` after step ``i``.
        method: ``"heun"`` (2 evaluations per step) or ``"euler"`` (1).
        denoise: return x0_hat of the prediction at the last grid time instead of the last step.

    Returns:
        ``SampleOutput``, every value inside its box; ``nfe`` = 2N for Heun (2N - 1 with
        ``denoise``), N for Euler.

    Raises:
        ValueError: for an unknown ``method``.
    """
    if method not in ODE_METHODS:
        raise ValueError(f"sampler 'reflected_ode': method {method!r} is not one of {list(ODE_METHODS)}")
    times, sigmas = _start("reflected_ode", processes, grid)
    x, nfe = dict(x), 0
    for i in range(len(times) - 1):
        t, s = times[i], times[i + 1]
        pred, nfe = call_model(model, x, t), nfe + 1
        if denoise and s == 0:
            x = denoised(pred)
        else:
            sig = ({f: v[i] for f, v in sigmas.items()}, {f: v[i + 1] for f, v in sigmas.items()})
            x = _ode_step(model, processes, x, pred, (t, s), sig, method == "heun")
            nfe += 1 if method == "heun" else 0
        if callback is not None:
            callback(i, t, x, pred)
    return SampleOutput(state=x, nfe=nfe, info={"grid": grid})
