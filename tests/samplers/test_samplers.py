"""Sampler contract: signatures, determinism, exact NFE, errors, guidance wrappers."""
from __future__ import annotations

import inspect
import math

import pytest
import torch

import polydiff
from polydiff.corruptions.base import Corrupted, Corruption, Prediction
from polydiff.errors import IncompatibleSpaceError
from polydiff.protocols import Sampler
from polydiff.samplers import classifier_free_guidance, gradient_guidance, inpaint, make_grid
from polydiff.schedules import EDM, VPLinear
from polydiff.testing.oracles import GaussianMixtureOracle

NAMES = ["ancestral", "ddim", "euler", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "euler_maruyama", "pc"]


def nfe_expected(name: str, steps: int, options: dict) -> int:
    """The NFE each sampler documents for ``steps`` grid intervals."""
    if name == "heun":
        return 2 * steps - 1
    if name == "pc":
        return steps * (1 + options.get("corrector_steps", 1))
    return steps


@pytest.fixture(scope="module")
def registry():
    return polydiff.make_plugin_manager().registry


@pytest.fixture
def setup():
    oracle = GaussianMixtureOracle([0.6, 0.4], [[-1.0, 0.0], [1.5, 1.0]], torch.eye(2).expand(2, 2, 2) * 0.1)
    procs = {"x": polydiff.GaussianCorruption(polydiff.Continuous((2,)), VPLinear())}
    return oracle, procs


def prior(procs, n=64, seed=0):
    return {"x": procs["x"].prior(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)}


def counting(model):
    calls = []

    def wrapped(x, t):
        calls.append(float(t[0]))
        return model(x, t)

    return wrapped, calls


def test_all_registered_with_spec(registry):
    specs = {s.name: s for s in registry.specs("sampler")}
    assert set(NAMES) <= set(specs)
    assert specs["ancestral"].families == polydiff.specs.FAMILIES - {"autoregressive"}
    assert specs["heun"].nfe_per_step == 2
    for name in NAMES:
        assert specs[name].default_grid in polydiff.samplers.GRIDS


@pytest.mark.parametrize("name", NAMES)
def test_signature_matches_protocol(name, registry):
    params = inspect.signature(registry.get("sampler", name).function).parameters
    proto = inspect.signature(Sampler.__call__).parameters
    assert list(params)[:4] == [p for p in proto if p != "self"][:4]
    for key in ("generator", "callback"):
        assert params[key].kind is inspect.Parameter.KEYWORD_ONLY and params[key].default is None


@pytest.mark.parametrize("name,options", [(n, {}) for n in NAMES] + [("pc", {"corrector_steps": 3}),
                                                                      ("heun", {"s_churn": 10.0}),
                                                                      ("unipc", {"order": 3, "variant": "bh1"})])
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_nfe_exact_and_counted(name, options, steps, setup, registry):
    oracle, procs = setup
    model, calls = counting(oracle.predict_fn(procs))
    grid = make_grid("logsnr", procs, steps)
    seen = []
    out = registry.get("sampler", name).function(model, procs, prior(procs), grid,
                                                 generator=torch.Generator().manual_seed(1),
                                                 callback=lambda i, t, x, p: seen.append(i), **options)
    assert out.nfe == len(calls) == nfe_expected(name, steps, options)
    assert seen == list(range(steps))
    assert out.state["x"].shape == (64, 2) and torch.isfinite(out.state["x"]).all()


@pytest.mark.parametrize("name", NAMES)
def test_seeded_determinism(name, setup, registry):
    oracle, procs = setup
    fn = registry.get("sampler", name).function
    grid = make_grid("uniform", procs, 6)
    a = fn(oracle.predict_fn(procs), procs, prior(procs), grid, generator=torch.Generator().manual_seed(3))
    b = fn(oracle.predict_fn(procs), procs, prior(procs), grid, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.state["x"], b.state["x"])


@pytest.mark.parametrize("name", NAMES)
def test_bad_grids_name_the_sampler(name, setup, registry):
    oracle, procs = setup
    fn = registry.get("sampler", name).function
    for grid in (torch.tensor([1.0, 0.5]), torch.tensor([0.5, 1.0, 0.0]), torch.tensor([[1.0, 0.0]])):
        with pytest.raises(ValueError, match=name):
            fn(oracle.predict_fn(procs), procs, prior(procs), grid)


class FakeMasked(Corruption):
    """A minimal non-Gaussian process: reverse_step returns the argmax of the prediction."""

    family = "masked"
    space_kinds = frozenset({"discrete"})

    def sample_t(self, n, *, generator=None, device=None):
        return torch.rand(n, generator=generator)

    def corrupt(self, x0, t, *, generator=None):
        return Corrupted(t=t, x_t=x0)

    def predict(self, raw, x_t, t):
        return Prediction(raw=raw, x0=raw.softmax(-1))

    def loss(self, raw, x0, corrupted):
        return raw.new_zeros(raw.shape[0])

    def prior(self, n, *, generator=None, device=None, dtype=torch.float32):
        return torch.zeros((n, *self.space.shape), dtype=torch.long)

    def reverse_step(self, x_t, t, s, prediction, *, generator=None):
        return prediction.x0.argmax(-1)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "ancestral"])
def test_unsupported_family_names_sampler_and_field(name, registry):
    procs = {"tokens": FakeMasked(polydiff.Discrete((3,), vocab_size=4), field="tokens")}
    with pytest.raises(IncompatibleSpaceError, match=rf"{name}.*tokens.*masked"):
        registry.get("sampler", name).function(lambda x, t: {}, procs, {"tokens": torch.zeros(2, 3, dtype=torch.long)},
                                               make_grid("uniform", procs, 2))


def test_ancestral_runs_any_family():
    procs = {"tokens": FakeMasked(polydiff.Discrete((3,), vocab_size=4), field="tokens")}
    target = torch.tensor([2, 0, 3])

    def model(x, t):
        raw = torch.nn.functional.one_hot(target, 4).double().expand(x["tokens"].shape[0], 3, 4) * 10
        return {"tokens": procs["tokens"].predict(raw, x["tokens"], t)}

    out = polydiff.samplers.sample_ancestral(model, procs, {"tokens": torch.zeros(5, 3, dtype=torch.long)},
                                             make_grid("uniform", procs, 4))
    assert out.nfe == 4 and torch.equal(out.state["tokens"], target.expand(5, 3))


def test_multi_field_uses_each_fields_schedule():
    """Two fields, two schedules, one shared time: each field follows its own ODE exactly."""
    gm = GaussianMixtureOracle([1.0], [[0.5, -0.5]], torch.eye(2)[None] * 0.2)
    procs = {"a": polydiff.GaussianCorruption(polydiff.Continuous((2,)), VPLinear()),
             "b": polydiff.GaussianCorruption(polydiff.Continuous((2,)), EDM())}
    pa, pb = gm.predict_fn(procs, "a"), gm.predict_fn(procs, "b")
    model = lambda x, t: {**pa(x, t), **pb(x, t)}  # noqa: E731
    x = {"a": prior({"x": procs["a"]})["x"], "b": prior({"x": procs["b"]})["x"]}
    grid = make_grid("logsnr", procs, 12)
    joint = polydiff.samplers.sample_dpmpp_2m(model, procs, x, grid).state
    alone = polydiff.samplers.sample_dpmpp_2m(pb, {"b": procs["b"]}, {"b": x["b"]}, grid).state
    assert torch.allclose(joint["b"], alone["b"])


def test_cfg_scale_one_equals_cond_and_zero_uncond(setup):
    oracle, procs = setup
    other = GaussianMixtureOracle([1.0], [[3.0, 3.0]], torch.eye(2)[None] * 0.5)
    cond, uncond = oracle.predict_fn(procs), other.predict_fn(procs)
    x, t = prior(procs), torch.full((64,), 0.5, dtype=torch.float64)
    for scale, expected in ((1.0, cond), (0.0, uncond)):
        got = classifier_free_guidance(cond, uncond, scale)(x, t)["x"]
        want = expected(x, t)["x"]
        assert torch.allclose(got.x0, want.x0) and torch.allclose(got.eps, want.eps)
    mixed = classifier_free_guidance(cond, uncond, 3.0)(x, t)["x"]
    assert torch.allclose(mixed.x0, uncond(x, t)["x"].x0 + 3 * (cond(x, t)["x"].x0 - uncond(x, t)["x"].x0))


def test_cfg_through_experiment_signature():
    """Experiment.sample calls classifier_free_guidance(predict_cond, predict_uncond, scale)."""
    params = list(inspect.signature(classifier_free_guidance).parameters)
    assert params == ["predict_cond", "predict_uncond", "scale"]


@pytest.mark.parametrize("name", NAMES)
def test_inpainting_keeps_known_part(name, setup, registry):
    oracle, procs = setup
    known = {"x": torch.tensor([[0.7, -0.3]], dtype=torch.float64).expand(64, 2)}
    mask = {"x": torch.tensor([[1.0, 0.0]], dtype=torch.float64).expand(64, 2)}
    model = inpaint(oracle.predict_fn(procs), known, mask, procs)
    out = registry.get("sampler", name).function(model, procs, prior(procs), make_grid("logsnr", procs, 8),
                                                 generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out.state["x"][:, 0], known["x"][:, 0], rtol=0, atol=1e-12)
    assert out.state["x"][:, 1].std() > 0.1


def test_gradient_guidance_raises_reward(setup):
    oracle, procs = setup

    def log_reward(x0):
        return x0["x"][:, 0]

    grid = make_grid("logsnr", procs, 20)
    base = polydiff.samplers.sample_dpmpp_2m(oracle.predict_fn(procs), procs, prior(procs, 256), grid)
    guided_fn = gradient_guidance(oracle.predict_fn(procs), log_reward, procs, scale=2.0)
    guided = polydiff.samplers.sample_dpmpp_2m(guided_fn, procs, prior(procs, 256), grid)
    assert guided.nfe == base.nfe
    assert log_reward(guided.state).mean() > log_reward(base.state).mean() + 0.2
    # the heavier right component (mean x = 1.5) gains weight
    assert (guided.state["x"][:, 0] > 0.25).double().mean() > (base.state["x"][:, 0] > 0.25).double().mean() + 0.1


def test_heun_churn_changes_samples_but_stays_on_target(setup):
    oracle, procs = setup
    grid = make_grid("karras", procs, 10)
    plain = polydiff.samplers.sample_heun(oracle.predict_fn(procs), procs, prior(procs), grid)
    churn = polydiff.samplers.sample_heun(oracle.predict_fn(procs), procs, prior(procs), grid, s_churn=5.0,
                                          generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(plain.state["x"], churn.state["x"])
    assert math.isclose(float(churn.state["x"][:, 0].mean()), float(plain.state["x"][:, 0].mean()), abs_tol=0.4)
