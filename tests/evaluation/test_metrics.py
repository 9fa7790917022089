"""Built-in metrics: zero-ish for equal laws, larger for shifted ones, tidy finite rows."""
from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff.evaluation.distances import cov_error, mean_error
from polydiff.evaluation.mmd import median_distance, mmd_squared
from polydiff.spaces import Continuous, Discrete

METRICS = ("sliced_wasserstein", "mmd", "mean_error", "cov_error")


def _gaussian(n: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed)) + shift


def test_mmd_is_near_zero_for_one_law_and_grows_with_the_shift():
    g = torch.Generator().manual_seed(0)
    a, b = _gaussian(1000, 1), _gaussian(1000, 2)
    same = mmd_squared(a, b, generator=g)
    assert abs(mmd_squared(a, a, generator=g)) < 2e-3
    assert abs(same) < 3e-3
    small = mmd_squared(a, _gaussian(1000, 3, 0.3), generator=g)
    large = mmd_squared(a, _gaussian(1000, 3, 1.0), generator=g)
    assert 5 * abs(same) < small < large


def test_mmd_subsamples_and_checks_inputs():
    g = torch.Generator().manual_seed(0)
    value = mmd_squared(_gaussian(5000, 1), _gaussian(3000, 2, 0.5), max_points=500, generator=g)
    assert math.isfinite(value) and value > 0
    with pytest.raises(ValueError, match="dimensions differ"):
        mmd_squared(torch.zeros(5, 2), torch.zeros(5, 3))
    assert median_distance(torch.tensor([[0.0], [1.0], [3.0]])) == pytest.approx(2.0)


def test_moment_errors():
    a = _gaussian(4000, 1)
    assert mean_error(a, a + torch.tensor([3.0, 4.0, 0.0])) == pytest.approx(5.0, abs=1e-6)
    assert cov_error(a, a) == 0.0
    assert cov_error(a, 2 * a) == pytest.approx(3 * torch.cov(a.T.double()).norm().item(), rel=1e-6)


@pytest.mark.parametrize("name", METRICS)
def test_registered_metrics_return_finite_rows_per_continuous_field(name):
    spec = polydiff.make_plugin_manager(autoload=False).registry.get("metric", name)
    spaces = {"x": Continuous((3,)), "y": Continuous((2, 2)), "tok": Discrete((4,), 5)}
    samples = {"x": _gaussian(500, 1), "y": torch.randn(500, 2, 2), "tok": torch.zeros(500, 4, dtype=torch.long)}
    near = {"x": _gaussian(500, 2), "y": torch.randn(500, 2, 2), "tok": torch.ones(500, 4, dtype=torch.long)}
    far = {**near, "x": 2.0 * near["x"] + 2.0}  # moves every moment
    g = torch.Generator().manual_seed(0)
    rows = spec.function(samples, near, spaces=spaces, generator=g)
    assert [r["field"] for r in rows] == ["x", "y"]
    assert all(r["metric"] == name and math.isfinite(r["value"]) for r in rows)
    far_rows = spec.function(samples, far, spaces=spaces, generator=g)
    assert far_rows[0]["value"] > rows[0]["value"] + 0.1
    assert not spec.higher_is_better


@pytest.mark.parametrize("name", ["sequence_tv", "token_tv"])
def test_categorical_metrics_score_discrete_fields_only(name):
    spec = polydiff.make_plugin_manager(autoload=False).registry.get("metric", name)
    spaces = {"x": Continuous((3,)), "tok": Discrete((2,), 3)}
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(3, (4000, 2), generator=g)
    other = torch.randint(3, (4000, 2), generator=g)
    shifted = (tokens + 1) % 3
    shifted[:, 1] = 0  # the second position collapses to one token
    rows = spec.function({"x": _gaussian(10, 1), "tok": tokens}, {"x": _gaussian(10, 2), "tok": other},
                         spaces=spaces, generator=g)
    assert [r["field"] for r in rows] == ["tok"]
    # two samples of one law of 9 sequences: TV is sampling noise only, about sqrt(9 / (pi N))
    assert rows[0]["value"] < 0.05
    far = spec.function({"tok": tokens}, {"tok": shifted}, spaces={"tok": spaces["tok"]}, generator=g)
    assert far[0]["value"] > 0.3
    same = spec.function({"tok": tokens}, {"tok": tokens}, spaces={"tok": spaces["tok"]}, generator=g)
    assert same[0]["value"] == 0.0
