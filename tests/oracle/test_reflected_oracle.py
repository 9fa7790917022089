"""Oracle tests of the reflected family: every reflected sampler recovers point masses near the walls.

``ReflectedPointOracle`` is the exact score of ``sum_i w_i delta(y_i)`` under the reflected
process, so any gap between samples and the points is the sampler's own error. Data: four
atoms in the box [-1, 2]^2, two of them 0.05 box widths from walls, weights 0.1..0.4.
Stated tolerances, at N = 2000 samples and the step counts of ``STEPS``:

* every sample inside the box, checked exactly (min >= low, max <= high) in float32 and float64;
* the fraction of samples nearest each atom matches its weight: chi-square (3 degrees of
  freedom) below 16.27, the 0.001 critical value;
* concentration: the median distance to the nearest atom within 12% of its exact value
  sigma_min sqrt(2 ln 2) = 0.01177 box widths (the t = 0 marginal blurs each atom by
  sigma_min = 0.01; the sampling error of the median at N = 2000 is 1.6%). A score off by
  10% in the reverse SDE moves the median by 17%.
"""
from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff.corruptions.reflected import ReflectedCorruption, reflected_log_kernel
from polydiff.samplers import make_grid, sample_ancestral
from polydiff.samplers.reflected import sample_reflected_ode, sample_reflected_sde
from polydiff.testing.oracles.reflected import ReflectedPointOracle

N = 2000
LOW, HIGH = -1.0, 2.0
UNIT_ATOMS = torch.tensor([[0.05, 0.05], [0.95, 0.30], [0.50, 0.95], [0.40, 0.50]], dtype=torch.float64)
WEIGHTS = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
CHI2_CRITICAL = 16.27
"""Chi-square critical value, 3 degrees of freedom, level 0.001."""
EXACT_MEDIAN = 0.01 * math.sqrt(2 * math.log(2))
"""Median distance (box widths) of a 2-D Gaussian of standard deviation sigma_min = 0.01 from its centre."""
MEDIAN_TOL = 0.12
"""Stated relative tolerance on the median distance."""
STEPS = {"sde": 100, "pc": 50, "ode": 30, "ode-euler": 40, "ancestral": 100}
"""Grid intervals per sampler (NFE: sde and ancestral N, pc 2N, ode 2N, ode-euler N)."""
SAMPLERS = {"sde": (sample_reflected_sde, {}), "pc": (sample_reflected_sde, {"corrector_steps": 1}),
            "ode": (sample_reflected_ode, {}), "ode-euler": (sample_reflected_ode, {"method": "euler"}),
            "ancestral": (sample_ancestral, {})}


def _setup():
    atoms = LOW + (HIGH - LOW) * UNIT_ATOMS
    processes = {"x": ReflectedCorruption(polydiff.Bounded((2,), LOW, HIGH), field="x")}
    return atoms, processes, ReflectedPointOracle(atoms, WEIGHTS, LOW, HIGH)


def test_oracle_score_is_the_gradient_of_the_log_marginal():
    atoms, processes, oracle = _setup()
    process = processes["x"]
    g = torch.Generator().manual_seed(0)
    x = process.prior(300, generator=g, dtype=torch.float64)
    for t_value in (0.05, 0.4, 0.75, 1.0):  # sigma from 0.013 (images) to 2 (series)
        t = torch.full((300,), t_value, dtype=torch.float64)
        u = process.to_unit(x).requires_grad_(True)
        sigma = process.sigma(t)[:, None, None]
        log_k = reflected_log_kernel(u[:, None, :], process.to_unit(atoms)[None], sigma).sum(-1)
        log_p = torch.logsumexp(torch.log(WEIGHTS)[None] + log_k, dim=1)
        (grad,) = torch.autograd.grad(log_p.sum(), u)
        pred = oracle.predict_fn(processes)({"x": x}, t)["x"]
        assert torch.allclose(pred.score * process.width, grad, rtol=1e-9, atol=1e-9), t_value
        assert torch.allclose(pred.raw, process.sigma(t)[:, None] * grad, rtol=1e-9, atol=1e-9)
        r = torch.softmax(torch.log(WEIGHTS)[None] + log_k.detach(), dim=1)
        assert torch.allclose(pred.x0, r @ atoms, rtol=0, atol=1e-12)


def test_oracle_x0_denoises_to_the_atoms_at_small_noise():
    atoms, processes, oracle = _setup()
    x = atoms + 1e-3 * torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    pred = oracle.predict_fn(processes)({"x": x}, torch.zeros(4, dtype=torch.float64))["x"]
    assert torch.allclose(pred.x0, atoms, atol=1e-12)


def test_oracle_rejects_points_outside_the_box_and_other_processes():
    with pytest.raises(ValueError, match="inside the box"):
        ReflectedPointOracle([[0.5, 1.5]], None, 0.0, 1.0)
    oracle = ReflectedPointOracle([[0.5, 0.5]], None, 0.0, 1.0)
    other = {"x": ReflectedCorruption(polydiff.Bounded((2,), -1.0, 1.0), field="x")}
    with pytest.raises(ValueError, match=r"box \[0.0, 1.0\]"):
        oracle.predict_fn(other)({"x": torch.zeros(2, 2)}, torch.ones(2))
    gaussian = {"x": polydiff.GaussianCorruption(polydiff.Continuous((2,)), polydiff.VE())}
    with pytest.raises(ValueError, match="reflected-family"):
        oracle.predict_fn(gaussian)({"x": torch.zeros(2, 2)}, torch.ones(2))


def test_oracle_sample_draws_atoms_with_their_weights():
    oracle = ReflectedPointOracle(UNIT_ATOMS, WEIGHTS)
    draws = oracle.sample(20000, generator=torch.Generator().manual_seed(1))
    idx = torch.cdist(draws, UNIT_ATOMS).argmin(1)
    assert (torch.bincount(idx, minlength=4) / 20000.0 - WEIGHTS).abs().max() < 0.015


def _run(label: str, dtype: torch.dtype):
    atoms, processes, oracle = _setup()
    sampler, options = SAMPLERS[label]
    g = torch.Generator().manual_seed(2)
    x = {"x": processes["x"].prior(N, generator=g, dtype=dtype)}
    grid = make_grid("uniform", processes, STEPS[label])
    return atoms, sampler(oracle.predict_fn(processes), processes, x, grid, generator=g, **options)


@pytest.mark.parametrize("label, dtype", [("sde", torch.float32), ("sde", torch.float64), ("ode", torch.float32),
                                          ("ode", torch.float64), ("pc", torch.float32),
                                          ("ode-euler", torch.float32), ("ancestral", torch.float64)])
def test_samplers_recover_point_masses_near_the_walls(label, dtype):
    atoms, out = _run(label, dtype)
    x = out.state["x"]
    assert x.dtype == dtype and x.shape == (N, 2)
    assert float(x.min()) >= LOW and float(x.max()) <= HIGH
    distance = torch.cdist(x.double(), atoms)
    counts = torch.bincount(distance.argmin(1), minlength=4).double()
    expected = N * WEIGHTS
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < CHI2_CRITICAL, (label, (counts / N).tolist())
    median = float(distance.min(1).values.median()) / (HIGH - LOW)
    assert abs(median / EXACT_MEDIAN - 1) < MEDIAN_TOL, (label, median)
