"""Samplers of the bridge family: DBIM steps from the source sample x1 down to x0.

Every bridge process writes its marginal as ``x_t = a_t x0 + b_t x1 + c_t z``
(``polydiff.corruptions.bridge``). Diffusion Bridge Implicit Models (Zheng et al. 2024)
keep these marginals with a family of non-Markovian reverse steps, indexed by
eta in [0, 1]:

    z_hat = (x_t - a_t x0_hat - b_t x1) / c_t
    x_s   = a_s x0_hat + b_s x1 + sqrt(c_s^2 - rho^2) z_hat + rho eps,   rho = eta sqrt(V),

with V the variance of the Markov posterior q(x_s | x_t, x0, x1). ``eta = 1`` is exactly
that posterior (since ``P^2 c_t^2 + V = c_s^2``): I2SB's DDPM-posterior sampler, the same
law as the generic ancestral sampler. ``eta = 0`` is the deterministic, marginal-preserving
bridge ODE step (DBIM's ODE; the DDIM analogue in y = x - b x1).

A pinned bridge starts at c_1 = 0, where z_hat is undefined and a deterministic step
would keep every sample of one x1 identical. The first step out of c_t = 0 therefore
draws fresh noise, ``x_s = a_s x0_hat + b_s x1 + c_s eps`` from ``generator`` (DBIM's
"booting noise"; the law of the Markov posterior from t = 1, and the role of DDBM's first
stochastic Euler-Maruyama step). The last step to s = 0 returns x0_hat.

Notation (per field, current time t, next time s < t):
    a_t, b_t, c_t   the marginal's coefficients of x0, x1, z at t (a_s, b_s, c_s at s)
    std             sqrt(V), the Markov posterior's standard deviation from t to s
    x0              x0_hat, the model's prediction of E[x0 | x_t, x1]
    x1              the paired source sample of the field
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from polydiff.samplers.common import SampleOutput, call_model, check_grid, combine, require_families
from polydiff.spaces import State

BRIDGE = frozenset({"bridge"})
Coef = tuple[float, float, float]


def _sources(sampler: str, processes: Mapping[str, Any], x: State, source: State | None) -> dict[str, torch.Tensor]:
    """Each field's x1, checked against the state's shape."""
    out = {}
    for field in processes:
        if source is None or field not in source:
            raise ValueError(f"sampler {sampler!r}: bridge field {field!r} needs its paired source sample; pass "
                             f"source={{{field!r}: x1}} (the experiment fills it from the modality's pairs)")
        if tuple(source[field].shape) != tuple(x[field].shape):
            raise ValueError(f"sampler {sampler!r}: source[{field!r}] has shape {tuple(source[field].shape)}, "
                             f"the state {tuple(x[field].shape)}")
        out[field] = source[field].to(device=x[field].device, dtype=x[field].dtype)
    return out


def _tables(processes: Mapping[str, Any], times: list[float]) -> tuple[dict[str, list[Coef]], dict[str, list[float]]]:
    """Per field, (a, b, c) at every grid time and the posterior std of every interval, in float64."""
    t = torch.tensor(times, dtype=torch.float64)
    coefs, stds = {}, {}
    for name, proc in processes.items():
        c = proc.coefficients(t)
        coefs[name] = list(zip(c.a.tolist(), c.b.tolist(), c.c.tolist()))
        stds[name] = proc.posterior(t[:-1], t[1:]).std.tolist()
    return coefs, stds


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _dbim_step(x: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, ct: Coef, cs: Coef, std: float,
               eta: float, generator: torch.Generator | None) -> torch.Tensor:
    """One DBIM step from t to s > 0 (module docstring), multiplied out into a linear combination."""
    (a_t, b_t, c_t), (a_s, b_s, c_s) = ct, cs
    if c_t == 0:
        # booting noise: z_hat is undefined at a pinned end
        return combine((a_s, x0), (b_s, x1)).add_(_noise(x, generator), alpha=c_s)
    rho = eta * std
    k = math.sqrt(max(c_s**2 - rho**2, 0.0)) / c_t
    # a_s x0 + b_s x1 + k (x - a_t x0 - b_t x1) + rho eps
    out = combine((k, x), (a_s - k * a_t, x0), (b_s - k * b_t, x1))
    return out.add_(_noise(x, generator), alpha=rho) if rho > 0 else out


def _run(name: str, model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor,
         generator: torch.Generator | None, callback: Callable[..., None] | None, source: State | None,
         eta: float) -> SampleOutput:
    check_grid(grid, name)
    require_families(processes, BRIDGE, name)
    x1 = _sources(name, processes, x, source)
    times = grid.tolist()
    coefs, stds = _tables(processes, times)
    x = dict(x)
    for i in range(len(times) - 1):
        pred = call_model(model, x, times[i])
        if times[i + 1] == 0:
            x = {f: pred[f].x0 for f in processes}
        else:
            x = {f: _dbim_step(x[f], pred[f].x0, x1[f], coefs[f][i], coefs[f][i + 1], stds[f][i], eta, generator)
                 for f in processes}
        if callback is not None:
            callback(i, times[i], x, pred)
    return SampleOutput(state=x, nfe=len(times) - 1, info={"grid": grid, "eta": eta})


def sample_bridge_sde(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                      generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                      source: State | None = None, eta: float = 1.0) -> SampleOutput:
    """The bridge SDE sampler: DBIM steps with eta (Zheng et al. 2024); eta = 1 is ancestral.

    ``eta = 1`` draws from the Markov posterior q(x_s | x_t, x0_hat, x1) at every step, I2SB's
    sampler (Liu et al. 2023, Algorithm 2); ``0 < eta < 1`` interpolates towards the ODE.

    Args:
        model: ``PredictFn``, ``model(x, t) -> {field: Prediction}`` (x0_hat in ``.x0``).
        processes: field -> bridge Corruption.
        x: the prior State at ``grid[0]`` (x1 for pinned bridges), field -> ``(B, *field_shape)``.
        grid: descending times, shape ``(N + 1,)``, ending at 0.
        generator: the only source of randomness.
        callback: ``callback(i, t, x, predictions)`` after step ``i``.
        source: field -> the paired x1, ``(B, *field_shape)``; required.
        eta: in [0, 1]; the fraction of the posterior's standard deviation injected as fresh noise.

    Returns:
        ``SampleOutput`` with ``nfe == N`` (one call per interval).

    Raises:
        IncompatibleSpaceError: a field's process is not a bridge.
        ValueError: ``source`` misses a field, or ``eta`` is outside [0, 1].
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"sampler 'bridge_sde': eta must be in [0, 1], got {eta}")
    return _run("bridge_sde", model, processes, x, grid, generator, callback, source, float(eta))


def sample_bridge_ode(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                      generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                      source: State | None = None) -> SampleOutput:
    """The deterministic bridge ODE sampler: DBIM with eta = 0 (Zheng et al. 2024).

    ``x_s = a_s x0_hat + b_s x1 + c_s z_hat``, ``z_hat = (x_t - a_t x0_hat - b_t x1) / c_t``,
    which keeps the bridge marginals. From a pinned start (c = 0) the first step draws the
    booting noise from ``generator`` (module docstring): without it all samples of one x1
    would coincide. Every later step is deterministic. Arguments as ``sample_bridge_sde``.

    Returns:
        ``SampleOutput`` with ``nfe == N``.
    """
    return _run("bridge_ode", model, processes, x, grid, generator, callback, source, 0.0)
