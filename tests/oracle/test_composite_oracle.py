"""Composite processes with the exact joint denoiser: a Gaussian point and its discrete label.

Data: label k ~ uniform over the 8 components of the toy gmm8 mixture, point x | k ~
N(mu_k, 0.1^2 I) on a circle of radius 1.5. The point is diffused by a Gaussian process
and the label by a masked or uniform process at one shared time; the generic ancestral
sampler steps both with ``LabelledMixtureOracle``'s exact predictions.

Tolerances, at N = 8000 samples and 200 steps:
- label frequencies: chi-square with 7 degrees of freedom below 24.3 (level 0.001);
- per-label mean of x within 0.03 of mu_k (the standard error of a class mean is
  0.1 / sqrt(1000) = 0.003; the rest is the allowance for discretisation and for the
  per-field independent draws at one step);
- per-label standard deviation of x within 15% of 0.1;
- agreement: at most 1% of the points lie nearer another component's mean than their
  own label's (exactly 0.0 % for the data law: the components are 11 sigma apart).
"""
from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff.builtin.toy import gmm_parameters
from polydiff.samplers import sample_ancestral, sample_dpmpp_2m
from polydiff.schedules import VPCosine
from polydiff.testing.oracles import LabelledMixtureOracle

N, STEPS = 8000, 200


def _problem(label_process: str):
    registry = polydiff.make_plugin_manager(autoload=False).registry
    weights, means, covs = gmm_parameters("gmm8", 0.1)
    oracle = LabelledMixtureOracle(weights, means, covs)
    processes = {
        "x": polydiff.GaussianCorruption(polydiff.Continuous((2,)), VPCosine(), field="x"),
        "label": registry.get("corruption", label_process).factory(polydiff.Discrete((1,), 8), field="label"),
    }
    return oracle, processes, means


def _sample(oracle, processes, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = {f: p.prior(N, generator=g) for f, p in processes.items()}
    grid = torch.linspace(1.0, 0.0, STEPS + 1, dtype=torch.float64)
    return sample_ancestral(oracle.predict_fn(processes), processes, x, grid, generator=g)


@pytest.mark.parametrize("label_process", ["masked", "uniform"])
def test_ancestral_sampling_reproduces_the_joint_law(label_process):
    oracle, processes, means = _problem(label_process)
    out = _sample(oracle, processes, seed=0)
    x, label = out.state["x"].double(), out.state["label"][:, 0]
    assert out.nfe == STEPS
    assert int(label.min()) >= 0 and int(label.max()) < 8, "no mask id may remain"
    counts = torch.bincount(label, minlength=8).double()
    expected = N / 8
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 24.3, f"label frequencies {counts.tolist()} (chi-square {chi2:.1f})"
    for k in range(8):
        points = x[label == k]
        mean_err = float((points.mean(0) - means[k]).norm())
        assert mean_err < 0.03, f"label {k}: class mean off by {mean_err:.3f}"
        std = points.std(0)
        assert bool(((std / 0.1 - 1).abs() < 0.15).all()), f"label {k}: class std {std.tolist()}"
    nearest = torch.cdist(x, means.double()).argmin(1)
    disagree = float((nearest != label).double().mean())
    assert disagree < 0.01, f"{disagree:.2%} of the points sit nearer another component than their label's"


def test_the_exact_label_prediction_depends_on_the_point():
    oracle, processes, means = _problem("masked")
    t = torch.full((2,), 0.3)
    alpha = float(processes["x"].schedule(torch.tensor(0.3)).alpha)
    x = {"x": alpha * means[[2, 5]].float(), "label": torch.full((2, 1), 8)}  # both labels masked
    probs = oracle.predict_fn(processes)(x, t)["label"].x0[:, 0]
    assert probs.argmax(1).tolist() == [2, 5]
    assert torch.allclose(probs.sum(1), torch.ones(2))
    revealed = {"x": x["x"], "label": torch.tensor([[7], [7]])}
    probs = oracle.predict_fn(processes)(revealed, t)["label"].x0[:, 0]
    assert torch.equal(probs.argmax(1), torch.tensor([7, 7])) and float(probs[:, 7].min()) > 0.999


def test_a_gaussian_sampler_names_the_field_it_cannot_handle():
    oracle, processes, _ = _problem("masked")
    x = {f: p.prior(4, generator=torch.Generator().manual_seed(0)) for f, p in processes.items()}
    with pytest.raises(polydiff.IncompatibleSpaceError, match="dpmpp_2m.*'label'.*masked"):
        sample_dpmpp_2m(oracle.predict_fn(processes), processes, x, torch.linspace(1.0, 0.0, 5))
