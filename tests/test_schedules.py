"""Schedules: closed forms, t = 0 convention, log-SNR inverse, derivatives (float64)."""
from __future__ import annotations

import math

import pytest
import torch

from polydiff.schedules import EDM, VE, Flow, VPCosine, VPLinear

ALL = [VPLinear(), VPCosine(), VE(), EDM(), Flow()]
T = torch.linspace(0.01, 0.99, 41, dtype=torch.float64)


@pytest.mark.parametrize("s", ALL, ids=lambda s: s.name)
def test_clean_at_t0(s):
    v = s(torch.zeros(3, dtype=torch.float64))
    assert torch.equal(v.alpha, torch.ones(3, dtype=torch.float64)) and torch.equal(v.sigma, torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("s", ALL, ids=lambda s: s.name)
def test_derivatives_match_autograd(s):
    t = T.clone().requires_grad_(True)
    v = s(t)
    d_alpha, d_sigma = (torch.autograd.grad(y.sum(), t, retain_graph=True, allow_unused=True,
                                            materialize_grads=True)[0] if y.requires_grad else torch.zeros_like(T)
                        for y in (v.alpha, v.sigma))
    assert torch.allclose(v.d_alpha, d_alpha, rtol=1e-9, atol=1e-12)
    assert torch.allclose(v.d_sigma, d_sigma, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("s", ALL, ids=lambda s: s.name)
def test_d_log_snr_finite_difference_and_negative(s):
    h = 1e-6
    fd = (s(T + h).log_snr - s(T - h).log_snr) / (2 * h)
    assert torch.allclose(s(T).d_log_snr, fd, rtol=1e-5)
    assert (s(T).d_log_snr < 0).all()


@pytest.mark.parametrize("s", ALL, ids=lambda s: s.name)
def test_t_from_log_snr_inverts(s):
    assert torch.allclose(s.t_from_log_snr(s(T).log_snr), T, atol=1e-9)


@pytest.mark.parametrize("s", [VPLinear(), VPCosine()], ids=lambda s: s.name)
def test_variance_preserving(s):
    v = s(T)
    assert torch.allclose(v.alpha**2 + v.sigma**2, torch.ones_like(T), atol=1e-12)


def test_closed_forms():
    vp = VPLinear(0.1, 20.0)
    assert torch.allclose(vp(T).alpha, torch.exp(-0.25 * T**2 * 19.9 - 0.05 * T))
    cos = VPCosine()
    assert math.isclose(float(cos(torch.tensor(1.0, dtype=torch.float64)).log_snr), -15.0, abs_tol=1e-9)
    ve = VE(0.01, 80.0)
    assert torch.allclose(ve(T).sigma, 0.01 * (8000.0**T))
    edm = EDM()
    assert math.isclose(float(edm(torch.tensor(1.0, dtype=torch.float64)).sigma), 80.0, rel_tol=1e-12)
    assert math.isclose(float(edm.values(torch.tensor(0.0, dtype=torch.float64))[1]), 0.002, rel_tol=1e-12)
    fl = Flow()
    assert torch.allclose(fl(T).alpha, 1 - T) and torch.allclose(fl(T).sigma, T)


@pytest.mark.parametrize("s", ALL, ids=lambda s: s.name)
def test_prior_std_is_sigma_at_t_max(s):
    assert math.isclose(s.prior_std(), float(s(torch.tensor(s.t_max, dtype=torch.float64)).sigma))


@pytest.mark.parametrize("s", ALL, ids=lambda s: s.name)
def test_sample_t_in_range(s):
    t = s.sample_t(4096, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert t.shape == (4096,) and (t > 0).all() and (t <= 1).all()


def test_edm_training_times_are_lognormal_in_sigma():
    s = EDM()
    t = s.sample_t(20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    log_sigma = s(t).sigma.log()
    assert abs(float(log_sigma.median()) - s.p_mean) < 0.05


def test_invalid_arguments_raise():
    for bad in (lambda: VPLinear(1.0, 0.5), lambda: VPCosine(5.0, -5.0), lambda: VE(1.0, 0.1), lambda: EDM(1.0, 0.5)):
        with pytest.raises(ValueError):
            bad()
