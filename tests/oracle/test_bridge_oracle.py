"""Bridge samplers with the exact denoiser of paired Gaussians reproduce the posterior x0 | x1.

Data: x0 ~ N(mean, cov) in 2-D, x1 = A x0 + e with a non-trivial A and correlated noise.
For a few fixed x1, each replicated ``N_PER`` times, every bridge is sampled with
``bridge_sde`` (eta = 1 and 0.5), ``bridge_ode`` and the generic ancestral sampler on
``STEPS`` steps of the grid t_i = (i / STEPS)^2 (dense near t = 0, where the final
x0_hat step loses the variance Cov(x0 | x_{t_1}, x1)).

Tolerances. With the oracle every sampler is linear-Gaussian, so its output law for one x1
is Gaussian with a mean and covariance that ``sampler_law`` propagates exactly (float64)
through the DBIM steps. Each test checks
  * Monte Carlo: sample mean and covariance within 4.5 standard errors of that law
    (SE of a mean sqrt(S_ii / n), of a covariance entry sqrt((S_ii S_jj + S_ij^2) / n),
    n = N_PER = 8000);
  * discretisation: the law's mean equals the posterior mean (1e-9: every step keeps the
    marginal mean) and its covariance is within ``ALLOWANCE`` of the posterior's (the
    first-order variance loss of the steps; measured 0.0135 / 0.0102 at most over these
    bridges for the SDE / ODE, allowance 0.016 / 0.013, and halving with twice the steps,
    ``test_discretisation_error_is_first_order``);
so the samples reproduce the posterior within 4.5 SE + ALLOWANCE.
"""
from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff.corruptions.bridge import BridgeCorruption
from polydiff.samplers import sample_ancestral
from polydiff.samplers.bridge import sample_bridge_ode, sample_bridge_sde
from polydiff.testing.oracles.bridge import PairedGaussianOracle

F64 = torch.float64
SPACE = polydiff.Continuous((2,))
ORACLE = PairedGaussianOracle(mean=[0.5, -0.3], cov=[[1.0, 0.6], [0.6, 0.8]], A=[[0.8, 0.3], [-0.2, 0.6]],
                              noise_cov=[[0.15, 0.05], [0.05, 0.2]])
X1 = torch.tensor([[0.4, -0.2], [1.5, 0.5], [-1.0, -1.0]], dtype=F64)
N_PER, STEPS, K_SE = 8000, 100, 4.5
ALLOWANCE = {"sde": 0.016, "ode": 0.013}
BRIDGES = {
    "brownian": {"bridge": "brownian"},
    "brownian-symmetric": {"bridge": "brownian", "profile": "symmetric"},
    "vp": {"bridge": "vp"},
    "ve": {"bridge": "ve", "sigma_max": 2.0},
    "ou": {"bridge": "ou"},
}
SAMPLERS = {  # name -> (function, options, DBIM eta of its law, allowance key)
    "bridge_sde": (sample_bridge_sde, {}, 1.0, "sde"),
    "bridge_ode": (sample_bridge_ode, {}, 0.0, "ode"),
    "ancestral": (sample_ancestral, {}, 1.0, "sde"),
}
EYE = torch.eye(2, dtype=F64)


def _grid(steps: int = STEPS) -> torch.Tensor:
    return torch.linspace(1.0, 0.0, steps + 1, dtype=F64) ** 2


def _process(case: str, **extra) -> BridgeCorruption:
    return BridgeCorruption(SPACE, field="x", **{**BRIDGES[case], **extra})


def _start_law(process: BridgeCorruption, x1: torch.Tensor, exact: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The law of the state at t = 1: the prior N(x1, c_1^2 I), or the exact marginal a_1 x0 + b_1 x1 + c_1 z."""
    c1 = process.coefficients(1.0)
    if not exact:
        return x1.clone(), c1.c**2 * EYE
    m, s = ORACLE.posterior(x1[None])
    return c1.a * m[0] + c1.b * x1, c1.a**2 * s + c1.c**2 * EYE


def sampler_law(process: BridgeCorruption, x1: torch.Tensor, grid: torch.Tensor, eta: float,
                start: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean (D,) and covariance (D, D) of a DBIM sampler's output with the oracle, for one x1.

    x0_hat = G x + h with G = a S (a^2 S + c^2 I)^{-1}; a DBIM step is x_s = L x + const +
    rho eps with L = k I + (a_s - k a_t) G, so mean <- L mean + const, cov <- L cov L^T + rho^2 I.
    """
    m, s = ORACLE.posterior(x1[None])
    m = m[0]
    coef, std = process.coefficients(grid), process.posterior(grid[:-1], grid[1:]).std
    mean, cov = start
    for i in range(len(grid) - 1):
        a, b, c = float(coef.a[i]), float(coef.b[i]), float(coef.c[i])
        gain = a * s @ torch.linalg.inv(a * a * s + c * c * EYE) if a > 0 else 0 * EYE
        h = m - gain @ (a * m + b * x1)
        if float(grid[i + 1]) == 0:
            return gain @ mean + h, gain @ cov @ gain.T
        a_s, b_s, c_s = float(coef.a[i + 1]), float(coef.b[i + 1]), float(coef.c[i + 1])
        if c == 0:  # booting noise
            lin, const, var = a_s * gain, a_s * h + b_s * x1, c_s**2
        else:
            rho = eta * float(std[i])
            k = math.sqrt(max(c_s**2 - rho**2, 0.0)) / c
            lin, const, var = k * EYE + (a_s - k * a) * gain, (a_s - k * a) * h + (b_s - k * b) * x1, rho**2
        mean, cov = lin @ mean + const, lin @ cov @ lin.T + var * EYE
    raise AssertionError("grid must end at 0")


def _sample(function, options, process: BridgeCorruption, exact_start: bool, seed: int) -> torch.Tensor:
    """Run a sampler on N_PER copies of each x1 (float32 state); returns (len(X1) * N_PER, 2) float64."""
    g = torch.Generator().manual_seed(seed)
    x1 = X1.repeat_interleave(N_PER, 0).float()
    processes = {"x": process}
    if exact_start:
        m, s = ORACLE.posterior(X1)
        z = torch.randn(len(x1), 2, generator=g, dtype=F64)
        x0 = m.repeat_interleave(N_PER, 0) + z @ torch.linalg.cholesky(s).T
        start = process.corrupt(x0.float(), torch.ones(len(x1)), generator=g, source=x1).x_t
    else:
        start = process.prior(len(x1), generator=g, source=x1)
    predict = ORACLE.predict_fn(processes, {"x": x1})
    out = function(predict, processes, {"x": start}, _grid(), generator=g, source={"x": x1}, **options)
    return out.state["x"].double()


def _assert_close_to_law(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, what: str) -> None:
    n = samples.shape[0]
    se_mean = (cov.diagonal() / n).sqrt()
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov**2) / n).sqrt()
    gap_mean, gap_cov = (samples.mean(0) - mean).abs(), (torch.cov(samples.T) - cov).abs()
    assert (gap_mean <= K_SE * se_mean).all(), f"{what}: mean off by {gap_mean.tolist()} (SE {se_mean.tolist()})"
    assert (gap_cov <= K_SE * se_cov).all(), f"{what}: covariance off by {gap_cov.tolist()} (SE {se_cov.tolist()})"


def _check_sampler(process, function, options, eta, allowance, exact_start, seed, what, mean_tol=1e-9):
    samples = _sample(function, options, process, exact_start, seed)
    for j, x1 in enumerate(X1):
        block = samples[j * N_PER:(j + 1) * N_PER]
        m, s = ORACLE.posterior(x1[None])
        law_mean, law_cov = sampler_law(process, x1, _grid(), eta, _start_law(process, x1, exact_start))
        _assert_close_to_law(block, law_mean, law_cov, f"{what}, x1 = {x1.tolist()}")
        assert (law_mean - m[0]).abs().max() < mean_tol, f"{what}: the exact law's mean is biased"
        assert (law_cov - s).abs().max() < allowance, f"{what}: discretisation error above the allowance"


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("case", sorted(BRIDGES))
def test_samplers_reproduce_the_posterior(case, sampler):
    """OU is not pinned: it starts from its exact t = 1 marginal here (see the prior-mismatch test)."""
    function, options, eta, key = SAMPLERS[sampler]
    process = _process(case)
    _check_sampler(process, function, options, eta, ALLOWANCE[key], not process.bridge.pinned,
                   seed=sorted(BRIDGES).index(case), what=f"{case} with {sampler}")


def test_dbim_with_intermediate_eta_reproduces_the_posterior():
    _check_sampler(_process("brownian"), sample_bridge_sde, {"eta": 0.5}, 0.5, ALLOWANCE["sde"], False, seed=11,
                   what="brownian with bridge_sde eta = 0.5")


def test_ou_from_its_prior_shows_the_mismatch_unless_gamma_is_large():
    """The OU prior N(x1, c_1^2 I) drops e^{-gamma} (x0 - x1): at gamma = 1.5 the ODE's output
    mean is off the posterior's by more than 0.03 (and the samples follow that biased law);
    at gamma = 8 (e^{-8} = 3e-4) the prior is the marginal up to 1e-3 and the posterior is
    reproduced (the stiffer process loses more variance per step: 0.024 measured, allowance 0.03)."""
    process = _process("ou")
    samples = _sample(sample_bridge_ode, {}, process, False, seed=12)
    for j, x1 in enumerate(X1):
        law_mean, law_cov = sampler_law(process, x1, _grid(), 0.0, _start_law(process, x1, False))
        _assert_close_to_law(samples[j * N_PER:(j + 1) * N_PER], law_mean, law_cov, "ou gamma 1.5 from its prior")
        assert (law_mean - ORACLE.posterior(x1[None])[0][0]).abs().max() > 0.03
    _check_sampler(_process("ou", gamma=8.0), sample_bridge_sde, {}, 1.0, 0.03, False, seed=13,
                   what="ou gamma 8 from its prior", mean_tol=1e-3)


@pytest.mark.parametrize("case", sorted(BRIDGES))
def test_discretisation_error_is_first_order(case):
    """The exact laws' covariance error at 2 * STEPS is at most 0.65 of that at STEPS (first order: 0.5)."""
    process, x1 = _process(case), X1[1]
    s = ORACLE.posterior(x1[None])[1]
    for eta in (1.0, 0.0):
        errors = []
        for steps in (STEPS, 2 * STEPS):
            grid = _grid(steps)
            law_cov = sampler_law(process, x1, grid, eta, _start_law(process, x1, not process.bridge.pinned))[1]
            errors.append(float((law_cov - s).abs().max()))
        assert errors[1] < 0.65 * errors[0], f"{case} eta={eta}: errors {errors}"


# ---------------------------------------------------------------- the oracle itself

def test_posterior_matches_the_information_form_and_regression_on_samples():
    x1 = X1
    m, s = ORACLE.posterior(x1)
    noise_inv = torch.linalg.inv(ORACLE.noise_cov)
    precision = torch.linalg.inv(ORACLE.cov) + ORACLE.A.T @ noise_inv @ ORACLE.A
    s_info = torch.linalg.inv(precision)
    m_info = (s_info @ (torch.linalg.inv(ORACLE.cov) @ ORACLE.mean[:, None] + ORACLE.A.T @ noise_inv @ x1.T)).T
    assert torch.allclose(s, s_info, atol=1e-12) and torch.allclose(m, m_info, atol=1e-12)
    # Monte Carlo, n = 200000: least squares of x0 on (x1, 1) recovers the gain and S (SE < 0.003)
    x0, x1s = ORACLE.sample_pairs(200000, torch.Generator().manual_seed(20))
    design = torch.cat([x1s, torch.ones(len(x1s), 1, dtype=F64)], dim=1)
    coef = torch.linalg.lstsq(design, x0).solution
    assert torch.allclose(coef[:2].T, ORACLE.gain, atol=0.01)
    assert torch.allclose(torch.cov((x0 - design @ coef).T), s, atol=0.01)


@pytest.mark.parametrize("case", ["brownian", "vp", "ou"])
def test_denoiser_is_the_conditional_mean(case):
    """In float64 it equals the information-form posterior mean of x0 ~ N(m, S) seen through
    y = x_t - b x1 = a x0 + c z; at t = 1 (pinned: a = c = 0) it is m."""
    process = _process(case)
    x1 = X1[1:2].repeat(4, 1)
    m, s = ORACLE.posterior(x1)
    t = torch.tensor([0.05, 0.4, 0.9, 1.0], dtype=F64)
    coef = process.coefficients(t)
    x_t = torch.tensor([[0.3, -0.7]], dtype=F64).repeat(4, 1)
    got = ORACLE.predict_fn({"x": process}, {"x": x1})({"x": x_t}, t)["x"].x0
    for i in range(4):
        a, b, c = float(coef.a[i]), float(coef.b[i]), float(coef.c[i])
        if c == 0:
            assert torch.allclose(got[i], m[i], atol=1e-12)
            continue
        prec = torch.linalg.inv(s) + a * a / c**2 * EYE
        want = torch.linalg.solve(prec, torch.linalg.solve(s, m[i]) + a * (x_t[i] - b * x1[i]) / c**2)
        assert torch.allclose(got[i], want, atol=1e-10), (case, float(t[i]))


def test_oracle_rejects_non_bridge_processes_and_mismatched_batches():
    gaussian = {"x": polydiff.GaussianCorruption(SPACE, polydiff.VPCosine(), field="x")}
    with pytest.raises(ValueError, match="needs a bridge process"):
        ORACLE.predict_fn(gaussian, {"x": X1})
    predict = ORACLE.predict_fn({"x": _process("vp")}, {"x": X1})
    with pytest.raises(ValueError, match=r"does not match the source"):
        predict({"x": torch.zeros(2, 2, dtype=F64)}, torch.full((2,), 0.5))
