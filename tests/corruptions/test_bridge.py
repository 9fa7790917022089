"""Bridge corruptions: endpoints, marginals against the papers, posterior consistency, loss, errors."""
from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff.builtin.bridge import bridge_corruption
from polydiff.corruptions.bridge import (BRIDGES, BridgeCorruption, BrownianBridge, OUBridge, VEBridge,
                                         VPBridge, make_bridge)

F64 = torch.float64
SPACE = polydiff.Continuous((3,))
CASES = {
    "brownian": {"bridge": "brownian", "sigma": 0.7},
    "brownian-symmetric": {"bridge": "brownian", "profile": "symmetric", "beta_min": 0.1, "beta_max": 0.3},
    "vp": {"bridge": "vp"},
    "ve": {"bridge": "ve", "sigma_max": 2.0},
    "ou": {"bridge": "ou"},
}
TIMES = torch.tensor([1e-3, 0.1, 0.25, 0.5, 0.7, 0.9, 0.999, 1.0], dtype=F64)


def _process(case: str, **extra) -> BridgeCorruption:
    return BridgeCorruption(SPACE, field="x", **CASES[case], **extra)


def _pair(n: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    x0 = torch.tensor([[0.8, -1.2, 0.3]], dtype=F64).repeat(n, 1)
    x1 = torch.tensor([[-0.5, 0.4, 1.5]], dtype=F64).repeat(n, 1)
    return x0, x1


# ---------------------------------------------------------------- endpoints

@pytest.mark.parametrize("case", sorted(CASES))
def test_t0_gives_x0_and_pinned_bridges_reach_x1_at_t1(case):
    proc = _process(case)
    x0, x1 = _pair(4)
    g = torch.Generator().manual_seed(0)
    at0 = proc.corrupt(x0, torch.zeros(4, dtype=F64), generator=g, source=x1).x_t
    assert torch.equal(at0, x0)
    at1 = proc.corrupt(x0, torch.ones(4, dtype=F64), generator=g, source=x1).x_t
    if proc.bridge.pinned:
        assert torch.equal(at1, x1)
    else:  # OU: mean e^{-gamma} x0 + (1 - e^{-gamma}) x1, noise c(1) > 0 (SGMSE's prior mismatch)
        coef = proc.coefficients(1.0)
        assert float(coef.c) > 0.1 and abs(float(coef.a) - math.exp(-1.5)) < 1e-15
        assert not torch.allclose(at1, x1)


# ---------------------------------------------------------------- (a, b, c) against the papers

def _i2sb_abc(integral: torch.Tensor, total: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """I2SB eq. 11: sigma_t^2 = int_0^t beta, bar-sigma_t^2 = int_t^1 beta."""
    bar = total - integral
    return bar / (integral + bar), integral / (integral + bar), (integral * bar / (integral + bar)).sqrt()


def _numeric_integral(beta, t: torch.Tensor, points: int = 200001) -> torch.Tensor:
    u = torch.linspace(0, 1, points, dtype=F64)
    cum = torch.cat([torch.zeros(1, dtype=F64), torch.cumulative_trapezoid(beta(u), u)])
    return torch.tensor([float(cum[round(float(ti) * (points - 1))]) for ti in t], dtype=F64)


def test_brownian_constant_rate_is_the_linear_interpolant_plus_bridge_noise():
    coef = BrownianBridge(sigma=0.7).coefficients(TIMES)
    expect = (1 - TIMES, TIMES, 0.7 * (TIMES * (1 - TIMES)).sqrt())
    for got, want in zip((coef.a, coef.b, coef.c), expect):
        assert torch.allclose(got, want, rtol=0, atol=1e-14)


def test_brownian_symmetric_profile_matches_i2sb_with_a_numerical_integral():
    bmin, bmax = 0.1, 0.3

    def beta(u):  # sqrt(beta) linear up to t = 1/2, mirrored
        return (math.sqrt(bmin) + 2 * torch.minimum(u, 1 - u) * (math.sqrt(bmax) - math.sqrt(bmin))) ** 2

    t = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.6, 0.9, 1.0], dtype=F64)
    integral = _numeric_integral(beta, t)
    coef = BrownianBridge(profile="symmetric", beta_min=bmin, beta_max=bmax).coefficients(t)
    for got, want in zip((coef.a, coef.b, coef.c), _i2sb_abc(integral, integral[-1])):
        assert torch.allclose(got, want, rtol=0, atol=1e-9), (got, want)
    mid = coef.c[3] ** 2  # symmetric profile: c(1/2)^2 = S(1) / 4
    assert abs(float(mid) - float(integral[-1]) / 4) < 1e-9


def test_vp_bridge_matches_ddbm_snr_form():
    """DDBM: mean = (SNR_T/SNR_t)(alpha_t/alpha_T) x_T + alpha_t (1 - SNR_T/SNR_t) x0,
    var = sigma_t^2 (1 - SNR_T/SNR_t)."""
    beta_min, beta_d = 0.1, 2.0
    t = TIMES[TIMES > 0]

    def log_alpha(u):  # DDBM's vp_logs
        return -0.25 * beta_d * u**2 - 0.5 * beta_min * u

    def log_snr(u):  # DDBM's vp_logsnr, without the expm1 our code uses
        return -torch.log(torch.exp(0.5 * beta_d * u**2 + beta_min * u) - 1)

    one = torch.ones((), dtype=F64)
    ratio = torch.exp(log_snr(one) - log_snr(t))
    alpha, alpha_1 = torch.exp(log_alpha(t)), torch.exp(log_alpha(one))
    sigma2 = 1 - alpha**2
    coef = VPBridge(beta_min=beta_min, beta_max=beta_min + beta_d).coefficients(t)
    assert torch.allclose(coef.b, ratio * alpha / alpha_1, rtol=1e-10, atol=1e-14)
    assert torch.allclose(coef.a, alpha * (1 - ratio), rtol=1e-10, atol=1e-14)
    assert torch.allclose(coef.c, (sigma2 * (1 - ratio)).clamp(min=0).sqrt(), rtol=1e-8, atol=1e-12)


def test_ve_bridge_matches_ddbm_with_time_scaled_by_sigma_max():
    """DDBM VE (sigma_t = t on [0, T]): mean = (t^2/T^2) x_T + (1 - t^2/T^2) x0, var = t^2 (1 - t^2/T^2)."""
    big_t = 80.0
    tau = big_t * TIMES
    coef = VEBridge(sigma_max=big_t).coefficients(TIMES)
    assert torch.allclose(coef.b, tau**2 / big_t**2, rtol=0, atol=1e-13)
    assert torch.allclose(coef.a, 1 - tau**2 / big_t**2, rtol=0, atol=1e-13)
    assert torch.allclose(coef.c, (tau**2 * (1 - tau**2 / big_t**2)).sqrt(), rtol=1e-12, atol=1e-11)


def test_ou_matches_sgmse_mean_and_variance_and_the_integral_of_its_sde():
    gamma, s_min, s_max = 1.5, 0.05, 0.5
    log_k = math.log(s_max / s_min)
    coef = OUBridge(gamma, s_min, s_max).coefficients(TIMES)
    closed = s_min**2 * ((s_max / s_min) ** (2 * TIMES) - torch.exp(-2 * gamma * TIMES)) * log_k / (gamma + log_k)
    assert torch.allclose(coef.a, torch.exp(-gamma * TIMES), rtol=0, atol=1e-15)
    assert torch.allclose(coef.b, 1 - torch.exp(-gamma * TIMES), rtol=0, atol=1e-15)
    assert torch.allclose(coef.c**2, closed, rtol=1e-12, atol=1e-16)
    # Var(t) = int_0^t e^{-2 gamma (t - u)} g(u)^2 du with g(u) = s_min k^u sqrt(2 log k)
    for t in (0.3, 1.0):
        u = torch.linspace(0, t, 200001, dtype=F64)
        g2 = s_min**2 * (s_max / s_min) ** (2 * u) * 2 * log_k
        integral = torch.trapezoid(torch.exp(-2 * gamma * (t - u)) * g2, u)
        assert abs(float(integral) - float(OUBridge(gamma, s_min, s_max).coefficients(t).c ** 2)) < 1e-9


# ---------------------------------------------------------------- marginal by Monte Carlo

@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("t", [0.25, 0.6])
def test_corrupt_draws_the_marginal(case, t):
    """n = 20000: mean within 5 standard errors (c / sqrt(n)), std within 3% (its SE is 0.5%)."""
    n = 20000
    proc = _process(case)
    x0, x1 = _pair(n)
    out = proc.corrupt(x0, torch.full((n,), t, dtype=F64), generator=torch.Generator().manual_seed(1), source=x1)
    coef = proc.coefficients(t)
    mean = coef.a * x0[0] + coef.b * x1[0]
    assert ((out.x_t.mean(0) - mean).abs() <= 5 * coef.c / math.sqrt(n)).all()
    assert ((out.x_t.std(0) / coef.c - 1).abs() < 0.03).all()
    assert torch.allclose(out.x_t, coef.a * x0 + coef.b * x1 + coef.c * out.noise, atol=1e-12)


# ---------------------------------------------------------------- posterior

PAIRS = [(0.999, 0.9), (0.9, 0.5), (0.6, 0.3), (0.3, 0.01), (1.0, 0.95), (0.2, 0.0)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_posterior_composes_with_the_marginal_in_float64(case):
    """x_t ~ q(x_t | x0, x1), x_s ~ q(x_s | x_t, x0, x1) => x_s ~ q(x_s | x0, x1):
    P a_t + Q = a_s, P b_t + R = b_s, P^2 c_t^2 + V = c_s^2."""
    proc = _process(case)
    t, s = (torch.tensor(v, dtype=F64) for v in zip(*PAIRS))
    ct, cs, post = proc.coefficients(t), proc.coefficients(s), proc.posterior(t, s)
    assert torch.allclose(post.x_t * ct.a + post.x0, cs.a, rtol=0, atol=1e-12)
    assert torch.allclose(post.x_t * ct.b + post.x1, cs.b, rtol=0, atol=1e-12)
    assert torch.allclose(post.x_t**2 * ct.c**2 + post.std**2, cs.c**2, rtol=0, atol=1e-12)
    assert (post.std >= 0).all() and torch.equal(post.std[-1], torch.zeros((), dtype=F64))
    if proc.bridge.pinned:
        assert torch.equal(post.x1, torch.zeros_like(post.x1))  # Markov: x1 adds nothing given x_t


def test_brownian_posterior_is_gaussian_conditioning_of_the_bridge():
    """Independent check: a Brownian bridge of rate sigma^2 has Cov(X_s, X_t) = sigma^2 s (1 - t), s < t."""
    sigma, t, s = 0.7, 0.8, 0.35
    var_t, var_s, cov = sigma**2 * t * (1 - t), sigma**2 * s * (1 - s), sigma**2 * s * (1 - t)
    gain = cov / var_t
    post = BrownianBridge(sigma=sigma).posterior(t, s)
    assert abs(float(post.x_t) - gain) < 1e-14
    assert abs(float(post.x0) - ((1 - s) - gain * (1 - t))) < 1e-14
    assert abs(float(post.std) ** 2 - (var_s - cov**2 / var_t)) < 1e-14


@pytest.mark.parametrize("case", sorted(CASES))
def test_reverse_step_with_the_true_x0_draws_the_earlier_marginal(case):
    """Monte Carlo, n = 20000, x_t ~ q(x_t | x0, x1) then reverse_step(x0): mean within 5 SE, std within 3%."""
    n, t, s = 20000, 0.8, 0.4
    proc = _process(case)
    x0, x1 = _pair(n)
    g = torch.Generator().manual_seed(2)
    x_t = proc.corrupt(x0, torch.full((n,), t, dtype=F64), generator=g, source=x1).x_t
    x_s = proc.reverse_step(x_t, torch.full((n,), t, dtype=F64), torch.full((n,), s, dtype=F64),
                            polydiff.Prediction(raw=x0, x0=x0), generator=g, source=x1)
    cs = proc.coefficients(s)
    assert ((x_s.mean(0) - (cs.a * x0[0] + cs.b * x1[0])).abs() <= 5 * cs.c / math.sqrt(n)).all()
    assert ((x_s.std(0) / cs.c - 1).abs() < 0.03).all()


@pytest.mark.parametrize("case", sorted(CASES))
def test_reverse_step_to_zero_returns_the_prediction(case):
    proc = _process(case)
    x0, x1 = _pair(5)
    x_hat = x0 + 0.1
    x_t = proc.corrupt(x0, torch.full((5,), 0.5, dtype=F64), generator=torch.Generator().manual_seed(0), source=x1).x_t
    out = proc.reverse_step(x_t, torch.full((5,), 0.5, dtype=F64), torch.zeros(5, dtype=F64),
                            polydiff.Prediction(raw=x_hat, x0=x_hat), generator=torch.Generator(), source=x1)
    assert torch.equal(out, x_hat)


# ---------------------------------------------------------------- prior

@pytest.mark.parametrize("case", sorted(CASES))
def test_prior_is_the_source_or_the_ou_marginal_without_the_x0_term(case):
    n = 20000
    proc = _process(case)
    _, x1 = _pair(n)
    prior = proc.prior(n, generator=torch.Generator().manual_seed(3), source=x1.float())
    assert prior.shape == (n, 3) and prior.dtype == torch.float32
    if proc.bridge.pinned:
        assert torch.equal(prior, x1.float())
        return
    c1 = float(proc.coefficients(1.0).c)
    assert ((prior.double().mean(0) - x1[0]).abs() <= 5 * c1 / math.sqrt(n)).all()
    assert ((prior.double().std(0) / c1 - 1).abs() < 0.03).all()


# ---------------------------------------------------------------- training target and loss

@pytest.mark.parametrize("parametrization", ["x0", "ddbm"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_target_round_trips_to_x0(case, parametrization):
    proc = _process(case, parametrization=parametrization)
    x0, x1 = _pair(6)
    t = torch.tensor([0.01, 0.2, 0.5, 0.8, 0.99, 1.0], dtype=F64)
    corrupted = proc.corrupt(x0, t, generator=torch.Generator().manual_seed(4), source=x1)
    back = proc.predict(proc.target(x0, corrupted), corrupted.x_t, t).x0
    assert (back - x0).abs().max() < 1e-10
    assert torch.allclose(proc.loss(proc.target(x0, corrupted), x0, corrupted), torch.zeros(6, dtype=torch.float32))


def test_ddbm_preconditioning_is_the_best_linear_estimate_of_x0_from_x_t():
    """Monte Carlo (n = 200000): with x0, x1 of the stated moments, c_skip = Cov(x0, x_t) / Var(x_t)
    within 0.01 and c_out^2 = the residual variance within 2%."""
    n, t = 200000, 0.4
    sd0, sd1, cov = 1.2, 0.8, 0.5
    proc = BridgeCorruption(polydiff.Continuous((1,)), bridge="vp", parametrization="ddbm", sigma_data=sd0,
                            sigma_source=sd1, data_source_cov=cov)
    g = torch.Generator().manual_seed(5)
    joint = torch.tensor([[sd0**2, cov], [cov, sd1**2]], dtype=F64)
    pairs = torch.randn(n, 2, generator=g, dtype=F64) @ torch.linalg.cholesky(joint).T
    x_t = proc.corrupt(pairs[:, :1], torch.full((n,), t, dtype=F64), generator=g, source=pairs[:, 1:]).x_t
    pre = proc.preconditioning(t)
    c = torch.cov(torch.stack([pairs[:, 0], x_t[:, 0]]))
    assert abs(float(pre.c_skip) - float(c[0, 1] / c[1, 1])) < 0.01
    assert abs(float(pre.c_out) ** 2 / float(c[0, 0] - c[0, 1] ** 2 / c[1, 1]) - 1) < 0.02


@pytest.mark.parametrize("weighting", ["none", "snr", "i2sb", "ddbm"])
def test_loss_is_the_weighted_mean_squared_x0_error(weighting):
    proc = _process("brownian", weighting=weighting)
    x0, x1 = _pair(4)
    t = torch.tensor([0.1, 0.4, 0.7, 0.95], dtype=F64)
    corrupted = proc.corrupt(x0.float(), t.float(), generator=torch.Generator().manual_seed(6), source=x1.float())
    raw = x0.float() + torch.tensor([[1.0, 2.0, 3.0]])  # squared error mean = 14 / 3
    loss = proc.loss(raw, x0.float(), corrupted)
    coef = proc.coefficients(t)
    weight = {"none": torch.ones(4, dtype=F64), "snr": coef.a**2 / coef.c**2, "i2sb": 1 / (0.49 * t),
              "ddbm": 1 / proc.preconditioning(t).c_out ** 2}[weighting]
    assert torch.allclose(loss.double(), 14 / 3 * weight, rtol=1e-5)


def test_sample_t_is_uniform_on_the_configured_range():
    proc = _process("vp", t_min=0.2, t_max=0.6)
    t = proc.sample_t(20000, generator=torch.Generator().manual_seed(7))
    assert t.shape == (20000,) and float(t.min()) >= 0.2 and float(t.max()) <= 0.6
    assert abs(float(t.mean()) - 0.4) < 5 * 0.4 / math.sqrt(12 * 20000)


# ---------------------------------------------------------------- errors

def test_a_bridge_on_a_discrete_space_names_both():
    with pytest.raises(polydiff.IncompatibleSpaceError, match=r"bridge.*'tokens'.*discrete"):
        BridgeCorruption(polydiff.Discrete((4,), vocab_size=5), field="tokens")


@pytest.mark.parametrize("method", ["corrupt", "prior", "reverse_step"])
def test_missing_source_is_a_clear_error(method):
    proc = _process("brownian")
    x0, _ = _pair(2)
    t = torch.full((2,), 0.5, dtype=F64)
    call = {"corrupt": lambda: proc.corrupt(x0, t),
            "prior": lambda: proc.prior(2),
            "reverse_step": lambda: proc.reverse_step(x0, t, 0.5 * t, polydiff.Prediction(raw=x0, x0=x0))}[method]
    with pytest.raises(ValueError, match=rf"field 'x'.*{method} needs the paired source sample x1; pass source="):
        call()


def test_a_source_of_the_wrong_shape_is_a_clear_error():
    x0, x1 = _pair(3)
    with pytest.raises(ValueError, match=r"source of shape \(2, 3\), expected \(3, 3\)"):
        _process("vp").corrupt(x0, torch.full((3,), 0.5, dtype=F64), source=x1[:2])


def test_unknown_bridges_and_foreign_options_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown bridge 'brown'.*\['brownian', 'ou', 've', 'vp'\]"):
        bridge_corruption(SPACE, bridge="brown")
    with pytest.raises(ValueError, match=r"bridge 'vp' does not take options \['gamma'\].*\['beta_min', 'beta_max'\]"):
        make_bridge("vp", gamma=2.0)
    with pytest.raises(ValueError, match="weighting 'edm'"):
        _process("vp", weighting="edm")
    with pytest.raises(ValueError, match="profile 'cosine'"):
        make_bridge("brownian", profile="cosine")
    assert sorted(BRIDGES) == ["brownian", "ou", "ve", "vp"]


def test_the_registered_factory_takes_plain_values_and_binds_the_field():
    proc = bridge_corruption(SPACE, bridge="ou", gamma=2.0, sigma_max=0.4, weighting="snr", field="y")
    assert isinstance(proc.bridge, OUBridge) and proc.bridge.gamma == 2.0 and proc.bridge.sigma_max == 0.4
    assert proc.family == "bridge" and proc.field == "y" and proc.t_start == 1.0


def test_a_bridge_instance_is_used_as_given_and_takes_no_options():
    bridge = VPBridge(beta_min=0.2, beta_max=5.0)
    assert BridgeCorruption(SPACE, bridge=bridge).bridge is bridge
    with pytest.raises(ValueError, match=r"options \['sigma_max'\] apply to a bridge name"):
        BridgeCorruption(SPACE, bridge=bridge, sigma_max=3.0)
