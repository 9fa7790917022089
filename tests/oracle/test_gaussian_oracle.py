"""Oracle tests: every Gaussian sampler reproduces a Gaussian mixture from its exact denoiser.

With the closed-form E[x0 | x_t] of ``GaussianMixtureOracle`` any gap between samples and
the mixture is the sampler's own error. Tolerances are stated relative to the sliced
Wasserstein noise floor: the mean SW between independent pairs of exact sample sets of the
same size (``N``). Budgets (NFE) per sampler are in ``STEPS``; everything runs in float64.
"""
from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff.evaluation.distances import sliced_wasserstein
from polydiff.samplers import make_grid
from polydiff.schedules import EDM, VE, Flow, VPCosine, VPLinear
from polydiff.testing.oracles import GaussianMixtureOracle

N = 2048
SW_FACTOR = 2.5
"""Stated tolerance: SW(samples, exact) <= SW_FACTOR x the noise floor."""
WEIGHT_TOL = 0.04
"""Stated tolerance on each recovered component weight (absolute)."""
STEPS = {"ancestral": 200, "ddim": 50, "euler": 50, "heun": 20, "dpmpp_2m": 20, "dpmpp_3m": 20,
         "unipc": 20, "euler_maruyama": 200, "pc": 150}
"""Grid intervals per sampler (NFE: heun 2N - 1, pc 2N, others N)."""
SCHEDULES = {"vp-linear": VPLinear, "vp-cosine": VPCosine, "ve": VE, "edm": EDM, "flow": Flow}
SW_OPTS = {"n_projections": 128, "n_quantiles": 128}


def mixture_2d() -> GaussianMixtureOracle:
    covs = torch.stack([torch.eye(2) * 0.09, torch.tensor([[0.2, 0.05], [0.05, 0.1]]), torch.eye(2) * 0.0625])
    return GaussianMixtureOracle([0.5, 0.3, 0.2], [[-2.0, -1.0], [2.0, 0.5], [0.0, 2.5]], covs.double())


def mixture_4d() -> GaussianMixtureOracle:
    means = torch.tensor([[2.0, 0.0, -1.0, 1.0], [-2.0, 1.0, 1.0, 0.0], [0.0, -2.0, 0.0, -2.0]])
    covs = torch.stack([torch.eye(4) * s for s in (0.1, 0.2, 0.05)])
    return GaussianMixtureOracle([0.6, 0.25, 0.15], means.double(), covs.double())


MIXTURES = {"2d": mixture_2d, "4d": mixture_4d}


def sw(a: torch.Tensor, b: torch.Tensor) -> float:
    return sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(11), **SW_OPTS)


@pytest.fixture(scope="module")
def references():
    """Per mixture: (oracle, exact samples, noise floor = mean SW of 3 independent exact pairs)."""
    out = {}
    for name, build in MIXTURES.items():
        oracle = build()
        gen = torch.Generator().manual_seed(5)
        exact = oracle.sample(N, generator=gen)
        floor = sum(sw(oracle.sample(N, generator=gen), oracle.sample(N, generator=gen)) for _ in range(3)) / 3
        out[name] = (oracle, exact, floor)
    return out


def processes_for(schedule: str, dim: int) -> dict[str, polydiff.GaussianCorruption]:
    return {"x": polydiff.GaussianCorruption(polydiff.Continuous((dim,)), SCHEDULES[schedule]())}


def draw(sampler: str, schedule: str, oracle: GaussianMixtureOracle, steps: int, seed: int = 3,
         grid_name: str | None = None):
    """Samples of ``sampler`` on its default grid (or ``grid_name``) with ``steps`` intervals."""
    spec = polydiff.make_plugin_manager().registry.get("sampler", sampler)
    procs = processes_for(schedule, oracle.dim)
    gen = torch.Generator().manual_seed(seed)
    x = {"x": procs["x"].prior(N, generator=gen, dtype=torch.float64)}
    grid = make_grid(grid_name or spec.default_grid, procs, steps)
    return spec.function(oracle.predict_fn(procs), procs, x, grid, generator=gen)


def weights_of(samples: torch.Tensor, oracle: GaussianMixtureOracle) -> torch.Tensor:
    nearest = torch.cdist(samples, oracle.means).argmin(dim=1)
    return torch.bincount(nearest, minlength=len(oracle.weights)).double() / len(samples)


@pytest.mark.parametrize("mixture", sorted(MIXTURES))
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("sampler", sorted(STEPS))
def test_sampler_reproduces_mixture(sampler, schedule, mixture, references):
    oracle, exact, floor = references[mixture]
    out = draw(sampler, schedule, oracle, STEPS[sampler])
    samples = out.state["x"]
    assert torch.isfinite(samples).all()
    distance = sw(samples, exact)
    assert distance <= SW_FACTOR * floor, f"SW {distance:.4f} > {SW_FACTOR} x floor {floor:.4f} at NFE {out.nfe}"
    assert torch.allclose(weights_of(samples, oracle), weights_of(exact, oracle), atol=WEIGHT_TOL)


def test_tolerance_has_teeth(references):
    """A crude run (Euler, 3 intervals) must fail the stated tolerance, or the test proves nothing."""
    oracle, exact, floor = references["2d"]
    assert sw(draw("euler", "vp-linear", oracle, 3).state["x"], exact) > SW_FACTOR * floor


_REFERENCE_ODE: dict = {}


def endpoint_errors(sampler, schedule, grid_name, oracle, nfes, n=512):
    """Mean squared endpoint error vs a 300-step Heun solution from the same initial noise."""
    procs = processes_for(schedule, oracle.dim)
    model = oracle.predict_fn(procs)
    x = {"x": procs["x"].prior(n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)}
    key = (schedule, id(oracle), n)
    if key not in _REFERENCE_ODE:
        _REFERENCE_ODE[key] = polydiff.samplers.sample_heun(model, procs, x, make_grid("logsnr", procs, 300)).state["x"]
    ref = _REFERENCE_ODE[key]
    fn = polydiff.make_plugin_manager().registry.get("sampler", sampler).function
    return [float(((fn(model, procs, x, make_grid(grid_name, procs, k)).state["x"] - ref) ** 2).sum(1).mean())
            for k in nfes]


@pytest.mark.parametrize("schedule,grid_name", [("vp-linear", "logsnr"), ("edm", "karras"), ("ve", "logsnr")])
def test_dpmpp_2m_beats_euler_at_equal_nfe(schedule, grid_name, references):
    oracle = references["2d"][0]
    nfes = [5, 10, 15, 20]
    errs_2m = endpoint_errors("dpmpp_2m", schedule, grid_name, oracle, nfes)
    errs_euler = endpoint_errors("euler", schedule, grid_name, oracle, nfes)
    for k, e2m, eeu in zip(nfes, errs_2m, errs_euler):
        assert e2m < eeu, f"NFE {k}: dpmpp_2m {e2m:.3e} vs euler {eeu:.3e}"


def test_dpmpp_2m_beats_euler_in_sw_at_nfe_10(references):
    """Each on its paper's grid (DPM-Solver: log-SNR; EDM: Karras). On the shared trailing
    default both are within ~1.1x of the SW noise floor at NFE 10, too close for SW to rank."""
    oracle, exact, _ = references["2d"]
    d_2m = sw(draw("dpmpp_2m", "vp-linear", oracle, 10, grid_name="logsnr").state["x"], exact)
    d_euler = sw(draw("euler", "vp-linear", oracle, 10, grid_name="karras").state["x"], exact)
    assert d_2m < d_euler


@pytest.mark.parametrize("sampler,order", [("euler", 1), ("heun", 2), ("dpmpp_2m", 2), ("dpmpp_3m", 2.5),
                                           ("unipc", 2)])
def test_convergence_order(sampler, order, references):
    """Doubling the steps (40 -> 80) divides the endpoint RMS error by about 2^order."""
    e40, e80 = endpoint_errors(sampler, "edm", "logsnr", references["2d"][0], [40, 80], n=256)
    ratio = (e40 / e80) ** 0.5
    assert ratio > 2 ** (order - 0.5), f"{sampler}: error ratio {ratio:.2f} for doubled steps"
