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
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from polydiff.samplers.common import (SampleOutput, alpha_sigma, call_model, check_grid, denoised, eps_of,
                                      first_gaussian, require_families)
from polydiff.spaces import State

GAUSSIAN = frozenset({"gaussian"})
Pair = tuple[float, float]


def _start(name: str, processes: Mapping[str, Any], grid: torch.Tensor) -> list[float]:
    check_grid(grid, name)
    require_families(processes, GAUSSIAN, name)
    return [float(t) for t in grid]


def _lam(pair: Pair) -> float:
    return math.log(pair[0]) - math.log(pair[1])


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


# ---------------------------------------------------------------- DDIM

def _ddim_step(x: torch.Tensor, pred: Any, ts: Pair, ss: Pair, eta: float,
               generator: torch.Generator | None) -> torch.Tensor:
    (a_t, s_t), (a_s, s_s) = ts, ss
    if s_s == 0:
        return pred.x0
    eps = eps_of(pred, x, a_t, s_t)
    # DDIM eq. 16 with sigma_ts^2 = s_t^2 - (a_t/a_s)^2 s_s^2, the posterior's noise
    c = eta * s_s / s_t * math.sqrt(max(s_t**2 - (a_t / a_s) ** 2 * s_s**2, 0.0))
    out = a_s * pred.x0 + math.sqrt(max(s_s**2 - c**2, 0.0)) * eps
    return out + c * _randn_like(x, generator) if c > 0 else out


def sample_ddim(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                eta: float = 0.0) -> SampleOutput:
    """DDIM (Song, Meng & Ermon 2021, eq. 12) for any (alpha, sigma).

    ``x_s = a_s x0 + sqrt(s_s^2 - c^2) eps_hat + c z`` with
    ``c = eta (s_s / s_t) sqrt(s_t^2 - (a_t/a_s)^2 s_s^2)``; ``eta = 0`` is the deterministic
    ODE sampler (equal to Euler in the EDM variables), ``eta = 1`` matches DDPM's posterior
    variance. NFE = N (grid intervals).
    """
    times = _start("ddim", processes, grid)
    x = dict(x)
    for i in range(len(times) - 1):
        pred = call_model(model, x, times[i])
        at, as_ = alpha_sigma(processes, times[i]), alpha_sigma(processes, times[i + 1])
        x = {f: _ddim_step(x[f], pred[f], at[f], as_[f], eta, generator) for f in processes}
        if callback is not None:
            callback(i, times[i], x, pred)
    return SampleOutput(state=x, nfe=len(times) - 1, info={"grid": grid})


# ---------------------------------------------------------------- Euler / Heun (EDM)

def _euler_step(x: torch.Tensor, x0: torch.Tensor, ts: Pair, ss: Pair) -> torch.Tensor:
    (a_t, s_t), (a_s, s_s) = ts, ss
    if s_s == 0:
        return x0
    y, se_t, se_s = x / a_t, s_t / a_t, s_s / a_s
    d = (y - x0) / se_t  # dy/dse, EDM eq. 3 with s(t) = 1
    return a_s * (y + (se_s - se_t) * d)


def sample_euler(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                 generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                 ) -> SampleOutput:
    """Euler's method on the probability-flow ODE in the EDM variables (Karras et al. 2022, eq. 3).

    ``y = x / alpha`` and ``se = sigma / alpha``: ``dy/dse = (y - x0_hat) / se``. NFE = N.
    """
    times = _start("euler", processes, grid)
    x = dict(x)
    for i in range(len(times) - 1):
        pred = call_model(model, x, times[i])
        at, as_ = alpha_sigma(processes, times[i]), alpha_sigma(processes, times[i + 1])
        x = {f: _euler_step(x[f], pred[f].x0, at[f], as_[f]) for f in processes}
        if callback is not None:
            callback(i, times[i], x, pred)
    return SampleOutput(state=x, nfe=len(times) - 1, info={"grid": grid})


def _heun_correct(x_hat: torch.Tensor, x_next: torch.Tensor, x0: torch.Tensor, x0_next: torch.Tensor,
                  th: Pair, ss: Pair) -> torch.Tensor:
    (a_h, s_h), (a_s, s_s) = th, ss
    y_hat, se_h, se_s = x_hat / a_h, s_h / a_h, s_s / a_s
    d, d_next = (y_hat - x0) / se_h, (x_next / a_s - x0_next) / se_s
    return a_s * (y_hat + (se_s - se_h) * 0.5 * (d + d_next))  # EDM Alg. 2, line 8


def _churn_time(schedule: Any, t: float, gamma: float, s_tmin: float, s_tmax: float) -> float:
    """t_hat >= t with sigma_e(t_hat) = (1 + gamma) sigma_e(t) (EDM Alg. 2, lines 4-5), capped at t_max."""
    v = schedule(torch.tensor(t, dtype=torch.float64))
    se = float(v.sigma / v.alpha)
    if gamma <= 0 or not s_tmin <= se <= s_tmax:
        return t
    t_hat = float(schedule.t_from_log_snr(torch.tensor(-2 * math.log(se * (1 + gamma)), dtype=torch.float64)))
    return min(max(t_hat, t), max(schedule.t_max, t))


def _add_churn_noise(processes: Mapping[str, Any], x: State, t: float, t_hat: float, s_noise: float,
                     generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    at, ah = alpha_sigma(processes, t), alpha_sigma(processes, t_hat)
    out = {}
    for f in processes:
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
    times = _start("heun", processes, grid)
    schedule, n = first_gaussian(processes).schedule, len(times) - 1
    gamma = min(s_churn / n, math.sqrt(2) - 1)
    x, nfe = dict(x), 0
    for i in range(n):
        t, s = times[i], times[i + 1]
        t_hat = _churn_time(schedule, t, gamma, s_tmin, s_tmax)
        if t_hat > t:
            x = _add_churn_noise(processes, x, t, t_hat, s_noise, generator)
        pred, nfe = call_model(model, x, t_hat), nfe + 1
        th, ss = alpha_sigma(processes, t_hat), alpha_sigma(processes, s)
        x_next = {f: _euler_step(x[f], pred[f].x0, th[f], ss[f]) for f in processes}
        if s > 0:
            pred_next, nfe = call_model(model, x_next, s), nfe + 1
            x_next = {f: _heun_correct(x[f], x_next[f], pred[f].x0, pred_next[f].x0, th[f], ss[f])
                      for f in processes}
        x = x_next
        if callback is not None:
            callback(i, t, x, pred)
    return SampleOutput(state=x, nfe=nfe, info={"grid": grid})


# ---------------------------------------------------------------- DPM-Solver++ (2M, 3M)

def _dpmpp_step(x: torch.Tensor, d: torch.Tensor, ts: Pair, ss: Pair) -> torch.Tensor:
    """First-order data-prediction update x_s = (s_s/s_t) x - a_s expm1(-h) D (Lu et al. 2022, eq. 10)."""
    h = _lam(ss) - _lam(ts)
    return (ss[1] / ts[1]) * x - ss[0] * math.expm1(-h) * d


def _dpmpp_2m_d(x0: torch.Tensor, hist: list[tuple[float, torch.Tensor]], lam_t: float,
                lam_s: float) -> torch.Tensor:
    """D of DPM-Solver++(2M), Lu et al. 2022 Algorithm 2: (1 + 1/2r) x0 - 1/2r x0_prev."""
    if not hist:
        return x0
    lam_p, x0_p = hist[-1]
    r = (lam_t - lam_p) / (lam_s - lam_t)
    return (1 + 0.5 / r) * x0 - (0.5 / r) * x0_p


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
    times = _start("dpmpp_2m", processes, grid)
    n = len(times) - 1
    x, hist = dict(x), {f: [] for f in processes}
    for i in range(n):
        pred = call_model(model, x, times[i])
        at, as_ = alpha_sigma(processes, times[i]), alpha_sigma(processes, times[i + 1])
        if times[i + 1] == 0:
            x = denoised(pred)
        else:
            order = _max_order(2, i, n, lower_order_final)
            x = {f: _dpmpp_step(x[f], _dpmpp_2m_d(pred[f].x0, hist[f][-order + 1:] if order > 1 else [],
                                                  _lam(at[f]), _lam(as_[f])), at[f], as_[f]) for f in processes}
        for f in processes:
            hist[f] = [(_lam(at[f]), pred[f].x0)]
        if callback is not None:
            callback(i, times[i], x, pred)
    return SampleOutput(state=x, nfe=len(times) - 1, info={"grid": grid})


def _dpmpp_3m_update(x: torch.Tensor, x0: torch.Tensor, hist: list[tuple[float, torch.Tensor]],
                     ts: Pair, ss: Pair, order: int) -> torch.Tensor:
    """DPM-Solver++(3M): third-order multistep with divided differences D1, D2 (Lu et al. 2022, App. B)."""
    lam_t, lam_s = _lam(ts), _lam(ss)
    hist = hist[len(hist) - order + 1:] if order > 1 else []
    if len(hist) < 2:
        return _dpmpp_step(x, _dpmpp_2m_d(x0, hist, lam_t, lam_s), ts, ss)
    (lam_2, m2), (lam_1, m1) = hist[-2], hist[-1]
    h, r0, r1 = lam_s - lam_t, lam_t - lam_1, lam_1 - lam_2
    r0, r1 = r0 / h, r1 / h
    d1_0, d1_1 = (x0 - m1) / r0, (m1 - m2) / r1
    d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
    d2 = (d1_0 - d1_1) / (r0 + r1)
    phi1 = math.expm1(-h)
    a_s = ss[0]
    return ((ss[1] / ts[1]) * x - a_s * phi1 * x0 + a_s * (phi1 / h + 1) * d1
            - a_s * ((phi1 + h) / h**2 - 0.5) * d2)


def sample_dpmpp_3m(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                    generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                    lower_order_final: bool = True) -> SampleOutput:
    """DPM-Solver++(3M): multistep 3rd order in lambda, data prediction (Lu et al. 2022).

    Orders ramp 1, 2, 3 over the first steps; ``lower_order_final`` as in
    ``sample_dpmpp_2m``; the last step to t = 0 returns x0_hat. NFE = N.
    """
    times = _start("dpmpp_3m", processes, grid)
    n = len(times) - 1
    x, hist = dict(x), {f: [] for f in processes}
    for i in range(n):
        pred = call_model(model, x, times[i])
        at, as_ = alpha_sigma(processes, times[i]), alpha_sigma(processes, times[i + 1])
        if times[i + 1] == 0:
            x = denoised(pred)
        else:
            order = _max_order(3, i, n, lower_order_final)
            x = {f: _dpmpp_3m_update(x[f], pred[f].x0, hist[f], at[f], as_[f], order) for f in processes}
        for f in processes:
            hist[f] = (hist[f] + [(_lam(at[f]), pred[f].x0)])[-2:]
        if callback is not None:
            callback(i, times[i], x, pred)
    return SampleOutput(state=x, nfe=len(times) - 1, info={"grid": grid})


# ---------------------------------------------------------------- UniPC

UNIPC_VARIANTS = ("bh1", "bh2")


def _uni_system(h: float, rks: list[float], order: int, variant: str) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """phi_1 = expm1(-h), B(h), and the system R rho = b of UniPC (Zhao et al. 2023, Algorithms 1-2).

    ``R[i, k] = rk_k^i`` for i < order, ``b[i] = i! phi_{i+1}(-h) / B(h)`` with
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
    return phi1, b_h, torch.tensor(rows, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)


def _uni_differences(hist: list[tuple[float, torch.Tensor]], h: float, order: int
                     ) -> tuple[list[float], list[torch.Tensor]]:
    """rk = (lam_k - lam_0) / h and D1_k = (x0_k - x0_0) / rk over the ``order - 1`` older points."""
    lam0, m0 = hist[-1]
    rks, d1s = [], []
    for k in range(1, order):
        lam_k, m_k = hist[-1 - k]
        rk = (lam_k - lam0) / h
        rks.append(rk)
        d1s.append((m_k - m0) / rk)
    return rks + [1.0], d1s


def _unip(x: torch.Tensor, hist: list[tuple[float, torch.Tensor]], ts: Pair, ss: Pair, order: int,
          variant: str) -> torch.Tensor:
    """UniP-p predictor from t to s (Zhao et al. 2023, Algorithm 2, data prediction)."""
    lam0, m0 = hist[-1]
    h = _lam(ss) - lam0
    rks, d1s = _uni_differences(hist, h, order)
    phi1, b_h, r, b = _uni_system(h, rks, order, variant)
    out = (ss[1] / ts[1]) * x - ss[0] * phi1 * m0
    if order == 2:
        rhos = [0.5]
    elif order > 2:
        rhos = torch.linalg.solve(r[:-1, :-1], b[:-1]).tolist()
    else:
        return out
    return out - ss[0] * b_h * sum(rho * d for rho, d in zip(rhos, d1s))


def _unic(x_prev: torch.Tensor, x0_new: torch.Tensor, hist: list[tuple[float, torch.Tensor]], ps: Pair,
          ts: Pair, order: int, variant: str) -> torch.Tensor:
    """UniC-p corrector of the point at t, reusing its model evaluation x0_new (Zhao et al. 2023, Alg. 1)."""
    lam0, m0 = hist[-1]
    h = _lam(ts) - lam0
    rks, d1s = _uni_differences(hist, h, order)
    phi1, b_h, r, b = _uni_system(h, rks, order, variant)
    rhos = [0.5] if order == 1 else torch.linalg.solve(r, b).tolist()
    corr = sum((rho * d for rho, d in zip(rhos[:-1], d1s)), torch.zeros_like(m0)) + rhos[-1] * (x0_new - m0)
    return (ts[1] / ps[1]) * x_prev - ts[0] * phi1 * m0 - ts[0] * b_h * corr


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
    times = _start("unipc", processes, grid)
    n = len(times) - 1
    x, hist, prev = dict(x), {f: [] for f in processes}, None
    for i in range(n):
        pred = call_model(model, x, times[i])
        at = alpha_sigma(processes, times[i])
        if prev is not None and corrector:
            x_prev, p_prev, p_order = prev
            x = {f: _unic(x_prev[f], pred[f].x0, hist[f], p_prev[f], at[f], p_order, variant) for f in processes}
        for f in processes:
            hist[f] = (hist[f] + [(_lam(at[f]), pred[f].x0)])[-order:]
        if times[i + 1] == 0:
            x = denoised(pred)
        else:
            step_order, as_ = _max_order(order, i, n, lower_order_final), alpha_sigma(processes, times[i + 1])
            prev = (x, at, step_order)
            x = {f: _unip(x[f], hist[f], at[f], as_[f], step_order, variant) for f in processes}
        if callback is not None:
            callback(i, times[i], x, pred)
    return SampleOutput(state=x, nfe=len(times) - 1, info={"grid": grid})
