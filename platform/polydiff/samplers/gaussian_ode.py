"""Deterministic (and DDIM-eta) samplers of the Gaussian family: one short function each.

All of them integrate the probability-flow ODE of x_t = alpha(t) x0 + sigma(t) eps using
only the data prediction x0_hat = E[x0 | x_t] of ``model(x, t)``. Each field has its own
schedule values at the shared time; the last step to t = 0 returns x0_hat (as
k-diffusion's final sigma = 0 step), so known parts replaced in x0_hat are kept exactly.

Notation (per field, at the current time t and the next time s < t):
    a_t, s_t      alpha(t), sigma(t)
    se            sigma_e = sigma / alpha, the EDM noise level (Karras et al. 2022)
    y             x / alpha, the EDM state: dy/dse = (y - x0_hat) / se
    lam           lambda = log(alpha / sigma), the half log-SNR (Lu et al. 2022)
    h             lam_s - lam_t > 0
    x0            x0_hat, the model's data prediction

Each update is multiplied out into a linear combination of tensors (``combine``) whose
coefficients are Python floats computed in float64 from the (alpha, sigma) of the whole
grid, evaluated once before the loop (``grid_values``): a step costs the model call and
two to four elementwise kernels.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from polydiff.samplers.common import (SampleOutput, alpha_sigma, call_model, check_grid, combine, denoised,
                                      first_gaussian, grid_values, require_families)
from polydiff.spaces import State

GAUSSIAN = frozenset({"gaussian"})
Pair = tuple[float, float]
History = list[tuple[float, torch.Tensor]]


def _start(name: str, processes: Mapping[str, Any], grid: torch.Tensor
           ) -> tuple[list[float], dict[str, list[Pair]]]:
    """Validate, then the grid as floats and each field's (alpha, sigma) at every grid time."""
    check_grid(grid, name)
    require_families(processes, GAUSSIAN, name)
    times = grid.tolist()
    return times, grid_values(processes, times)


def _lam(pair: Pair) -> float:
    return math.log(pair[0]) - math.log(pair[1])


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _at(values: Mapping[str, list[Pair]], i: int) -> dict[str, Pair]:
    return {f: v[i] for f, v in values.items()}


# ---------------------------------------------------------------- DDIM

def _ddim_step(x: torch.Tensor, x0: torch.Tensor, ts: Pair, ss: Pair, eta: float,
               generator: torch.Generator | None) -> torch.Tensor:
    (a_t, s_t), (a_s, s_s) = ts, ss
    if s_s == 0:
        return x0
    # DDIM eq. 16 with sigma_ts^2 = s_t^2 - (a_t/a_s)^2 s_s^2, the posterior's noise
    c = eta * s_s / s_t * math.sqrt(max(s_t**2 - (a_t / a_s) ** 2 * s_s**2, 0.0))
    c_eps = math.sqrt(max(s_s**2 - c**2, 0.0))
    # x_s = a_s x0 + c_eps eps_hat + c z with eps_hat = (x - a_t x0) / s_t
    out = combine((c_eps / s_t, x), (a_s - c_eps * a_t / s_t, x0))
    return out.add_(_randn_like(x, generator), alpha=c) if c > 0 else out


def sample_ddim(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                eta: float = 0.0) -> SampleOutput:
    """DDIM (Song, Meng & Ermon 2021, eq. 12) for any (alpha, sigma).

    ``x_s = a_s x0 + sqrt(s_s^2 - c^2) eps_hat + c z`` with
    ``c = eta (s_s / s_t) sqrt(s_t^2 - (a_t/a_s)^2 s_s^2)`` and eps_hat implied by x0_hat,
    ``(x - a_t x0) / s_t``; ``eta = 0`` is the deterministic ODE sampler (equal to Euler in
    the EDM variables), ``eta = 1`` matches DDPM's posterior variance. NFE = N (grid intervals).
    """
    times, vals = _start("ddim", processes, grid)
    x = dict(x)
    for i in range(len(times) - 1):
        pred = call_model(model, x, times[i])
        x = {f: _ddim_step(x[f], pred[f].x0, vals[f][i], vals[f][i + 1], eta, generator) for f in processes}
        if callback is not None:
            callback(i, times[i], x, pred)
    return SampleOutput(state=x, nfe=len(times) - 1, info={"grid": grid})


# ---------------------------------------------------------------- Euler / Heun (EDM)

def _euler_step(x: torch.Tensor, x0: torch.Tensor, ts: Pair, ss: Pair) -> torch.Tensor:
    """Euler in the EDM variables, ``y_s = y + (se_s - se_t) (y - x0) / se_t`` (EDM eq. 3 with
    s(t) = 1), multiplied out: ``x_s = (s_s / s_t) x + (a_s - a_t s_s / s_t) x0``."""
    (a_t, s_t), (a_s, s_s) = ts, ss
    if s_s == 0:
        return x0
    return combine((s_s / s_t, x), (a_s - a_t * s_s / s_t, x0))


def sample_euler(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                 generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                 ) -> SampleOutput:
    """Euler's method on the probability-flow ODE in the EDM variables (Karras et al. 2022, eq. 3).

    ``y = x / alpha`` and ``se = sigma / alpha``: ``dy/dse = (y - x0_hat) / se``. NFE = N.
    """
    times, vals = _start("euler", processes, grid)
    x = dict(x)
    for i in range(len(times) - 1):
        pred = call_model(model, x, times[i])
        x = {f: _euler_step(x[f], pred[f].x0, vals[f][i], vals[f][i + 1]) for f in processes}
        if callback is not None:
            callback(i, times[i], x, pred)
    return SampleOutput(state=x, nfe=len(times) - 1, info={"grid": grid})


def _heun_correct(x_hat: torch.Tensor, x_next: torch.Tensor, x0_next: torch.Tensor, th: Pair,
                  ss: Pair) -> torch.Tensor:
    """EDM Alg. 2, line 8: ``y_s = y_hat + (se_s - se_h) (d + d') / 2``. The Euler result is
    ``x_next = a_s (y_hat + (se_s - se_h) d)``, so ``x_s = (x_next + (a_s / a_h) x_hat) / 2
    + a_s (se_s - se_h) d' / 2`` with ``d' = (x_next / a_s - x0_next) / se_s``."""
    (a_h, s_h), (a_s, s_s) = th, ss
    half = 0.5 * (s_s / a_s - s_h / a_h) / (s_s / a_s)  # (se_s - se_h) / (2 se_s)
    return combine((0.5 + half, x_next), (0.5 * a_s / a_h, x_hat), (-a_s * half, x0_next))


def _churn_time(schedule: Any, t: float, gamma: float, s_tmin: float, s_tmax: float) -> float:
    """t_hat >= t with sigma_e(t_hat) = (1 + gamma) sigma_e(t) (EDM Alg. 2, lines 4-5), capped at t_max."""
    if gamma <= 0:
        return t
    v = schedule(torch.tensor(t, dtype=torch.float64))
    se = float(v.sigma / v.alpha)
    if not s_tmin <= se <= s_tmax:
        return t
    t_hat = float(schedule.t_from_log_snr(torch.tensor(-2 * math.log(se * (1 + gamma)), dtype=torch.float64)))
    return min(max(t_hat, t), max(schedule.t_max, t))


def _add_churn_noise(x: State, at: Mapping[str, Pair], ah: Mapping[str, Pair], s_noise: float,
                     generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    out = {}
    for f in at:
        (a_t, s_t), (a_h, s_h) = at[f], ah[f]
        extra = math.sqrt(max((s_h / a_h) ** 2 - (s_t / a_t) ** 2, 0.0))
        out[f] = a_h * (x[f] / a_t + extra * s_noise * _randn_like(x[f], generator))  # EDM Alg. 2, line 6
    return out


def sample_heun(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
                s_noise: float = 1.0) -> SampleOutput:
    """Heun's 2nd-order method with stochastic churn (Karras et al. 2022, Algorithm 2).

    With ``gamma = min(s_churn / N, sqrt(2) - 1)`` where ``s_tmin <= se(t) <= s_tmax``, the
    state is first moved *up* in noise to ``se_hat = (1 + gamma) se`` (time t_hat from
    ``schedule.t_from_log_snr``, capped at the schedule's ``t_max``), then an Euler step to
    s and the trapezoidal correction, skipped on the last step to t = 0.
    NFE = 2N - 1.
    """
    times, vals = _start("heun", processes, grid)
    schedule, n = first_gaussian(processes).schedule, len(times) - 1
    gamma = min(s_churn / n, math.sqrt(2) - 1)
    x, nfe = dict(x), 0
    for i in range(n):
        t, s = times[i], times[i + 1]
        t_hat, th, ss = _churn_time(schedule, t, gamma, s_tmin, s_tmax), _at(vals, i), _at(vals, i + 1)
        if t_hat > t:
            ah = alpha_sigma(processes, t_hat)
            x, th = _add_churn_noise(x, th, ah, s_noise, generator), ah
        pred, nfe = call_model(model, x, t_hat), nfe + 1
        x_next = {f: _euler_step(x[f], pred[f].x0, th[f], ss[f]) for f in processes}
        if s > 0:
            pred_next, nfe = call_model(model, x_next, s), nfe + 1
            x_next = {f: _heun_correct(x[f], x_next[f], pred_next[f].x0, th[f], ss[f]) for f in processes}
        x = x_next
        if callback is not None:
            callback(i, t, x, pred)
    return SampleOutput(state=x, nfe=nfe, info={"grid": grid})


# ---------------------------------------------------------------- DPM-Solver++ (2M, 3M)

def _dpmpp_2m_step(x: torch.Tensor, x0: torch.Tensor, prev: tuple[float, torch.Tensor] | None, ts: Pair,
                   ss: Pair) -> torch.Tensor:
    """``x_s = (s_s/s_t) x - a_s expm1(-h) D`` (Lu et al. 2022, eq. 10) with ``D = x0`` (first
    order) or, given the previous point ``(lam_p, x0_p)``, ``D = (1 + 1/2r) x0 - 1/2r x0_p``,
    ``r = (lam_t - lam_p) / h`` (DPM-Solver++(2M), Algorithm 2)."""
    lam_t = _lam(ts)
    h = _lam(ss) - lam_t
    c = -ss[0] * math.expm1(-h)
    if prev is None:
        return combine((ss[1] / ts[1], x), (c, x0))
    r = (lam_t - prev[0]) / h
    return combine((ss[1] / ts[1], x), (c * (1 + 0.5 / r), x0), (-c * 0.5 / r, prev[1]))


def _max_order(order: int, i: int, n: int, lower_order_final: bool) -> int:
    """Warm-up (order <= i + 1) and, with ``lower_order_final`` on grids of fewer than 15
    intervals, first order on the last integration step (into the smallest positive time),
    whose long lambda step makes multistep extrapolation unstable (diffusers' rule)."""
    order = min(order, i + 1)
    if lower_order_final and n < 15:
        order = min(order, n - 1 - i)
    return max(order, 1)


def sample_dpmpp_2m(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                    generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                    lower_order_final: bool = True) -> SampleOutput:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): multistep 2nd order in lambda, data prediction.

    The first step is first order, and so is the last integration step on grids of fewer
    than 15 intervals when ``lower_order_final``; the last step to t = 0 returns x0_hat.
    NFE = N.
    """
    times, vals = _start("dpmpp_2m", processes, grid)
    n = len(times) - 1
    x, prev = dict(x), {f: None for f in processes}
    for i in range(n):
        pred = call_model(model, x, times[i])
        if times[i + 1] == 0:
            x = denoised(pred)
        else:
            order = _max_order(2, i, n, lower_order_final)
            x = {f: _dpmpp_2m_step(x[f], pred[f].x0, prev[f] if order > 1 else None, vals[f][i], vals[f][i + 1])
                 for f in processes}
        prev = {f: (_lam(vals[f][i]), pred[f].x0) for f in processes}
        if callback is not None:
            callback(i, times[i], x, pred)
    return SampleOutput(state=x, nfe=len(times) - 1, info={"grid": grid})


def _dpmpp_3m_step(x: torch.Tensor, x0: torch.Tensor, hist: History, ts: Pair, ss: Pair, order: int
                   ) -> torch.Tensor:
    """DPM-Solver++(3M): third-order multistep with divided differences D1, D2 (Lu et al. 2022, App. B).

    With the two previous points ``(lam_2, m2), (lam_1, m1)``: ``D1_0 = (x0 - m1) / r0``,
    ``D1_1 = (m1 - m2) / r1``, ``D1 = D1_0 + r0 (D1_0 - D1_1) / (r0 + r1)``,
    ``D2 = (D1_0 - D1_1) / (r0 + r1)`` and ``x_s = (s_s/s_t) x - a_s phi1 x0 + c1 D1 + c2 D2``,
    ``phi1 = expm1(-h)``, ``c1 = a_s (phi1/h + 1)``, ``c2 = -a_s ((phi1 + h)/h^2 - 1/2)``.
    """
    hist = hist[len(hist) - order + 1:] if order > 1 else []
    if len(hist) < 2:
        return _dpmpp_2m_step(x, x0, hist[-1] if hist else None, ts, ss)
    (lam_2, m2), (lam_1, m1) = hist
    lam_t = _lam(ts)
    h = _lam(ss) - lam_t
    r0, r1 = (lam_t - lam_1) / h, (lam_1 - lam_2) / h
    phi1, a_s = math.expm1(-h), ss[0]
    c1, c2 = a_s * (phi1 / h + 1), -a_s * ((phi1 + h) / h**2 - 0.5)
    u = c1 * (1 + r0 / (r0 + r1)) + c2 / (r0 + r1)  # coefficient of D1_0
    w = -c1 * r0 / (r0 + r1) - c2 / (r0 + r1)  # coefficient of D1_1
    return combine((ss[1] / ts[1], x), (-a_s * phi1 + u / r0, x0), (w / r1 - u / r0, m1), (-w / r1, m2))


def sample_dpmpp_3m(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                    generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                    lower_order_final: bool = True) -> SampleOutput:
    """DPM-Solver++(3M): multistep 3rd order in lambda, data prediction (Lu et al. 2022).

    Orders ramp 1, 2, 3 over the first steps; ``lower_order_final`` as in
    ``sample_dpmpp_2m``; the last step to t = 0 returns x0_hat. NFE = N.
    """
    times, vals = _start("dpmpp_3m", processes, grid)
    n = len(times) - 1
    x, hist = dict(x), {f: [] for f in processes}
    for i in range(n):
        pred = call_model(model, x, times[i])
        if times[i + 1] == 0:
            x = denoised(pred)
        else:
            order = _max_order(3, i, n, lower_order_final)
            x = {f: _dpmpp_3m_step(x[f], pred[f].x0, hist[f], vals[f][i], vals[f][i + 1], order)
                 for f in processes}
        for f in processes:
            hist[f] = (hist[f] + [(_lam(vals[f][i]), pred[f].x0)])[-2:]
        if callback is not None:
            callback(i, times[i], x, pred)
    return SampleOutput(state=x, nfe=len(times) - 1, info={"grid": grid})


# ---------------------------------------------------------------- UniPC

UNIPC_VARIANTS = ("bh1", "bh2")


def _uni_system(h: float, rks: list[float], order: int, variant: str
                ) -> tuple[float, float, list[list[float]], list[float]]:
    """phi_1 = expm1(-h), B(h), and the system R rho = b of UniPC (Zhao et al. 2023, Algorithms 1-2).

    ``R[i][k] = rk_k^i`` for i < order, ``b[i] = i! phi_{i+1}(-h) / B(h)`` with
    ``phi_{k+1}(z) = (phi_k(z) - 1/k!) / z`` computed recursively from phi_1 = expm1(z) / z.
    """
    hh = -h
    phi1 = math.expm1(hh)
    b_h = hh if variant == "bh1" else phi1
    h_phi_k, factorial, rows, b = phi1 / hh - 1, 1, [], []
    for i in range(1, order + 1):
        rows.append([rk ** (i - 1) for rk in rks])
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    return phi1, b_h, rows, b


def _solve(rows: list[list[float]], b: list[float]) -> list[float]:
    """rho with ``R rho = b`` for UniPC's small (at most 3 x 3) system, in float64."""
    return np.linalg.solve(np.array(rows), np.array(b)).tolist()


def _uni_ratios(hist: History, h: float, order: int) -> list[float]:
    """rk = (lam_k - lam_0) / h over the ``order - 1`` older points, then 1 (the new point)."""
    lam0 = hist[-1][0]
    return [(hist[-1 - k][0] - lam0) / h for k in range(1, order)] + [1.0]


def _uni_terms(hist: History, rks: list[float], rhos: list[float], scale: float
               ) -> list[tuple[float, torch.Tensor]]:
    """``scale sum_k rho_k D1_k`` with ``D1_k = (m_k - m0) / rk`` as (coefficient, tensor) terms,
    the m0 part first: ``[(-scale sum_k rho_k / rk, m0), (scale rho_k / rk, m_k), ...]``."""
    m0 = hist[-1][1]
    terms = [(scale * rho / rk, hist[-2 - k][1]) for k, (rho, rk) in enumerate(zip(rhos, rks))]
    return [(-sum(c for c, _ in terms), m0)] + terms


def _unip(x: torch.Tensor, hist: History, ts: Pair, ss: Pair, order: int, variant: str) -> torch.Tensor:
    """UniP-p predictor from t to s (Zhao et al. 2023, Algorithm 2, data prediction):
    ``x_s = (s_s/s_t) x - a_s phi1 m0 - a_s B(h) sum_k rho_k D1_k``."""
    h = _lam(ss) - hist[-1][0]
    rks = _uni_ratios(hist, h, order)
    phi1, b_h, rows, b = _uni_system(h, rks, order, variant)
    rhos = [] if order == 1 else [0.5] if order == 2 else _solve([r[:-1] for r in rows[:-1]], b[:-1])
    (c0, m0), *terms = _uni_terms(hist, rks, rhos, -ss[0] * b_h)
    return combine((ss[1] / ts[1], x), (c0 - ss[0] * phi1, m0), *terms)


def _unic(x_prev: torch.Tensor, x0_new: torch.Tensor, hist: History, ps: Pair, ts: Pair, order: int,
          variant: str) -> torch.Tensor:
    """UniC-p corrector of the point at t, reusing its model evaluation x0_new (Zhao et al. 2023, Alg. 1):
    ``x_t = (s_t/s_p) x_prev - a_t phi1 m0 - a_t B(h) (sum_k rho_k D1_k + rho_p (x0_new - m0))``."""
    h = _lam(ts) - hist[-1][0]
    rks = _uni_ratios(hist, h, order)
    phi1, b_h, rows, b = _uni_system(h, rks, order, variant)
    rhos = [0.5] if order == 1 else _solve(rows, b)
    scale = -ts[0] * b_h
    (c0, m0), *terms = _uni_terms(hist, rks[:-1], rhos[:-1], scale)
    return combine((ts[1] / ps[1], x_prev), (c0 - ts[0] * phi1 - scale * rhos[-1], m0), *terms,
                   (scale * rhos[-1], x0_new))


def sample_unipc(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                 generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                 order: int = 2, variant: str = "bh2", corrector: bool = True,
                 lower_order_final: bool = True) -> SampleOutput:
    """UniPC (Zhao et al. 2023): UniP-p predictor + UniC-p corrector, data prediction, in lambda.

    The corrector at each new point reuses that point's model evaluation (the same x0_hat
    then feeds the next predictor), so NFE = N. Orders ramp up from 1 over the first steps;
    ``variant`` picks B(h) = h ("bh1") or expm1(h) ("bh2"). The last step to t = 0 returns
    x0_hat. ``lower_order_final`` as in ``sample_dpmpp_2m``.
    """
    if order not in (1, 2, 3) or variant not in UNIPC_VARIANTS:
        raise ValueError(f"sampler 'unipc': order must be 1, 2 or 3 and variant one of {UNIPC_VARIANTS}, "
                         f"got order={order}, variant={variant!r}")
    times, vals = _start("unipc", processes, grid)
    n = len(times) - 1
    x, hist, prev = dict(x), {f: [] for f in processes}, None
    for i in range(n):
        pred = call_model(model, x, times[i])
        if prev is not None and corrector:
            x_prev, p_order = prev
            x = {f: _unic(x_prev[f], pred[f].x0, hist[f], vals[f][i - 1], vals[f][i], p_order, variant)
                 for f in processes}
        for f in processes:
            hist[f] = (hist[f] + [(_lam(vals[f][i]), pred[f].x0)])[-order:]
        if times[i + 1] == 0:
            x = denoised(pred)
        else:
            step_order = _max_order(order, i, n, lower_order_final)
            prev = (x, step_order)
            x = {f: _unip(x[f], hist[f], vals[f][i], vals[f][i + 1], step_order, variant) for f in processes}
        if callback is not None:
            callback(i, times[i], x, pred)
    return SampleOutput(state=x, nfe=len(times) - 1, info={"grid": grid})
