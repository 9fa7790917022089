"""The enumerated-sequence oracle: exact posteriors, and the NELBO of both discrete families.

Data: a seeded law over the 27 sequences of length 3 with vocabulary 3, with 9 sequences
of probability zero (the same law the sampler oracle tests use).
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch

import polydiff
from polydiff.corruptions.masked import MaskedCorruption
from polydiff.corruptions.uniform import UniformCorruption
from polydiff.evaluation.categorical import (empirical_law, entropy_of, sequence_entropy, sequence_tv, token_tv,
                                             tv_to_law)
from polydiff.schedules import MASKING_SCHEDULES
from polydiff.testing.oracles.discrete import EnumeratedSequenceOracle

V, L = 3, 3
SPACE = polydiff.Discrete((L,), V)


def law() -> torch.Tensor:
    """A seeded table (V,) * L: cubed uniforms, the 9 smallest set to zero."""
    probs = torch.rand((V,) * L, generator=torch.Generator().manual_seed(0), dtype=torch.float64) ** 3
    probs.view(-1)[probs.flatten().argsort()[:9]] = 0.0
    return probs / probs.sum()


ORACLE = EnumeratedSequenceOracle(law())


def _brute_masked(x_t: list[int]) -> torch.Tensor:
    """Per-position posterior by summing over the compatible sequences (unnormalised, (L, V))."""
    out = torch.zeros(L, V, dtype=torch.float64)
    for seq in itertools.product(range(V), repeat=L):
        if all(z == V or z == s for z, s in zip(x_t, seq)):
            for i, s in enumerate(seq):
                out[i, s] += ORACLE.table[seq]
    return out


def _brute_uniform(x_t: list[int], alpha: float) -> torch.Tensor:
    out = torch.zeros(L, V, dtype=torch.float64)
    for seq in itertools.product(range(V), repeat=L):
        like = math.prod(alpha * (z == s) + (1 - alpha) / V for z, s in zip(x_t, seq))
        for i, s in enumerate(seq):
            out[i, s] += ORACLE.table[seq] * like
    return out / out[0].sum()


def test_masked_posterior_is_bayes_and_time_agnostic():
    proc = MaskedCorruption(SPACE)
    predict = ORACLE.predict_fn({"x": proc})
    states = [list(s) for s in itertools.product(range(V + 1), repeat=L)]  # all 64 states
    x_t = torch.tensor(states)
    a = predict({"x": x_t}, torch.full((len(states),), 0.3))["x"]
    b = predict({"x": x_t}, torch.full((len(states),), 0.9))["x"]
    assert torch.equal(a.x0, b.x0), "the masked oracle does not depend on t"
    prior_marginals = _brute_masked([V] * L)
    for k, state in enumerate(states):
        mass = _brute_masked(state)
        # x_t outside the support: the documented fallback is the unconditional law
        expected = mass / mass[0].sum() if float(mass[0].sum()) > 0 else prior_marginals
        assert torch.allclose(a.x0[k], expected, atol=1e-12), state
        if float(mass[0].sum()) > 0:
            unmasked = torch.tensor(state) != V
            assert torch.equal(a.x0[k][unmasked].argmax(-1), torch.tensor(state)[unmasked])
    assert torch.allclose(a.raw, a.x0.log().clamp(min=-1e4))


def test_uniform_posterior_is_bayes_at_the_process_alpha():
    proc = UniformCorruption(SPACE, "cosine")
    predict = ORACLE.predict_fn({"x": proc})
    g = torch.Generator().manual_seed(1)
    x_t = torch.randint(V, (12, L), generator=g)
    t = torch.rand(12, generator=g, dtype=torch.float64)
    probs = predict({"x": x_t}, t)["x"].x0
    for k in range(12):
        expected = _brute_uniform(x_t[k].tolist(), float(proc.alpha(t[k])))
        assert torch.allclose(probs[k], expected, atol=1e-12)


def test_samples_follow_the_table_and_entropy_is_exact():
    n = 50000
    draws = ORACLE.sample(n, torch.Generator().manual_seed(2))
    assert draws.shape == (n, L) and draws.dtype == torch.int64
    # TV of an exact sample of 50000 over 18 sequences: expected ~0.005; 0.02 is 4x that
    assert tv_to_law(draws, ORACLE.table) < 0.02
    p = ORACLE.table.flatten()
    assert abs(ORACLE.entropy() - float(-(p[p > 0] * p[p > 0].log()).sum())) < 1e-12
    assert abs(entropy_of(ORACLE.table) - ORACLE.entropy()) < 1e-12


def test_oracle_rejects_other_families_and_other_spaces():
    with pytest.raises(ValueError, match="masked"):
        ORACLE.predict_fn({"x": polydiff.GaussianCorruption(polydiff.Continuous((3,)), polydiff.EDM())})
    with pytest.raises(ValueError, match="vocabulary 3"):
        ORACLE.predict_fn({"x": MaskedCorruption(polydiff.Discrete((3,), 4))})


def _nelbo_draws(proc, per_sequence: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """nelbo at ``per_sequence`` stratified times (and one x_t each) for every supported sequence.

    Returns (values (S, K), sequences (S, L), probabilities (S,)).
    """
    g = torch.Generator().manual_seed(seed)
    support = ORACLE.table.flatten() > 0
    seqs, weights = ORACLE.sequences[support], ORACLE.table.flatten()[support]
    x0 = seqs.repeat_interleave(per_sequence, 0)
    strata = torch.arange(per_sequence, dtype=torch.float64)
    t = ((strata + torch.rand(per_sequence, generator=g, dtype=torch.float64)) / per_sequence).repeat(len(seqs))
    corrupted = proc.corrupt(x0, t, generator=g)
    raw = ORACLE.predict_fn({"x": proc})({"x": corrupted.x_t}, t)["x"].raw
    return proc.nelbo(raw, x0, corrupted).reshape(len(seqs), per_sequence), seqs, weights


@pytest.mark.parametrize("family", ["masked", "uniform"])
@pytest.mark.parametrize("name", sorted(MASKING_SCHEDULES))
def test_oracle_nelbo_is_a_tight_bound_on_the_entropy(family, name):
    """E_data[E_t nelbo] + nelbo_prior vs the entropy per token H / L = 0.875 nats.

    Monte Carlo: 20000 stratified (t, x_t) draws for each of the 18 supported sequences,
    exact weights p(x0). The exact denoiser makes the continuous-time bound tight up to the
    prior term. Masked: NELBO(x0) = -log p(x0) / L for every x0 (the any-order chain rule),
    plus at most alpha(1) log V (1.1e-3 nats, log-linear) for the tokens still clean at
    t = 1. Uniform: E_data NELBO = (H + KL(q_1 || uniform)) / L, and that KL is at most
    ``nelbo_prior`` (< 1e-5 nats here). So the estimate must be >= H/L - 4 SE and
    <= H/L + 4 SE + alpha(1) log V. Measured SE: 0.0022 (masked), 0.0058 (uniform).
    """
    proc = (MaskedCorruption if family == "masked" else UniformCorruption)(SPACE, name)
    values, _, weights = _nelbo_draws(proc, 20000, seed=3)
    per_sequence = values.mean(1)
    estimate = float((weights * per_sequence).sum()) + float(proc.nelbo_prior(torch.zeros(1, L).long()))
    se = float((weights**2 * values.var(1) / values.shape[1]).sum().sqrt())
    h = ORACLE.entropy() / L
    gap = proc.schedule.alpha_one * math.log(V)
    assert se < 0.01, f"Monte Carlo error {se:.4f} too large for a meaningful check"
    assert h - 4 * se <= estimate <= h + 4 * se + gap, f"NELBO {estimate:.5f} vs H/L {h:.5f} (SE {se:.5f})"


def test_masked_oracle_nelbo_equals_minus_log_p_per_sequence():
    """For the masked process the bound is tight sequence by sequence (18 comparisons at 4.5 SE)."""
    proc = MaskedCorruption(SPACE, "linear")
    values, seqs, weights = _nelbo_draws(proc, 20000, seed=4)
    se = values.std(1) / math.sqrt(values.shape[1])
    target = -weights.log() / L
    z = (values.mean(1) - target) / se
    assert float(z.abs().max()) < 4.5, z


def test_categorical_distances_on_hand_computed_cases():
    a = torch.tensor([[0, 1], [0, 1], [1, 1], [2, 0]])
    b = torch.tensor([[0, 1], [1, 1], [1, 1], [1, 1]])
    # laws: a = {01: .5, 11: .25, 20: .25}, b = {01: .25, 11: .75}
    assert abs(sequence_tv(a, b) - 0.5 * (0.25 + 0.5 + 0.25)) < 1e-12
    # position 0: a = (.5, .25, .25), b = (.25, .75, 0) -> 0.5; position 1: a = (.25, .75), b = (0, 1) -> 0.25
    assert abs(token_tv(a, b) - (0.5 + 0.25) / 2) < 1e-12
    law_b = empirical_law(b, 3)
    assert law_b.shape == (3, 3) and abs(float(law_b[1, 1]) - 0.75) < 1e-12
    assert abs(tv_to_law(a, law_b) - sequence_tv(a, b)) < 1e-12
    assert abs(sequence_entropy(b) - entropy_of(torch.tensor([0.25, 0.75]))) < 1e-12
    with pytest.raises(ValueError, match="integer"):
        sequence_tv(a.float(), b)
