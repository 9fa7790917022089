"""Masking schedules and the masked (absorbing) process: closed forms, SUBS, the MDLM loss."""
from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff.corruptions.base import Corrupted
from polydiff.corruptions.masked import MaskedCorruption, discrete_times, masking_schedule, sample_categorical
from polydiff.corruptions.uniform import ctmc_elbo_integrand
from polydiff.schedules import MASKING_SCHEDULES, CosineMasking, LinearMasking, LogLinearMasking

SPACE = polydiff.Discrete((3,), vocab_size=4)


@pytest.mark.parametrize("name", sorted(MASKING_SCHEDULES))
def test_schedule_endpoints_and_monotone(name):
    schedule = MASKING_SCHEDULES[name]()
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    alpha = schedule.alpha(t)
    assert float(alpha[0]) == 1.0
    assert bool((alpha[1:] < alpha[:-1]).all()), f"{name}: alpha must decrease strictly"
    expected_end = 1e-3 if name == "log-linear" else 0.0
    assert abs(float(alpha[-1]) - expected_end) < 1e-12
    assert abs(schedule.alpha_one - expected_end) < 1e-12


@pytest.mark.parametrize("name", sorted(MASKING_SCHEDULES))
def test_d_alpha_matches_autograd_and_finite_differences(name):
    schedule = MASKING_SCHEDULES[name]()
    t = torch.linspace(0.01, 0.99, 49, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(schedule.alpha(t).sum(), t)
    assert torch.allclose(schedule.d_alpha(t.detach()), grad, atol=1e-12, rtol=0)
    h = 1e-6
    fd = (schedule.alpha(t.detach() + h) - schedule.alpha(t.detach() - h)) / (2 * h)
    assert torch.allclose(schedule.d_alpha(t.detach()), fd, atol=1e-8, rtol=0)


def test_closed_forms_of_the_three_schedules():
    t = torch.tensor([0.2, 0.7], dtype=torch.float64)
    assert torch.allclose(LinearMasking().alpha(t), 1 - t)
    assert torch.allclose(CosineMasking().alpha(t), 1 - torch.cos(math.pi / 2 * (1 - t)))
    assert torch.allclose(LogLinearMasking(eps=0.01).alpha(t), 1 - 0.99 * t)


def test_unknown_schedule_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"cosine.*linear.*log-linear"):
        masking_schedule("geometric")
    manager = polydiff.make_plugin_manager(autoload=False)
    factory = manager.registry.get("corruption", "masked").factory
    with pytest.raises(ValueError, match="allowed"):
        factory(SPACE, schedule="nope")


def test_masked_on_a_continuous_space_names_both():
    with pytest.raises(polydiff.IncompatibleSpaceError) as info:
        MaskedCorruption(polydiff.Continuous((4,)), field="x")
    text = str(info.value)
    assert "'masked'" in text and "'x'" in text and "continuous" in text and "discrete" in text


def test_sample_t_is_uniform_on_t_min_1_and_low_discrepancy():
    proc = MaskedCorruption(SPACE, t_min=0.1)
    t = proc.sample_t(1000, generator=torch.Generator().manual_seed(0)).double()
    assert float(t.min()) >= 0.1 and float(t.max()) <= 1.0
    gaps = t.sort().values.diff()
    # one stratum per sample: consecutive times are exactly (1 - t_min) / n apart
    assert torch.allclose(gaps, torch.full_like(gaps, 0.9 / 1000), atol=1e-6)
    plain = MaskedCorruption(SPACE, low_discrepancy=False).sample_t(20000, generator=torch.Generator().manual_seed(1))
    # mean of U(t_min, 1) is 0.5005; standard error 0.289 / sqrt(20000) = 0.002
    assert abs(float(plain.double().mean()) - 0.5005) < 0.008


@pytest.mark.parametrize("name", sorted(MASKING_SCHEDULES))
def test_forward_marginal_keeps_alpha_and_masks_the_rest(name):
    proc = MaskedCorruption(SPACE, name)
    n, t = 40000, 0.35
    x0 = torch.randint(4, (n, 3), generator=torch.Generator().manual_seed(0))
    x_t = proc.corrupt(x0, torch.full((n,), t), generator=torch.Generator().manual_seed(1)).x_t
    alpha = float(proc.alpha(torch.tensor(t)))
    kept = (x_t == x0).double().mean()
    assert bool(((x_t == x0) | (x_t == 4)).all()), "a token must stay or become the mask id"
    # binomial proportion over 120000 tokens: standard error <= 0.0015; 4 standard errors
    assert abs(float(kept) - alpha) < 4 * math.sqrt(alpha * (1 - alpha) / x_t.numel())


def test_subs_carries_unmasked_tokens_and_zeroes_the_mask():
    proc = MaskedCorruption(SPACE)
    raw = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_t = torch.tensor([[4, 1, 4], [0, 4, 3], [4, 4, 4], [2, 2, 2], [1, 4, 0]])
    x0 = proc.predict(raw, x_t, torch.full((5,), 0.5)).x0
    assert x0.shape == (5, 3, 4)
    assert torch.allclose(x0.sum(-1), torch.ones(5, 3, dtype=torch.float64))
    masked = x_t == 4
    assert torch.allclose(x0[masked], torch.softmax(raw, -1)[masked])
    assert torch.equal(x0[~masked], torch.nn.functional.one_hot(x_t[~masked], 4).double())


def test_loss_equals_the_mdlm_formula_on_a_hand_computed_case():
    proc = MaskedCorruption(polydiff.Discrete((3,), 2), "linear")
    raw = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]]], dtype=torch.float64)
    x0 = torch.tensor([[0, 0, 1]])
    x_t = torch.tensor([[2, 0, 2]])  # positions 0 and 2 masked (mask id 2)
    t = torch.tensor([0.25], dtype=torch.float64)
    # linear schedule: w = -alpha' / (1 - alpha) = 1 / t = 4
    nll0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    nll2 = -math.log(math.exp(-5) / (math.exp(5) + math.exp(-5)))
    expected = 4 * (nll0 + nll2) / 3
    got = proc.loss(raw, x0, Corrupted(t=t, x_t=x_t))
    assert got.shape == (1,)
    assert abs(float(got) - expected) < 1e-12


def test_cosine_weight_is_half_pi_tan():
    proc = MaskedCorruption(SPACE, "cosine")
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    assert torch.allclose(proc.weight(t), math.pi / 2 * torch.tan(math.pi / 2 * (1 - t)))
    assert float(proc.weight(torch.tensor([0.0]))) == 0.0  # alpha = 1: nothing is masked, weight unused


def test_nelbo_prior_is_zero_or_alpha_one_log_v():
    x0 = torch.zeros(3, 3, dtype=torch.long)
    assert torch.equal(MaskedCorruption(SPACE, "linear").nelbo_prior(x0), torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(MaskedCorruption(SPACE, "log-linear").nelbo_prior(x0),
                          torch.full((3,), 1e-3 * math.log(4), dtype=torch.float64))


def _masked_rates(proc: MaskedCorruption, probs: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor,
                  t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse rates over the V + 1 states of the absorbing CTMC with forward rate -alpha'/alpha:
    from the mask to y, R(. | x0) = w [y = x0] and R_theta = w p_theta(y); zero from a real token."""
    w = proc.weight(t)[:, None, None]
    masked = (x_t == proc.mask_id)[..., None]
    pad = torch.zeros(*probs.shape[:-1], 1, dtype=probs.dtype)
    true = torch.cat([torch.nn.functional.one_hot(x0, proc.vocab_size).double(), pad], -1) * w
    model = torch.cat([probs, pad], -1) * w
    return torch.where(masked, model, 0.0), torch.where(masked, true, 0.0)


def test_the_generic_ctmc_elbo_reduces_to_the_mdlm_loss():
    proc = MaskedCorruption(SPACE, "cosine")
    g = torch.Generator().manual_seed(3)
    raw = torch.randn(64, 3, 4, generator=g, dtype=torch.float64)
    x0 = torch.randint(4, (64, 3), generator=g)
    t = torch.rand(64, generator=g, dtype=torch.float64) * 0.98 + 0.01
    corrupted = proc.corrupt(x0, t, generator=g)
    probs = proc.predict(raw, corrupted.x_t, t).x0
    model, true = _masked_rates(proc, probs, x0, corrupted.x_t, t)
    generic = ctmc_elbo_integrand(model, true, corrupted.x_t).sum(1) / 3
    assert torch.allclose(generic, proc.nelbo(raw, x0, corrupted), atol=1e-12, rtol=1e-10)


def test_reverse_step_unmasks_the_right_fraction_to_draws_of_x0():
    proc = MaskedCorruption(SPACE, "linear")
    n = 30000
    x_t = torch.full((n, 3), 4)
    x_t[:, 0] = 1  # an unmasked token must stay
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64).expand(n, 3, 4)
    t, s = torch.full((n,), 0.8), torch.full((n,), 0.5)
    x_s = proc.reverse_step(x_t, t, s, polydiff.Prediction(raw=probs.log(), x0=probs),
                            generator=torch.Generator().manual_seed(0))
    assert bool((x_s[:, 0] == 1).all())
    unmasked = x_s[:, 1:] != 4
    # (alpha_s - alpha_t) / (1 - alpha_t) = (0.5 - 0.2) / 0.8 = 0.375; 60000 tokens, 4 standard errors
    assert abs(float(unmasked.double().mean()) - 0.375) < 4 * math.sqrt(0.375 * 0.625 / 60000)
    freq = torch.bincount(x_s[:, 1:][unmasked], minlength=4).double() / int(unmasked.sum())
    assert float((freq - probs[0, 0]).abs().max()) < 0.015  # ~22500 draws: standard error <= 0.0033
    final = proc.reverse_step(x_t, t, torch.zeros(n), polydiff.Prediction(raw=probs.log(), x0=probs))
    assert not bool((final == 4).any()), "at s = 0 every token must be unmasked"


def test_sample_categorical_never_draws_zero_probabilities():
    probs = torch.tensor([[0.0, 1e-12, 0.0, 1.0 - 1e-12], [0.5, 0.0, 0.5, 0.0]], dtype=torch.float64)
    draws = sample_categorical(probs.expand(50000, 2, 4), torch.Generator().manual_seed(0))
    assert set(draws[:, 0].unique().tolist()) <= {1, 3}
    assert set(draws[:, 1].unique().tolist()) == {0, 2}
    assert abs(float((draws[:, 1] == 0).double().mean()) - 0.5) < 4 * math.sqrt(0.25 / 50000)


def test_prior_is_all_mask_and_times_are_reproducible():
    proc = MaskedCorruption(SPACE)
    assert torch.equal(proc.prior(3), torch.full((3, 3), 4))
    a = discrete_times(8, 1e-3, True, generator=torch.Generator().manual_seed(5))
    b = discrete_times(8, 1e-3, True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
