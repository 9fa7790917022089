"""The reflected samplers: contract (families, NFE, callback, determinism) and exact invariants.

Uniform data is invariant under the reflected process, so its exact score is zero at every
t: with a zero-score model the reverse SDE must keep a uniform prior uniform (reflection,
unlike clipping, puts no extra mass on the walls) and the ODE must not move at all.
Distribution checks against point masses with the exact oracle are in
tests/oracle/test_reflected_oracle.py.
"""
from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff.corruptions.reflected import ReflectedCorruption
from polydiff.samplers import make_grid, sample_ancestral, sample_dpmpp_2m
from polydiff.samplers.reflected import sample_reflected_ode, sample_reflected_sde

N = 20000
KS_CRITICAL = 1.95 / math.sqrt(N)
"""Kolmogorov-Smirnov critical value at level 0.001 for N samples."""
LOW, HIGH = -1.0, 2.0


def _processes() -> dict[str, ReflectedCorruption]:
    return {"x": ReflectedCorruption(polydiff.Bounded((2,), LOW, HIGH), field="x")}


def _zero_score(calls: list | None = None):
    def model(x, t):
        if calls is not None:
            calls.append(float(t[0]))
        return {f: polydiff.Prediction(raw=torch.zeros_like(v), x0=v.clone(), score=torch.zeros_like(v))
                for f, v in x.items()}
    return model


def _ks_uniform(u: torch.Tensor) -> float:
    x = u.double().sort().values
    n = len(x)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(torch.maximum((i / n - x).abs().max(), (x - (i - 1) / n).abs().max()))


def _prior(processes, n: int, seed: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
    return {f: p.prior(n, generator=torch.Generator().manual_seed(seed), dtype=dtype) for f, p in processes.items()}


SAMPLERS = [("sde", sample_reflected_sde, {}), ("pc", sample_reflected_sde, {"corrector_steps": 2}),
            ("ode", sample_reflected_ode, {}), ("ode-euler", sample_reflected_ode, {"method": "euler"})]


@pytest.mark.parametrize("label, sampler, options", SAMPLERS[:2])
def test_reverse_sde_keeps_uniform_data_uniform(label, sampler, options):
    processes = _processes()
    grid = make_grid("uniform", processes, 30)
    out = sampler(_zero_score(), processes, _prior(processes, N, 0), grid,
                  generator=torch.Generator().manual_seed(1), **options)
    u = processes["x"].to_unit(out.state["x"])
    for d in range(2):
        assert _ks_uniform(u[:, d]) < KS_CRITICAL
    near_wall = float(((u < 0.005) | (u > 0.995)).double().mean())
    assert abs(near_wall - 0.01) < 4 * math.sqrt(0.01 / (2 * N)), near_wall  # clipping would pile mass here


@pytest.mark.parametrize("method", ["heun", "euler"])
def test_ode_with_zero_score_does_not_move(method):
    processes = _processes()
    x = _prior(processes, 500, 2)
    out = sample_reflected_ode(_zero_score(), processes, x, make_grid("uniform", processes, 7), method=method)
    assert torch.equal(out.state["x"], x["x"])


@pytest.mark.parametrize("label, sampler, options", SAMPLERS)
def test_nfe_callback_and_determinism(label, sampler, options):
    processes, steps = _processes(), 6
    grid = make_grid("uniform", processes, steps)
    expected = {"sde": steps, "pc": 3 * steps, "ode": 2 * steps, "ode-euler": steps}[label]
    calls, seen = [], []
    out = sampler(_zero_score(calls), processes, _prior(processes, 64, 3), grid,
                  generator=torch.Generator().manual_seed(4), callback=lambda *a: seen.append(a), **options)
    assert out.nfe == len(calls) == expected
    assert [a[0] for a in seen] == list(range(steps)) and all(len(a) == 4 for a in seen)
    torch.manual_seed(123)  # the global RNG must not matter
    again = sampler(_zero_score(), processes, _prior(processes, 64, 3), grid,
                    generator=torch.Generator().manual_seed(4), **options)
    assert torch.equal(out.state["x"], again.state["x"])


@pytest.mark.parametrize("label, sampler, options", SAMPLERS)
def test_denoise_returns_the_last_x0_estimate(label, sampler, options):
    processes = _processes()
    target = torch.full((32, 2), 0.25)

    def model(x, t):
        return {"x": polydiff.Prediction(raw=torch.zeros_like(x["x"]), x0=target, score=torch.zeros_like(x["x"]))}

    out = sampler(model, processes, _prior(processes, 32, 5), make_grid("uniform", processes, 4),
                  generator=torch.Generator().manual_seed(6), denoise=True, **options)
    assert torch.equal(out.state["x"], target)
    assert out.nfe == {"sde": 4, "pc": 12, "ode": 7, "ode-euler": 4}[label]


def test_uniform_grid_is_geometric_in_sigma():
    processes = _processes()
    grid = make_grid("uniform", processes, 20)
    assert float(grid[0]) == 1.0 and float(grid[-1]) == 0.0
    sigma = processes["x"].sigma(grid)
    ratios = sigma[:-1] / sigma[1:]
    assert torch.allclose(ratios, torch.full_like(ratios, 200 ** (1 / 20)), rtol=1e-12)


def test_registered_specs():
    registry = polydiff.make_plugin_manager(autoload=False).registry
    for name, function, per_step in (("reflected_sde", sample_reflected_sde, 1),
                                     ("reflected_ode", sample_reflected_ode, 2)):
        spec = registry.get("sampler", name)
        assert spec.function is function and spec.families == frozenset({"reflected"})
        assert spec.default_grid == "uniform" and spec.nfe_per_step == per_step
    assert registry.get("corruption", "reflected").family == "reflected"


@pytest.mark.parametrize("sampler, name", [(sample_reflected_sde, "reflected_sde"),
                                           (sample_reflected_ode, "reflected_ode")])
def test_reflected_samplers_reject_a_gaussian_field(sampler, name):
    gaussian = polydiff.GaussianCorruption(polydiff.Continuous((2,)), polydiff.VE(), field="pos")
    with pytest.raises(polydiff.IncompatibleSpaceError) as info:
        sampler(_zero_score(), {"pos": gaussian}, {"pos": torch.zeros(4, 2)}, torch.linspace(1, 0, 3))
    assert name in str(info.value) and "'pos'" in str(info.value)


def test_gaussian_sampler_rejects_a_reflected_field_naming_it():
    processes = {"box": ReflectedCorruption(polydiff.Bounded((2,)), field="box")}
    with pytest.raises(polydiff.IncompatibleSpaceError) as info:
        sample_dpmpp_2m(_zero_score(), processes, {"box": torch.rand(4, 2)}, torch.linspace(1, 0, 3))
    text = str(info.value)
    assert "dpmpp_2m" in text and "'box'" in text and "reflected" in text


def test_unknown_ode_method_is_a_clear_error():
    processes = _processes()
    with pytest.raises(ValueError, match="'heun', 'euler'"):
        sample_reflected_ode(_zero_score(), processes, _prior(processes, 4, 0), torch.linspace(1, 0, 3), method="rk4")


def test_ancestral_sampler_runs_the_reflected_reverse_step():
    processes = _processes()
    grid = make_grid("uniform", processes, 5)
    a = sample_ancestral(_zero_score(), processes, _prior(processes, 64, 7), grid,
                         generator=torch.Generator().manual_seed(8))
    b = sample_reflected_sde(_zero_score(), processes, _prior(processes, 64, 7), grid,
                             generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.state["x"], b.state["x"])
