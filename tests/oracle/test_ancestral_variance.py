"""Oracle test of the ancestral sampler's two Gaussian reverse variances (Ho et al. 2020, section 3.2).

For data x0 ~ N(0, c^2) the exact denoiser is linear, E[x0 | x_t] = k_t x_t with
k_t = alpha_t c^2 / (alpha_t^2 c^2 + sigma_t^2), so one ancestral step is
x_s = (A + B k_t) x_t + std z and the variance of the chain follows the closed-form recursion
V_s = (A + B k_t)^2 V_t + std^2 from the prior's sigma(1)^2. The sampler's empirical variance
must match the recursion for both choices, and Ho et al.'s statement must hold: the large
variance (beta) is exact for c^2 = 1 at any number of steps, the small one (beta-tilde) is
not.
"""
from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff.samplers import make_grid, sample_ancestral
from polydiff.schedules import VPCosine, VPLinear
from polydiff.testing.oracles import GaussianMixtureOracle

N = 40000
RTOL = 4 * (2 / N) ** 0.5
"""Four standard errors of a sample variance from N Gaussian draws."""


def recursion(schedule, grid: torch.Tensor, c2: float, variance: str) -> float:
    """The exact variance after ancestral sampling of N(0, c2) on ``grid``."""
    v = float(schedule(grid[:1]).sigma[0] ** 2)
    for t, s in zip(grid[:-1], grid[1:]):
        vt, vs = schedule(t.reshape(1)), schedule(s.reshape(1))
        alpha_ts = vt.alpha / vs.alpha
        sigma_ts2 = vt.sigma**2 - alpha_ts**2 * vs.sigma**2
        a = alpha_ts * vs.sigma**2 / vt.sigma**2
        b = vs.alpha * sigma_ts2 / vt.sigma**2
        k = vt.alpha * c2 / (vt.alpha**2 * c2 + vt.sigma**2)
        std2 = sigma_ts2 * vs.sigma**2 / vt.sigma**2 if variance == "small" else sigma_ts2 * (vs.sigma > 0)
        v = float((a + b * k) ** 2 * v + std2)
    return v


def sampled_variance(schedule, c2: float, steps: int, variance: str) -> tuple[float, float]:
    """(empirical variance of the sampler's draws, the recursion's exact value)."""
    procs = {"x": polydiff.GaussianCorruption(polydiff.Continuous((1,)), schedule)}
    oracle = GaussianMixtureOracle([1.0], [[0.0]], torch.full((1, 1, 1), c2, dtype=torch.float64))
    grid = make_grid("uniform", procs, steps).double()
    gen = torch.Generator().manual_seed(0)
    x = {"x": procs["x"].prior(N, generator=gen, dtype=torch.float64)}
    out = sample_ancestral(oracle.predict_fn(procs), procs, x, grid, generator=gen, gaussian_variance=variance)
    return float(out.state["x"].var()), recursion(schedule, grid, c2, variance)


@pytest.mark.parametrize("schedule", [VPCosine(), VPLinear()], ids=lambda s: s.name)
@pytest.mark.parametrize("variance", ["small", "large"])
def test_sampled_variance_follows_the_closed_form_recursion(schedule, variance):
    got, exact = sampled_variance(schedule, 0.25, 10, variance)
    assert got == pytest.approx(exact, rel=RTOL)


def test_the_two_choices_differ_where_the_recursion_says():
    """On 10 steps and c^2 = 0.25 the small variance under-disperses, the large one over-disperses."""
    procs = {"x": polydiff.GaussianCorruption(polydiff.Continuous((1,)), VPCosine())}
    grid = make_grid("uniform", procs, 10).double()
    assert recursion(VPCosine(), grid, 0.25, "small") < 0.25 * 0.7
    assert recursion(VPCosine(), grid, 0.25, "large") > 0.25 * 1.1


@pytest.mark.parametrize("steps", [5, 50])
def test_large_variance_is_exact_for_standard_normal_data(steps):
    """Ho et al. 2020: sigma^2 = beta is optimal for x0 ~ N(0, I), at any step count."""
    large, _ = sampled_variance(VPCosine(), 1.0, steps, "large")
    small, small_exact = sampled_variance(VPCosine(), 1.0, steps, "small")
    assert large == pytest.approx(1.0, rel=RTOL)
    assert small == pytest.approx(small_exact, rel=RTOL) and small_exact < 1 - 2 * RTOL


def test_unknown_variance_is_an_error():
    procs = {"x": polydiff.GaussianCorruption(polydiff.Continuous((1,)), VPCosine())}
    grid = make_grid("uniform", procs, 4)
    with pytest.raises(ValueError, match="gaussian_variance 'fixed_large' is not one of"):
        sample_ancestral(lambda x, t: {}, procs, {"x": torch.zeros(2, 1)}, grid, gaussian_variance="fixed_large")
