"""Gaussian corruption: marginals, prior, parametrisation round trips, loss weights, posterior."""
from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff.corruptions.base import Prediction
from polydiff.corruptions.gaussian import (GaussianCorruption, edm_loss_weight, eps_to_x0, flow_velocity_to_x0,
                                           v_to_x0, x0_to_eps, x0_to_flow_velocity, x0_to_v)
from polydiff.schedules import EDM, VE, Flow, VPCosine, VPLinear

SCHEDULES = [VPLinear(), VPCosine(), VE(), EDM(), Flow()]
SPACE = polydiff.Continuous((3,))


def values(s, n=64):
    t = torch.linspace(0.05, 0.95, n, dtype=torch.float64)
    v = s(t)
    return t, v.alpha[:, None], v.sigma[:, None], v.d_alpha[:, None], v.d_sigma[:, None]


@pytest.mark.parametrize("s", SCHEDULES, ids=lambda s: s.name)
def test_parametrisation_round_trips(s):
    g = torch.Generator().manual_seed(0)
    t, a, sg, da, ds = values(s)
    x0, eps = torch.randn(64, 3, generator=g, dtype=torch.float64), torch.randn(64, 3, generator=g, dtype=torch.float64)
    x_t = a * x0 + sg * eps
    assert torch.allclose(x0_to_eps(x0, x_t, a, sg), eps, atol=1e-9)
    assert torch.allclose(eps_to_x0(eps, x_t, a, sg), x0, atol=1e-9 * float(sg.max() / a.min()) + 1e-9)
    assert torch.allclose(v_to_x0(x0_to_v(x0, x_t, a, sg), x_t, a, sg), x0, atol=1e-9)
    u = x0_to_flow_velocity(x0, x_t, a, sg, da, ds)
    assert torch.allclose(u, da * x0 + ds * eps, atol=1e-8)
    assert torch.allclose(flow_velocity_to_x0(u, x_t, a, sg, da, ds), x0, atol=1e-8)


@pytest.mark.parametrize("param", ["eps", "x0", "v", "flow_velocity"])
def test_target_is_consistent_with_to_x0(param):
    proc = GaussianCorruption(SPACE, VPCosine(), parametrization=param)
    x0 = torch.randn(32, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.rand(32, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 0.9 + 0.05
    c = proc.corrupt(x0, t, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(proc.to_x0(proc.target(x0, c), c.x_t, t), x0, atol=1e-9)
    assert float(proc.loss(proc.target(x0, c), x0, c).abs().max()) == 0.0


@pytest.mark.parametrize("s", SCHEDULES, ids=lambda s: s.name)
def test_marginal_moments(s):
    proc = GaussianCorruption(SPACE, s)
    x0 = torch.full((20000, 3), 0.7, dtype=torch.float64)
    t = torch.full((20000,), 0.4, dtype=torch.float64)
    c = proc.corrupt(x0, t, generator=torch.Generator().manual_seed(0))
    v = s(torch.tensor(0.4, dtype=torch.float64))
    tol = 4 * float(v.sigma) / 20000**0.5
    assert torch.allclose(c.x_t.mean(0), (0.7 * v.alpha).expand(3), atol=tol)
    assert torch.allclose(c.x_t.std(0), v.sigma.expand(3), rtol=0.03)


@pytest.mark.parametrize("s", SCHEDULES, ids=lambda s: s.name)
def test_prior_matches_marginal_at_t_max(s):
    proc = GaussianCorruption(SPACE, s)
    p = proc.prior(20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = s(torch.tensor(s.t_max, dtype=torch.float64))
    assert abs(float(p.std()) - float(v.sigma)) < 0.02 * float(v.sigma)
    # the dropped alpha x0 term is negligible relative to sigma at t_max
    assert float(v.alpha / v.sigma) < 0.02


def test_edm_loss_weight():
    sigma = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    assert torch.allclose(edm_loss_weight(sigma, 0.5), (sigma**2 + 0.25) / (sigma * 0.5) ** 2)
    proc = GaussianCorruption(SPACE, EDM())
    assert proc.parametrization == "x0" and proc.weighting == "edm" and proc.preconditioning == "edm"
    x0 = torch.zeros(3, 3, dtype=torch.float64)
    t = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    c = proc.corrupt(x0, t)
    raw = torch.ones(3, 3, dtype=torch.float64)
    assert torch.allclose(proc.loss(raw, x0, c).double(), edm_loss_weight(EDM()(t).sigma, 0.5), rtol=1e-5)


def _one_step_case(n: int = 40000):
    """(n, x0, x_t, t, s, exact prediction): n copies of one step from t = 0.6 to s = 0.3, float64."""
    x0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64).expand(n, 3)
    x_t = torch.tensor([0.3, 0.1, -0.2], dtype=torch.float64).expand(n, 3)
    t, s = torch.full((n,), 0.6, dtype=torch.float64), torch.full((n,), 0.3, dtype=torch.float64)
    return n, x0, x_t, t, s, Prediction(raw=x0, x0=x0, eps=None)


@pytest.mark.parametrize("s", [VPLinear(), VPCosine(), VE(), EDM(), Flow()], ids=lambda s: s.name)
def test_reverse_step_is_the_gaussian_posterior(s):
    """Mean and variance of q(x_s | x_t, x0) from the joint Gaussian of (x_s, x_t) given x0."""
    proc = GaussianCorruption(SPACE, s)
    n, x0, x_t, t, sv, pred = _one_step_case()
    out = proc.reverse_step(x_t, t, sv, pred, generator=torch.Generator().manual_seed(0))
    vt, vs = s(t[:1]), s(sv[:1])
    cov_st = vs.sigma**2 * vt.alpha / vs.alpha  # Cov(x_s, x_t | x0)
    mean = vs.alpha * x0[0] + cov_st / vt.sigma**2 * (x_t[0] - vt.alpha * x0[0])
    var = vs.sigma**2 - cov_st**2 / vt.sigma**2
    assert torch.allclose(out.mean(0), mean, atol=5 * float(var.sqrt()) / n**0.5)
    assert torch.allclose(out.var(0), var.expand(3), rtol=0.03)


def test_large_reverse_variance_is_the_forward_steps():
    """variance="large": same posterior mean, variance sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2 (DDPM's beta)."""
    s = VPCosine()
    proc = GaussianCorruption(SPACE, s)
    n, x0, x_t, t, sv, pred = _one_step_case()
    large = proc.reverse_step(x_t, t, sv, pred, generator=torch.Generator().manual_seed(0), variance="large")
    small = proc.reverse_step(x_t, t, sv, pred, generator=torch.Generator().manual_seed(0))
    vt, vs = s(t[:1]), s(sv[:1])
    var = vt.sigma**2 - (vt.alpha / vs.alpha) ** 2 * vs.sigma**2
    assert torch.allclose(large.mean(0), small.mean(0), atol=5 * float(var.sqrt()) / n**0.5)
    assert torch.allclose(large.var(0), var.expand(3), rtol=0.03)


@pytest.mark.parametrize("variance", ["small", "large"])
def test_reverse_step_to_zero_returns_x0(variance):
    proc = GaussianCorruption(SPACE, VPLinear())
    x0 = torch.randn(5, 3, dtype=torch.float64)
    out = proc.reverse_step(torch.randn(5, 3, dtype=torch.float64), torch.full((5,), 0.5, dtype=torch.float64),
                            torch.zeros(5, dtype=torch.float64), Prediction(raw=x0, x0=x0), variance=variance)
    assert torch.allclose(out, x0, atol=1e-12)


def test_unknown_reverse_variance_raises():
    proc = GaussianCorruption(SPACE, VPLinear())
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="variance 'learned' is not one of"):
        proc.reverse_step(x, torch.full((2,), 0.5), torch.full((2,), 0.2), Prediction(raw=x, x0=x), variance="learned")


def test_bad_options_raise():
    with pytest.raises(ValueError, match="parametrization"):
        GaussianCorruption(SPACE, VPLinear(), parametrization="score")
    with pytest.raises(ValueError, match="needs parametrization 'x0'"):
        GaussianCorruption(SPACE, VPLinear(), parametrization="eps", weighting="edm")
    with pytest.raises(polydiff.IncompatibleSpaceError):
        GaussianCorruption(polydiff.Discrete((3,), vocab_size=4), VPLinear())
