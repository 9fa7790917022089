"""Bridge samplers: contract (families, source, NFE, callback, generator), DBIM eta = 1 = ancestral,
the ODE's booting noise, and the registered specs."""
from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff.corruptions.bridge import BridgeCorruption
from polydiff.samplers import sample_ancestral, sample_ddim
from polydiff.samplers.bridge import sample_bridge_ode, sample_bridge_sde
from polydiff.testing.oracles.bridge import PairedGaussianOracle

SPACE = polydiff.Continuous((2,))
ORACLE = PairedGaussianOracle([0.5, -0.3], [[1.0, 0.6], [0.6, 0.8]], [[0.8, 0.3], [-0.2, 0.6]],
                              [[0.15, 0.05], [0.05, 0.2]])
SAMPLERS = {"bridge_sde": sample_bridge_sde, "bridge_ode": sample_bridge_ode}


def _setup(bridge: str = "brownian", n: int = 64, **options):
    processes = {"x": BridgeCorruption(SPACE, bridge=bridge, field="x", **options)}
    _, x1 = ORACLE.sample_pairs(n, torch.Generator().manual_seed(0))
    x1 = x1.float()
    source = {"x": x1}
    x = {"x": processes["x"].prior(n, generator=torch.Generator().manual_seed(1), source=x1)}
    return processes, x, source, ORACLE.predict_fn(processes, source)


def _grid(n: int = 10) -> torch.Tensor:
    return torch.linspace(1.0, 0.0, n + 1, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_nfe_callback_and_seeded_determinism(name):
    processes, x, source, predict = _setup()
    calls, seen = [], []

    def model(state, t):
        calls.append(float(t[0]))
        return predict(state, t)

    def run():
        return SAMPLERS[name](model, processes, x, _grid(), generator=torch.Generator().manual_seed(3),
                              callback=lambda *args: seen.append(args), source=source)

    first = run()
    torch.manual_seed(123)  # the global RNG must not matter
    second = run()
    assert first.nfe == 10 and len(calls) == 20
    times = torch.tensor(calls[:10], dtype=torch.float64)
    assert torch.allclose(times, _grid()[:-1], atol=1e-7)  # t comes in the state's dtype
    assert len(seen) == 20 and all(len(args) == 4 for args in seen) and seen[0][0] == 0
    assert torch.equal(first.state["x"], second.state["x"])
    polydiff.validate_state(first.state, {"x": SPACE})


def test_eta_one_is_the_ancestral_posterior_sampler():
    """DBIM at eta = 1 draws the Markov posterior q(x_s | x_t, x0_hat, x1) with the same noise as ancestral."""
    processes, x, source, predict = _setup("vp")
    sde = sample_bridge_sde(predict, processes, x, _grid(), generator=torch.Generator().manual_seed(4), source=source)
    anc = sample_ancestral(predict, processes, x, _grid(), generator=torch.Generator().manual_seed(4), source=source)
    assert torch.allclose(sde.state["x"], anc.state["x"], atol=1e-5)


def test_ode_draws_booting_noise_once_and_is_deterministic_after():
    """From a fixed x1 the first step is stochastic (c(1) = 0); every later step is a function of the state."""
    processes, _, _, _ = _setup()
    x1 = torch.tensor([[1.5, 0.5]]).repeat(256, 1)
    source = {"x": x1}
    predict = ORACLE.predict_fn(processes, source)
    states = []
    out = sample_bridge_ode(predict, processes, {"x": x1.clone()}, _grid(), generator=torch.Generator().manual_seed(5),
                            callback=lambda i, t, x, p: states.append(x["x"].clone()), source=source)
    assert float(out.state["x"].std(0).min()) > 0.1, "booting noise must spread the samples of one x1"
    rerun = sample_bridge_ode(predict, processes, {"x": states[0]}, _grid()[1:],
                              generator=torch.Generator().manual_seed(99), source=source)
    assert torch.allclose(rerun.state["x"], out.state["x"], atol=1e-6)


def test_ou_ode_needs_no_booting_noise():
    """The OU process is not pinned (c(1) > 0): its ODE is deterministic from the start."""
    processes, x, source, predict = _setup("ou")
    outs = [sample_bridge_ode(predict, processes, x, _grid(), generator=torch.Generator().manual_seed(s), source=source)
            for s in (6, 7)]
    assert torch.equal(outs[0].state["x"], outs[1].state["x"])


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_missing_source_is_a_clear_error_before_any_model_call(name):
    processes, x, _, _ = _setup()

    def model(state, t):
        raise AssertionError("the model must not be called without a source")

    with pytest.raises(ValueError, match=rf"sampler '{name}': bridge field 'x' needs its paired source sample; "
                                         r"pass source=\{'x': x1\}"):
        SAMPLERS[name](model, processes, x, _grid(), generator=torch.Generator())
    with pytest.raises(ValueError, match=r"source\['x'\] has shape \(3, 2\)"):
        SAMPLERS[name](model, processes, x, _grid(), generator=torch.Generator(), source={"x": torch.zeros(3, 2)})


def test_eta_outside_the_unit_interval_is_rejected():
    processes, x, source, predict = _setup()
    with pytest.raises(ValueError, match="eta must be in"):
        sample_bridge_sde(predict, processes, x, _grid(), source=source, eta=1.5)


def test_a_gaussian_sampler_rejects_a_bridge_field_by_name():
    processes, x, _, predict = _setup()
    with pytest.raises(polydiff.IncompatibleSpaceError, match=r"sampler 'ddim'.*field 'x'.*family 'bridge'"):
        sample_ddim(predict, processes, x, _grid())


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_bridge_samplers_reject_other_families_by_name(name):
    processes = {"y": polydiff.GaussianCorruption(SPACE, polydiff.VPCosine(), field="y")}
    x = {"y": torch.zeros(4, 2)}
    with pytest.raises(polydiff.IncompatibleSpaceError, match=rf"sampler '{name}'.*field 'y'.*family 'gaussian'"):
        SAMPLERS[name](lambda *a: None, processes, x, _grid(), source={"y": x["y"]})


def test_registered_sampler_and_corruption_specs(plugin_manager):
    registry = plugin_manager.registry
    for name, function in SAMPLERS.items():
        spec = registry.get("sampler", name)
        assert spec.function is function and spec.families == frozenset({"bridge"}) and spec.default_grid == "uniform"
    spec = registry.get("corruption", "bridge")
    assert spec.family == "bridge" and spec.spaces == frozenset({"continuous", "bounded"})
    proc = spec.factory(polydiff.Bounded((4,), -1.0, 1.0), bridge="ve", sigma_max=1.0, field="x")
    assert proc.bridge.name == "ve"
