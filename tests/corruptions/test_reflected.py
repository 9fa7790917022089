"""The reflected process (Lou & Ermon 2023): the reflection map, the heat kernel and the process.

Closed-form checks in float64: the kernel integrates to 1, its two evaluations agree where
both are accurate and match a 121-image reference, its score is the autograd derivative of
its log and vanishes at the walls. Sampling checks use Kolmogorov-Smirnov statistics at
n = 20000 against the critical value 1.95 / sqrt(n) = 0.0138 (level 0.001).
"""
from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff.corruptions.reflected import (SERIES_FROM, ReflectedCorruption, reflect, reflected_kernel_score,
                                            reflected_kernel_score_images, reflected_kernel_score_series,
                                            reflected_log_kernel, reflected_log_kernel_images,
                                            reflected_log_kernel_series)

N_KS = 20000
KS_CRITICAL = 1.95 / math.sqrt(N_KS)
"""Kolmogorov-Smirnov critical value at level 0.001 for N_KS samples."""
LOG_TOL, SCORE_TOL = 1e-12, 1e-11
"""Stated kernel precision: |log p - ref| and |score - ref| / (1 + |ref|)."""
SIGMAS = (1e-3, 0.02, 0.2, 0.49, 0.5, 1.0, 2.0)
U0S = (0.0, 0.03, 0.5, 0.97, 1.0)


def _grid(n: int = 40001) -> torch.Tensor:
    return torch.linspace(0, 1, n, dtype=torch.float64)


def _sigma_to_t(process: ReflectedCorruption, sigma: float) -> float:
    return math.log(sigma / process.sigma_min) / math.log(process.sigma_max / process.sigma_min)


def _ks_to_kernel(samples_u: torch.Tensor, u0: float, sigma: float) -> float:
    """KS statistic of unit-coordinate samples against the kernel's CDF (cumulative trapezoid)."""
    u = _grid(200001)
    density = reflected_log_kernel(u, u0, sigma).exp()
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64),
                     torch.cumsum(0.5 * (density[1:] + density[:-1]) * (u[1] - u[0]), 0)])
    x = samples_u.double().sort().values
    idx = torch.searchsorted(u, x).clamp(1, len(u) - 1)
    frac = (x - u[idx - 1]) / (u[idx] - u[idx - 1])
    model = cdf[idx - 1] + frac * (cdf[idx] - cdf[idx - 1])
    n = len(x)
    upper = (torch.arange(1, n + 1, dtype=torch.float64) / n - model).abs().max()
    lower = (model - torch.arange(n, dtype=torch.float64) / n).abs().max()
    return float(torch.maximum(upper, lower))


# ---------------------------------------------------------------- reflect

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("box", [(0.0, 1.0), (-1.0, 1.0), (0.1, 0.7), (-3.0, 250.0)])
def test_reflect_maps_any_real_into_the_box(dtype, box):
    low, high = box
    g = torch.Generator().manual_seed(0)
    width = high - low
    x = torch.cat([low + width * (40 * torch.rand(20000, generator=g, dtype=torch.float64) - 20),
                   torch.tensor([low, high, low - 1e-12, high + 1e-12, low - width, high + width, 1e6, -1e6],
                                dtype=torch.float64)]).to(dtype)
    y = reflect(x, low, high)
    assert y.dtype == dtype and y.shape == x.shape
    assert bool((y >= low).all()) and bool((y <= high).all()), (y.min().item(), y.max().item())
    assert polydiff.Bounded((len(y),), low, high).problem(y[None]) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reflect_is_the_identity_inside_and_a_mirror_at_the_walls(dtype):
    low, high = -1.0, 2.0
    g = torch.Generator().manual_seed(1)
    inside = (low + 3.0 * torch.rand(5000, generator=g, dtype=torch.float64)).to(dtype)
    assert torch.equal(reflect(inside, low, high), inside)
    d = 3.0 * torch.rand(5000, generator=g, dtype=torch.float64)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for mirrored in (low - d, 2 * high - (low + d), low + d + 6.0):  # mirror at low, at high, one period
        assert (reflect(mirrored.to(dtype), low, high).double() - reflect((low + d).to(dtype), low, high).double()
                ).abs().max() < tol


# ---------------------------------------------------------------- the kernel

@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("u0", U0S)
def test_kernel_integrates_to_one(sigma, u0):
    # the kernel is the restriction of an even 2-periodic smooth function: trapezoid is spectrally accurate
    u = _grid()
    density = reflected_log_kernel(u, u0, sigma).exp()
    assert abs(float(torch.trapezoid(density, u)) - 1) < 1e-10


@pytest.mark.parametrize("sigma", [0.3, 0.4, 0.5, 0.6])
def test_images_and_series_agree_where_both_are_accurate(sigma):
    u, u0 = _grid(401)[:, None], _grid(41)[None, :]
    assert (reflected_log_kernel_images(u, u0, sigma) - reflected_log_kernel_series(u, u0, sigma)).abs().max() < LOG_TOL
    a, b = reflected_kernel_score_images(u, u0, sigma), reflected_kernel_score_series(u, u0, sigma)
    assert ((a - b).abs() / (1 + a.abs())).max() < SCORE_TOL


def test_kernel_matches_a_many_image_reference_over_the_whole_sigma_range():
    u = torch.cat([_grid(401), torch.tensor([1e-9, 1 - 1e-9, 0.5 - 1e-12, 0.5 + 1e-12], dtype=torch.float64)])
    u, u0 = u[:, None], _grid(41)[None, :]
    for sigma in torch.logspace(-3, math.log10(5.0), 25, dtype=torch.float64).tolist():
        ref_log = reflected_log_kernel_images(u, u0, sigma, images=60)
        ref_score = reflected_kernel_score_images(u, u0, sigma, images=60)
        assert (reflected_log_kernel(u, u0, sigma) - ref_log).abs().max() < LOG_TOL, sigma
        err = (reflected_kernel_score(u, u0, sigma) - ref_score).abs() / (1 + ref_score.abs())
        assert err.max() < SCORE_TOL, sigma


def test_mixed_sigmas_use_each_evaluation_on_its_own_part():
    u = torch.tensor([0.1, 0.7, 0.2, 0.9], dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.1, 1.0, 1.0], dtype=torch.float64)
    assert SERIES_FROM == 0.5
    expected = torch.cat([reflected_kernel_score_images(u[:2], 0.3, 0.1),
                          reflected_kernel_score_series(u[2:], 0.3, 1.0)])
    assert torch.equal(reflected_kernel_score(u, 0.3, sigma), expected)


@pytest.mark.parametrize("sigma", [0.005, 0.08, 0.45, 0.55, 1.5])
def test_score_is_the_autograd_derivative_of_the_log_kernel(sigma):
    g = torch.Generator().manual_seed(2)
    u = torch.rand(500, generator=g, dtype=torch.float64).requires_grad_(True)
    u0 = torch.rand(500, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad(reflected_log_kernel(u, u0, sigma).sum(), u)
    score = reflected_kernel_score(u.detach(), u0, sigma)
    assert ((grad - score).abs() / (1 + score.abs())).max() < 1e-10


@pytest.mark.parametrize("sigma", SIGMAS)
@pytest.mark.parametrize("u0", U0S)
def test_the_kernel_has_zero_derivative_at_the_walls(sigma, u0):
    walls = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert (sigma * reflected_kernel_score(walls, u0, sigma)).abs().max() < 1e-12
    # independently of the score formula: the one-sided slope of log p at a wall, with step
    # h = 1e-4 sigma^2, is below 0.1% of the slope d / sigma^2 an unreflected Gaussian has there
    h = 1e-4 * sigma**2
    inside = torch.tensor([h, 1 - h], dtype=torch.float64)
    slope = (reflected_log_kernel(inside, u0, sigma) - reflected_log_kernel(walls, u0, sigma)) / h
    distance = (walls - u0).abs()
    assert bool((slope.abs() < 1e-3 * (distance / sigma**2 + 1 / sigma)).all()), slope


# ---------------------------------------------------------------- the process

def test_schedule_endpoints_and_g2():
    process = ReflectedCorruption(polydiff.Bounded((1,)))
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(process.sigma(t), torch.tensor([0.01, math.sqrt(0.02), 2.0], dtype=torch.float64),
                          rtol=1e-14)
    tt = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    (d_sigma2,) = torch.autograd.grad(process.sigma(tt).pow(2).sum(), tt)
    assert torch.allclose(d_sigma2, process.g2(tt.detach()), rtol=1e-12)


@pytest.mark.parametrize("u0, sigma", [(0.02, 0.1), (0.5, 0.3), (1.0, 0.05), (0.0, 0.6)])
def test_corrupt_draws_the_reflected_kernel(u0, sigma):
    low, high = -1.0, 2.0
    process = ReflectedCorruption(polydiff.Bounded((1,), low, high))
    x0 = torch.full((N_KS, 1), low + (high - low) * u0, dtype=torch.float64)
    t = torch.full((N_KS,), _sigma_to_t(process, sigma), dtype=torch.float64)
    out = process.corrupt(x0, t, generator=torch.Generator().manual_seed(3))
    assert bool((out.x_t >= low).all()) and bool((out.x_t <= high).all())
    assert _ks_to_kernel(process.to_unit(out.x_t)[:, 0], u0, sigma) < KS_CRITICAL


def test_the_t1_marginal_is_uniform():
    process = ReflectedCorruption(polydiff.Bounded((1,)))
    u = _grid(2001)[:, None]
    u0 = _grid(21)[None, :]
    deviation = (reflected_log_kernel(u, u0, process.sigma_max).exp() - 1).abs().max()
    assert deviation < 2.01 * math.exp(-math.pi**2 * process.sigma_max**2 / 2)
    x0 = torch.zeros(N_KS, 1, dtype=torch.float64)  # all mass on a wall: the hardest start
    x1 = process.corrupt(x0, torch.ones(N_KS, dtype=torch.float64), generator=torch.Generator().manual_seed(4)).x_t
    assert _ks_to_kernel(x1[:, 0], 0.3, 50.0) < KS_CRITICAL  # sigma = 50: the kernel is uniform to 1e-300
    prior = process.prior(N_KS, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert _ks_to_kernel(prior[:, 0], 0.3, 50.0) < KS_CRITICAL


def test_sample_t_is_uniform_on_the_half_open_interval():
    process = ReflectedCorruption(polydiff.Bounded((2,)), t_min=0.2)
    t = process.sample_t(N_KS, generator=torch.Generator().manual_seed(6))
    assert t.shape == (N_KS,) and float(t.min()) > 0.2 and float(t.max()) <= 1.0
    assert abs(float(t.mean()) - 0.6) < 4 * 0.8 / math.sqrt(12 * N_KS)


@pytest.mark.parametrize("space", [polydiff.Continuous((2,)), polydiff.Discrete((2,), vocab_size=4)])
def test_unbounded_or_discrete_spaces_are_rejected_naming_both(space):
    with pytest.raises(polydiff.IncompatibleSpaceError) as info:
        ReflectedCorruption(space, field="pos")
    text = str(info.value)
    assert "reflected" in text and space.kind in text and "'pos'" in text and "bounded" in text
    factory = polydiff.make_plugin_manager(autoload=False).registry.get("corruption", "reflected").factory
    with pytest.raises(polydiff.IncompatibleSpaceError, match=space.kind):
        factory(space, field="pos")


def test_bad_noise_levels_are_clear_errors():
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        ReflectedCorruption(polydiff.Bounded((2,)), sigma_min=0.5, sigma_max=0.1)
    with pytest.raises(ValueError, match="t_min"):
        ReflectedCorruption(polydiff.Bounded((2,)), t_min=1.0)


def _example(n: int = 512, low: float = -1.0, high: float = 1.0, seed: int = 7):
    process = ReflectedCorruption(polydiff.Bounded((3,), low, high))
    g = torch.Generator().manual_seed(seed)
    x0 = low + (high - low) * torch.rand(n, 3, generator=g, dtype=torch.float64)
    t = process.sample_t(n, generator=g).double()
    return process, x0, process.corrupt(x0, t, generator=g)


def test_loss_is_the_sigma_weighted_dsm_against_the_kernel_score():
    process, x0, corrupted = _example()
    target = process.score_target(x0, corrupted)
    sigma = process.sigma(corrupted.t)[:, None]
    score = reflected_kernel_score(process.to_unit(corrupted.x_t), process.to_unit(x0), sigma)
    assert torch.allclose(target, sigma * score, rtol=1e-12, atol=0)
    assert torch.equal(process.loss(target, x0, corrupted), torch.zeros(len(x0)))
    raw = target + 0.1
    assert torch.allclose(process.loss(raw, x0, corrupted), torch.full((len(x0),), 0.01), rtol=1e-5)
    assert not hasattr(process, "target"), "predict(target).x0 == x0 fails at the walls: no `target` method"


def test_predict_reads_raw_as_sigma_times_the_unit_score():
    process, x0, corrupted = _example(low=-1.0, high=3.0)
    raw = process.score_target(x0, corrupted)
    pred = process.predict(raw, corrupted.x_t, corrupted.t)
    sigma = process.sigma(corrupted.t)[:, None]
    assert torch.allclose(pred.score * process.width * sigma, raw, rtol=1e-12)
    assert torch.allclose(process.unit_score(pred, corrupted.x_t, corrupted.t), raw / sigma, rtol=1e-12)
    assert bool((pred.x0 >= -1).all()) and bool((pred.x0 <= 3).all())


def test_tweedie_x0_is_exact_away_from_the_walls_and_only_an_estimate_near_them():
    process = ReflectedCorruption(polydiff.Bounded((1,)))
    t = torch.full((2000,), _sigma_to_t(process, 0.02), dtype=torch.float64)
    g = torch.Generator().manual_seed(8)
    for u0, close in ((0.5, True), (0.01, False)):  # 0.01: half a sigma from the wall
        x0 = torch.full((2000, 1), u0, dtype=torch.float64)
        corrupted = process.corrupt(x0, t, generator=g)
        pred = process.predict(process.score_target(x0, corrupted), corrupted.x_t, t)
        err = float((pred.x0 - x0).abs().max())
        assert (err < 1e-12) if close else (err > 1e-3), (u0, err)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reverse_step_stays_in_the_box_down_to_t0(dtype):
    process, x0, corrupted = _example(low=0.1, high=0.7)
    x_t, t = corrupted.x_t.to(dtype), corrupted.t.to(dtype)
    g = torch.Generator().manual_seed(9)
    for pred in (process.predict(process.score_target(x0, corrupted).to(dtype) * 50, x_t, t),  # a wild score
                 polydiff.Prediction(raw=x0.to(dtype), x0=x0.to(dtype))):  # x0 only: read as a point mass
        for s in (0.5 * t, torch.zeros_like(t)):
            x_s = process.reverse_step(x_t, t, s, pred, generator=g)
            assert x_s.dtype == dtype and x_s.shape == x_t.shape
            assert bool((x_s >= 0.1).all()) and bool((x_s <= 0.7).all())


def test_point_mass_prediction_uses_the_kernel_score():
    process, x0, corrupted = _example()
    pred = polydiff.Prediction(raw=x0, x0=x0)
    sigma = process.sigma(corrupted.t)[:, None]
    expected = reflected_kernel_score(process.to_unit(corrupted.x_t), process.to_unit(x0), sigma)
    assert torch.equal(process.unit_score(pred, corrupted.x_t, corrupted.t), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_prior_is_uniform_on_the_box_in_every_dtype(dtype):
    process = ReflectedCorruption(polydiff.Bounded((2,), -1.0, 2.0))
    prior = process.prior(N_KS, generator=torch.Generator().manual_seed(10), dtype=dtype)
    assert prior.dtype == dtype and prior.shape == (N_KS, 2)
    assert polydiff.Bounded((2,), -1.0, 2.0).problem(prior) is None
    assert (prior.double().mean(0) - 0.5).abs().max() < 4 * 3 / math.sqrt(12 * N_KS)
