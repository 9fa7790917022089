"""The composite (product) process: one process per field, one shared time, summed losses."""
from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff.corruptions.composite import CompositeCorruption
from polydiff.schedules import EDM, VPCosine


def _two_fields() -> CompositeCorruption:
    return CompositeCorruption({
        "a": polydiff.GaussianCorruption(polydiff.Continuous((3,)), VPCosine(), field="a"),
        "b": polydiff.GaussianCorruption(polydiff.Continuous((2, 2)), EDM(), field="b"),
    })


def test_shared_time_comes_from_the_first_field():
    product = _two_fields()
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    t = product.sample_t(500, generator=g1)
    expected = product.processes["a"].sample_t(500, generator=g2)
    assert torch.equal(t, expected)


def test_corrupt_uses_one_time_and_independent_noise_per_field():
    product = _two_fields()
    x0 = {"a": torch.zeros(4000, 3), "b": torch.zeros(4000, 2, 2)}
    t = torch.full((4000,), 0.5)
    out = product.corrupt(x0, t, generator=torch.Generator().manual_seed(1))
    assert set(out) == {"a", "b"}
    assert all(torch.equal(c.t, t) for c in out.values())
    for field, corrupted in out.items():
        sigma = float(product.processes[field].schedule(torch.tensor(0.5)).sigma)
        assert abs(float(corrupted.x_t.std()) / sigma - 1) < 0.05, field
    noise_a, noise_b = out["a"].noise[:, 0], out["b"].noise[:, 0, 0]
    assert abs(float(torch.corrcoef(torch.stack([noise_a, noise_b]))[0, 1])) < 0.06


def test_loss_is_the_per_field_losses():
    product = _two_fields()
    g = torch.Generator().manual_seed(2)
    x0 = {"a": torch.randn(8, 3, generator=g), "b": torch.randn(8, 2, 2, generator=g)}
    t = product.sample_t(8, generator=g)
    corrupted = product.corrupt(x0, t, generator=g)
    raw = {"a": torch.randn(8, 3, generator=g), "b": torch.randn(8, 2, 2, generator=g)}
    losses = product.loss(raw, x0, corrupted)
    for field, process in product.processes.items():
        assert torch.equal(losses[field], process.loss(raw[field], x0[field], corrupted[field]))


def test_prior_and_reverse_step_cover_every_field():
    product = _two_fields()
    g = torch.Generator().manual_seed(3)
    prior = product.prior(16, generator=g)
    assert prior["a"].shape == (16, 3) and prior["b"].shape == (16, 2, 2)
    t, s = torch.full((16,), 0.8), torch.full((16,), 0.4)
    preds = {f: polydiff.Prediction(raw=torch.zeros_like(v), x0=torch.zeros_like(v)) for f, v in prior.items()}
    out = product.reverse_step(prior, t, s, preds, generator=g)
    assert {f: v.shape for f, v in out.items()} == {f: v.shape for f, v in prior.items()}
    assert product.t_start == max(p.t_start for p in product.processes.values())


def test_an_empty_composite_is_refused():
    with pytest.raises(ValueError, match="at least one field"):
        CompositeCorruption({})


def test_gaussian_variance_reaches_only_the_gaussian_fields():
    """``gaussian_variance`` steps the Gaussian field with that variance; the masked field ignores it."""
    product = CompositeCorruption({
        "a": polydiff.GaussianCorruption(polydiff.Continuous((3,)), VPCosine(), field="a"),
        "c": polydiff.MaskedCorruption(polydiff.Discrete((4,), vocab_size=5), field="c"),
    })
    n = 64
    x_t = {"a": torch.randn(n, 3), "c": torch.full((n, 4), 5)}
    preds = {"a": polydiff.Prediction(raw=torch.zeros(n, 3), x0=torch.zeros(n, 3)),
             "c": polydiff.Prediction(raw=torch.zeros(n, 4, 5), x0=torch.full((n, 4, 5), 0.2))}
    t, s = torch.full((n,), 0.8), torch.full((n,), 0.4)
    default = product.reverse_step(x_t, t, s, preds, generator=torch.Generator().manual_seed(1))
    large = product.reverse_step(x_t, t, s, preds, generator=torch.Generator().manual_seed(1), gaussian_variance="large")
    alone = product.processes["a"].reverse_step(x_t["a"], t, s, preds["a"], generator=torch.Generator().manual_seed(1),
                                                variance="large")
    assert torch.equal(large["a"], alone) and not torch.allclose(large["a"], default["a"])
    assert torch.equal(large["c"], default["c"])
