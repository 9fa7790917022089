"""Bits/dim against the closed form: Gaussian data with its exact denoiser.

For x0 ~ N(mu, Sigma) the exact E[x0 | x_t] is known (a one-component
GaussianMixtureOracle), so the PF-ODE likelihood must equal -log N(x0; mu, Sigma) / (D ln 2)
up to the solver's error and the t_min / prior truncation, and the continuous-time ELBO
must bound it from above with a vanishing gap (up to Monte Carlo error). Stated
tolerances (bits/dim, D = 2): PF-ODE with exact divergence, 32 RK4 steps: mean error
< 0.005 and max error < 0.03 over 48 points; Hutchinson: the batch mean within 4 standard
errors (+0.005) of the exact mean; ELBO: mean(ELBO - exact) in [-4 SE, 4 SE + 0.01].
"""
from __future__ import annotations

import math

import pytest
import torch

from polydiff.builtin.corruptions import gaussian
from polydiff.errors import IncompatibleSpaceError
from polydiff.evaluation.likelihood import elbo_bits_per_dim, pf_ode_bits_per_dim
from polydiff.spaces import Continuous
from polydiff.testing.oracles import GaussianMixtureOracle

MU = torch.tensor([0.5, -0.3], dtype=torch.float64)
CHOL = torch.tensor([[0.8, 0.0], [0.3, 0.4]], dtype=torch.float64)
SIGMA = CHOL @ CHOL.T   # correlated, so the Jacobian has off-diagonal terms (Hutchinson variance)


def _setup(schedule: str, n: int, seed: int = 0):
    oracle = GaussianMixtureOracle([1.0], MU[None], SIGMA[None])
    x0 = oracle.sample(n, generator=torch.Generator().manual_seed(seed))
    processes = {"x": gaussian(Continuous((2,)), schedule=schedule)}
    exact = -torch.distributions.MultivariateNormal(MU, SIGMA).log_prob(x0) / (2 * math.log(2))
    return oracle.predict_fn(processes), processes, {"x": x0}, exact


@pytest.mark.parametrize("schedule", ["vp-linear", "edm", "ve", "flow"])
def test_pf_ode_exact_divergence_matches_closed_form(schedule):
    predict, processes, x0, exact = _setup(schedule, 48)
    bpd = pf_ode_bits_per_dim(predict, processes, x0, steps=32)
    assert bpd.shape == (48,)
    err = bpd - exact
    assert err.mean().abs() < 0.005 and err.abs().max() < 0.03, (float(err.mean()), float(err.abs().max()))


@pytest.mark.parametrize("schedule", ["vp-cosine", "edm"])
def test_pf_ode_hutchinson_is_unbiased(schedule):
    predict, processes, x0, exact = _setup(schedule, 256, seed=1)
    bpd = pf_ode_bits_per_dim(predict, processes, x0, steps=16, exact_divergence=False, n_probes=2,
                              generator=torch.Generator().manual_seed(2))
    diff = bpd - exact
    standard_error = float(diff.std()) / math.sqrt(len(diff))
    assert diff.std() > 1e-3, "Hutchinson estimates should vary across probes"
    assert abs(float(diff.mean())) < 4 * standard_error + 0.01


@pytest.mark.parametrize("schedule", ["vp-linear", "edm"])
def test_elbo_bounds_the_likelihood_tightly_for_the_exact_denoiser(schedule):
    predict, processes, x0, exact = _setup(schedule, 2048, seed=3)
    bpd = elbo_bits_per_dim(predict, processes, x0, n_t=64, generator=torch.Generator().manual_seed(4))
    gap = bpd - exact
    standard_error = float(gap.std()) / math.sqrt(len(gap))
    assert -4 * standard_error < float(gap.mean()) < 4 * standard_error + 0.01, (float(gap.mean()), standard_error)


def test_elbo_gap_is_visible_for_a_wrong_denoiser():
    predict, processes, x0, exact = _setup("vp-linear", 512, seed=5)
    wrong = GaussianMixtureOracle([1.0], (MU + 0.5)[None], SIGMA[None]).predict_fn(processes)
    g = torch.Generator().manual_seed(6)
    good = elbo_bits_per_dim(predict, processes, x0, generator=g).mean()
    bad = elbo_bits_per_dim(wrong, processes, x0, generator=g).mean()
    assert bad > good + 0.1


def test_dequantization_adds_minus_log2_of_the_bin_width():
    predict, processes, x0, _ = _setup("flow", 32, seed=7)
    plain = pf_ode_bits_per_dim(predict, processes, x0, steps=12)
    binned = pf_ode_bits_per_dim(predict, processes, x0, steps=12, dequantization=1e-3,
                                 generator=torch.Generator().manual_seed(0))
    assert torch.allclose(binned - plain, torch.full_like(plain, -math.log2(1e-3)), atol=0.01)


def test_non_gaussian_process_is_rejected():
    predict, processes, x0, _ = _setup("edm", 4)

    class Masked:
        family, name = "masked", "masked"

    with pytest.raises(IncompatibleSpaceError, match="family 'masked'"):
        elbo_bits_per_dim(predict, {"x": Masked()}, x0)
