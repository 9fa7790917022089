"""The uniform discrete process: forward marginals, the CTMC, exact posteriors, the ELBO integrand."""
from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff.corruptions.base import Corrupted
from polydiff.corruptions.uniform import UniformCorruption, ctmc_elbo_integrand
from polydiff.schedules import MASKING_SCHEDULES

V = 5
SPACE = polydiff.Discrete((3,), vocab_size=V)


def _q(alpha: float, v: int = V) -> torch.Tensor:
    """q(x_t = row | x0 = column)... symmetric: alpha I + (1 - alpha) / V, float64 (V, V)."""
    return alpha * torch.eye(v, dtype=torch.float64) + (1 - alpha) / v


def test_uniform_on_a_continuous_space_names_both():
    with pytest.raises(polydiff.IncompatibleSpaceError) as info:
        UniformCorruption(polydiff.Bounded((2,), -1.0, 1.0), field="pos")
    text = str(info.value)
    assert "'uniform'" in text and "'pos'" in text and "bounded" in text and "discrete" in text


@pytest.mark.parametrize("name", sorted(MASKING_SCHEDULES))
def test_forward_marginal_is_alpha_onehot_plus_uniform(name):
    proc = UniformCorruption(SPACE, name)
    n, t = 40000, 0.6
    x0 = torch.full((n, 3), 2)
    x_t = proc.corrupt(x0, torch.full((n,), t), generator=torch.Generator().manual_seed(0)).x_t
    alpha = float(proc.alpha(torch.tensor(t)))
    freq = torch.bincount(x_t.flatten(), minlength=V).double() / x_t.numel()
    expected = _q(alpha)[:, 2]
    # 120000 tokens: each frequency has standard error <= 0.0015; 4 standard errors
    assert float((freq - expected).abs().max()) < 4 * math.sqrt(0.25 / x_t.numel())


def test_the_rate_matrix_generates_the_closed_form_transition():
    """q(x_t | x_s) = expm(int_s^t beta (11^T / V - I)) = a I + (1 - a) 11^T / V, a = alpha_t / alpha_s."""
    proc = UniformCorruption(SPACE, "cosine")
    s, t = 0.2, 0.7
    grid = torch.linspace(s, t, 20001, dtype=torch.float64)
    integral = torch.trapezoid(proc.beta(grid), grid)
    generator = integral * (torch.ones(V, V, dtype=torch.float64) / V - torch.eye(V, dtype=torch.float64))
    a = float(proc.alpha(torch.tensor(t)) / proc.alpha(torch.tensor(s)))
    assert torch.allclose(torch.linalg.matrix_exp(generator), _q(a), atol=1e-8)


def _brute_posterior(probs: torch.Tensor, x: int, alpha_t: float, alpha_s: float) -> torch.Tensor:
    """sum_x0 p(x0) q(x_s | x_t = x, x0) by Bayes over explicit V x V matrices."""
    step = _q(alpha_t / alpha_s)  # step[x_t, x_s] = q(x_t | x_s)
    marg_s, marg_t = _q(alpha_s), _q(alpha_t)  # [z, x0] = q(z | x0)
    out = torch.zeros(V, dtype=torch.float64)
    for x0 in range(V):
        out += probs[x0] * step[x, :] * marg_s[:, x0] / marg_t[x, x0]
    return out


def test_posterior_step_equals_brute_force_bayes():
    proc = UniformCorruption(SPACE, "log-linear")
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(4, 3, V, generator=g, dtype=torch.float64), -1)
    x_t = torch.randint(V, (4, 3), generator=g)
    t, s = torch.tensor([0.9, 0.5, 0.3, 0.05]), torch.tensor([0.6, 0.2, 0.0, 0.01])
    weights = proc.posterior_weights(x_t, t, s, probs)
    weights = weights / weights.sum(-1, keepdim=True)
    for b in range(4):
        a_t, a_s = float(proc.alpha(t[b])), float(proc.alpha(s[b]))
        for i in range(3):
            expected = _brute_posterior(probs[b, i], int(x_t[b, i]), a_t, a_s)
            assert torch.allclose(weights[b, i], expected, atol=1e-12), (b, i)
    assert torch.allclose(weights[2], probs[2], atol=1e-12), "at s = 0 the step draws x0 from the prediction"


def test_reverse_step_draws_follow_the_posterior():
    proc = UniformCorruption(SPACE, "linear")
    n = 40000
    probs = torch.tensor([0.5, 0.3, 0.1, 0.1, 0.0], dtype=torch.float64).expand(n, 3, V)
    x_t = torch.full((n, 3), 4)
    t, s = torch.full((n,), 0.5), torch.full((n,), 0.3)
    draws = proc.reverse_step(x_t, t, s, polydiff.Prediction(raw=probs.log(), x0=probs),
                              generator=torch.Generator().manual_seed(1))
    freq = torch.bincount(draws.flatten(), minlength=V).double() / draws.numel()
    expected = _brute_posterior(probs[0, 0], 4, 0.5, 0.7)
    assert float((freq - expected / expected.sum()).abs().max()) < 4 * math.sqrt(0.25 / draws.numel())


def _brute_rates(proc: UniformCorruption, p: torch.Tensor, x: int, x0: int, t: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """R(x -> y | x0) = Q(y -> x) q_t(y | x0) / q_t(x | x0) and R_theta = sum_x0 p(x0) R(x -> y | x0)."""
    alpha, beta = float(proc.alpha(torch.tensor(t))), float(proc.beta(torch.tensor(t)))
    marg = _q(alpha)
    rate_in = beta / V  # Q(y -> x) for y != x

    def conditional(c: int) -> torch.Tensor:
        return rate_in * marg[:, c] / marg[x, c]

    return sum(p[c] * conditional(c) for c in range(V)), conditional(x0)


def _mp_integrand(proc: UniformCorruption, p: torch.Tensor, x: int, x0: int, t: float) -> float:
    """The same Bayes rates and sum_{y != x} [R_theta - R log R_theta + R log R - R] in 50-digit arithmetic."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    alpha = mpmath.mpf(float(proc.alpha(torch.tensor(t, dtype=torch.float64))))
    beta = -mpmath.mpf(float(proc.schedule.d_alpha(torch.tensor(t, dtype=torch.float64)))) / alpha

    def q(z: int, c: int):
        return alpha * (1 if z == c else 0) + (1 - alpha) / V

    total = mpmath.mpf(0)
    for y in (y for y in range(V) if y != x):
        true = beta / V * q(y, x0) / q(x, x0)
        model = sum(mpmath.mpf(float(p[c])) * beta / V * q(y, c) / q(x, c) for c in range(V))
        total += model - true * mpmath.log(model) + true * mpmath.log(true) - true
    return float(total)


def _example(proc: UniformCorruption):
    g = torch.Generator().manual_seed(2)
    raw = torch.randn(6, 3, V, generator=g, dtype=torch.float64)
    x0 = torch.randint(V, (6, 3), generator=g)
    t = torch.tensor([0.02, 0.2, 0.5, 0.8, 0.95, 0.999], dtype=torch.float64)
    x_t = proc.corrupt(x0, t, generator=g).x_t
    x_t[0] = x0[0]  # make sure both cases x_t = x0 and x_t != x0 occur
    return raw, x0, t, x_t


@pytest.mark.parametrize("name", sorted(MASKING_SCHEDULES))
def test_nelbo_equals_the_ctmc_elbo_with_brute_force_bayes_rates(name):
    """Against 50-digit arithmetic: the O(V) closed form keeps ~10 digits even at t = 0.999, where
    the integrand is ~1e-8."""
    proc = UniformCorruption(SPACE, name)
    raw, x0, t, x_t = _example(proc)
    p = torch.softmax(raw, -1)
    expected = torch.tensor([sum(_mp_integrand(proc, p[b, i], int(x_t[b, i]), int(x0[b, i]), float(t[b]))
                                 for i in range(3)) / 3 for b in range(6)], dtype=torch.float64)
    got = proc.nelbo(raw, x0, Corrupted(t=t, x_t=x_t))
    assert torch.allclose(got, expected, rtol=1e-10, atol=0)


def test_the_generic_integrand_agrees_up_to_its_cancellation():
    """``ctmc_elbo_integrand`` on float64 Bayes rates: the same values, but its four terms of size
    R log R cancel to a result of size R d^2 (d = relative rate error), so only ~1e-4 is kept at
    t = 0.999; the closed form in ``nelbo`` avoids that cancellation."""
    proc = UniformCorruption(SPACE, "linear")
    raw, x0, t, x_t = _example(proc)
    p = torch.softmax(raw, -1)
    expected = torch.zeros(6, dtype=torch.float64)
    for b in range(6):
        for i in range(3):
            model, true = _brute_rates(proc, p[b, i], int(x_t[b, i]), int(x0[b, i]), float(t[b]))
            expected[b] += ctmc_elbo_integrand(model, true, x_t[b, i]) / 3
    assert torch.allclose(proc.nelbo(raw, x0, Corrupted(t=t, x_t=x_t)), expected, rtol=1e-4, atol=0)


def test_nelbo_is_zero_for_the_true_rates_and_positive_otherwise():
    proc = UniformCorruption(SPACE)
    g = torch.Generator().manual_seed(4)
    x0 = torch.randint(V, (200, 3), generator=g)
    t = torch.rand(200, generator=g, dtype=torch.float64) * 0.98 + 0.01
    corrupted = proc.corrupt(x0, t, generator=g)
    exact = torch.nn.functional.one_hot(x0, V).double().clamp_min(1e-300).log()
    assert float(proc.nelbo(exact, x0, corrupted).abs().max()) < 1e-9
    wrong = proc.nelbo(torch.randn(200, 3, V, generator=g, dtype=torch.float64), x0, corrupted)
    assert bool((wrong > 0).all())


def test_nelbo_is_finite_in_float32_across_times_and_has_gradients():
    proc = UniformCorruption(SPACE)
    g = torch.Generator().manual_seed(5)
    x0 = torch.randint(V, (256, 3), generator=g)
    t = torch.cat([torch.tensor([1e-6, 1e-3, 0.999999, 1.0]), torch.rand(252, generator=g)])
    raw = torch.randn(256, 3, V, generator=g, requires_grad=True)
    loss = proc.loss(raw, x0, proc.corrupt(x0, t, generator=g))
    assert loss.dtype == torch.float32 and bool(torch.isfinite(loss).all())
    loss.mean().backward()
    assert bool(torch.isfinite(raw.grad).all()) and float(raw.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", sorted(MASKING_SCHEDULES))
def test_nelbo_prior_is_the_exact_kl_to_uniform(name):
    proc = UniformCorruption(SPACE, name)
    q1 = _q(proc.schedule.alpha_one)[:, 0]
    expected = float(torch.xlogy(q1, q1 * V).sum())
    got = proc.nelbo_prior(torch.zeros(2, 3, dtype=torch.long))
    assert got.dtype == torch.float64 and torch.allclose(got, torch.full((2,), expected, dtype=torch.float64))
    if name != "log-linear":
        assert float(got[0]) == 0.0


def test_prior_is_uniform_tokens():
    draws = UniformCorruption(SPACE).prior(20000, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws.flatten(), minlength=V).double() / draws.numel()
    assert draws.dtype == torch.int64 and float((freq - 1 / V).abs().max()) < 4 * math.sqrt(0.16 / draws.numel())


def test_the_loss_stays_finite_when_the_model_is_sure_and_wrong_near_t_zero():
    """At t = t_min (r ~ V / t) a confident wrong prediction makes the model rate about
    1 / (1 + r)^2 of the true one: 1 + d rounds to 0 in float32, log(rho) must not."""
    process = UniformCorruption(polydiff.Discrete((4,), 85), "log-linear")
    x0 = torch.tensor([[3, 7, 11, 0]])
    x_t = torch.tensor([[5, 7, 11, 2]])  # two tokens resampled away from x0
    raw = torch.full((1, 4, 85), -30.0)
    raw[0, torch.arange(4), x_t[0]] = 30.0  # certain that x0 = x_t, wrong at positions 0 and 3
    corrupted = Corrupted(t=torch.tensor([1e-3]), x_t=x_t)
    loss = process.loss(raw, x0, corrupted)
    assert torch.isfinite(loss).all() and float(loss) > 0
    exact = process.nelbo(raw.double(), x0, corrupted)
    assert float(loss) == pytest.approx(float(exact), rel=1e-3)
