"""Error against step count for every family's samplers, driven by exact oracle denoisers.

With an exact denoiser the only error left is the sampler's own (discretisation and, for
discrete samplers, drawing tokens independently within a step), so one table compares
every sampler of every family at equal step counts. The toy laws are the conformance
kit's (``polydiff.testing.problems.sampler_problem``):

==========  ==============================================  ==============================
family      law                                             error
==========  ==============================================  ==============================
gaussian    2-component 2-D mixture, VP cosine              1000 MMD^2 to an exact sample
masked      law over the 27 sequences of 3 tokens           total variation to the law
uniform     the same law                                    total variation to the law
reflected   3 weighted points in the unit box               1000 MMD^2 to an exact sample
bridge      paired Gaussians x1 = 0.5 x0 + noise            1000 MMD^2 of (x0, x1) pairs
==========  ==============================================  ==============================

MMD^2 (unbiased, Gaussian kernel mixture at median-distance bandwidths) rather than a
2-Wasserstein distance: W2 of a multimodal law is dominated by the sampled mode weights,
whose noise swamps a sampler's error. Each error is printed beside its noise band: the
mean + 2 sd of the same statistic between two exact samples of the same size (twice
``--repeats`` draws), so a sampler has converged when its mean error is inside the band. At
these sizes the continuous statistics stay noisy (one seed's prior can carry a mode-weight
imbalance that a deterministic sampler keeps at every step count), so read the columns as
convergence curves, not as a ranking of samplers that are all inside the band. Each cell is
the mean over ``--repeats`` seeds; seed r fixes the prior draw and the exact reference for
every sampler and step count (common random numbers), so a column-to-column change is the
sampler's, not the sampling noise's. Each sampler runs on its default time grid, and the
confidence sampler is shown both mode-seeking (its default) and with random positions.

    python bench/oracle_families.py [--n 2000 --repeats 5 --steps 4 8 16 32 64 128]

Writes ``bench/results/oracle_families.md`` and ``bench/results/oracle_families.csv``.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

import polydiff
from polydiff.evaluation.categorical import tv_to_law
from polydiff.evaluation.mmd import mmd_squared
from polydiff.samplers.grids import make_grid
from polydiff.testing.budgets import TINY
from polydiff.testing.checks import CheckContext
from polydiff.testing.problems import SamplerProblem, fixed_law, sampler_problem

RESULTS = Path(__file__).parent / "results"
FAMILIES = ("gaussian", "masked", "uniform", "reflected", "bridge")
GAUSSIAN_SAMPLERS = ("ancestral", "ddim", "euler", "heun", "dpmpp_2m", "euler_maruyama")
"""The Gaussian family has its own benchmark (bench/samplers.py); a representative few here."""


def samplers_of(family: str, registry: polydiff.Registry) -> list[str]:
    names = [s.name for s in registry.specs("sampler") if family in s.families]
    return [n for n in names if n in GAUSSIAN_SAMPLERS] if family == "gaussian" else names


def _exact(family: str, problem: SamplerProblem, n: int, generator: torch.Generator) -> torch.Tensor:
    """An exact sample of the law the sampler should reproduce (joint with x1 for bridges)."""
    from polydiff.testing import oracles

    if family == "gaussian":
        law = oracles.GaussianMixtureOracle([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], 0.25 * torch.eye(2).repeat(2, 1, 1))
        return law.sample(n, generator=generator)
    if family == "reflected":
        law = oracles.ReflectedPointOracle([[0.1, 0.1], [0.5, 0.9], [0.9, 0.3]], [0.5, 0.3, 0.2], 0.0, 1.0)
        return law.sample(n, generator)
    law = oracles.PairedGaussianOracle(torch.zeros(2), torch.eye(2), 0.5 * torch.eye(2), 0.1 * torch.eye(2))
    x0, x1 = law.sample_pairs(n, generator)
    return torch.cat([x0, x1], dim=1)


def _law(problem: SamplerProblem) -> torch.Tensor:
    return fixed_law().reshape(3, 3, 3)


def error(family: str, problem: SamplerProblem, samples: torch.Tensor, seed: int) -> float:
    """The family's error statistic of ``samples`` (see the module table), against an exact
    reference sample (and projections) drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    if family in ("masked", "uniform"):
        return tv_to_law(samples, _law(problem))
    if family == "bridge":
        samples = torch.cat([samples.double(), problem.options["source"]["x"].double()], dim=1)
    exact = _exact(family, problem, len(samples), generator)
    return 1000 * mmd_squared(samples.double(), exact.double(), generator=generator)


def noise_floor(family: str, ctx: CheckContext, n: int, repeats: int) -> float:
    """Mean + 2 sd of the error of an exact sample of size n (the statistic's own sampling noise)."""
    values = []
    for r in range(repeats):
        g = torch.Generator().manual_seed(1000 + r)
        problem = sampler_problem(family, ctx, n, g)
        if family in ("masked", "uniform"):
            from polydiff.testing.oracles import EnumeratedSequenceOracle

            exact = EnumeratedSequenceOracle(_law(problem)).sample(n, g)
        elif family == "bridge":
            exact = _exact(family, problem, n, g)
            problem.options["source"]["x"] = exact[:, 2:]
            exact = exact[:, :2]
        else:
            exact = _exact(family, problem, n, g)
        values.append(error(family, problem, exact, 10_000 + r))
    v = torch.tensor(values, dtype=torch.float64)
    return float(v.mean() + 2 * v.std())


VARIANTS = {"masked_confidence": [{"strategy": "confidence"}, {"strategy": "random"}]}
"""Samplers benchmarked with more than their default options."""


def _cell(spec, family: str, ctx: CheckContext, n: int, steps: int, seed: int, options: dict) -> tuple[float, int]:
    """One sampler run from the prior of ``seed`` (shared by every step count: common random
    numbers), scored against the exact reference sample of the same seed."""
    g = torch.Generator().manual_seed(seed)
    problem = sampler_problem(family, ctx, n, g)
    grid = make_grid(spec.default_grid, problem.processes, steps)
    with torch.no_grad():
        out = spec.function(problem.predict, problem.processes, problem.prior, grid, generator=g,
                            **problem.options, **options)
    return error(family, problem, out.state["x"], 10_000 + seed), out.nfe


def run(args: argparse.Namespace) -> pd.DataFrame:
    manager = polydiff.make_plugin_manager(autoload=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ctx = CheckContext(manager, TINY, Path(tmp))
        for family in FAMILIES:
            floor = noise_floor(family, ctx, args.n, 2 * args.repeats)
            for name in samplers_of(family, manager.registry):
                spec = manager.registry.get("sampler", name)
                for options in VARIANTS.get(name, [{}]):
                    label = name + "".join(f" ({k}={v})" for k, v in options.items())
                    for steps in args.steps:
                        cells = [_cell(spec, family, ctx, args.n, steps, r, options)
                                 for r in range(args.repeats)]
                        value = sum(c[0] for c in cells) / len(cells)
                        nfe = max(c[1] for c in cells)
                        rows.append({"family": family, "sampler": label, "grid": spec.default_grid, "steps": steps,
                                     "nfe": nfe, "error": value, "noise_floor": floor})
                        print(f"{family:>9} {label:>34} steps={steps:<4} nfe={nfe:<4} error={value:.4f} "
                              f"(band {floor:.4f})", file=sys.stderr)
    return pd.DataFrame(rows)


def write(table: pd.DataFrame, args: argparse.Namespace) -> str:
    metric = {"gaussian": "1e3 MMD2", "masked": "TV", "uniform": "TV", "reflected": "1e3 MMD2",
              "bridge": "1e3 MMD2 (x0, x1)"}
    wide = table.pivot_table(index=["family", "sampler", "grid"], columns="steps", values="error", sort=False)
    wide.columns = [f"err@{c}" for c in wide.columns]
    nfe = table.pivot_table(index=["family", "sampler", "grid"], columns="steps", values="nfe", sort=False)
    wide[f"nfe@{args.steps[-1]}"] = nfe[args.steps[-1]].astype(int)
    floors = table.groupby(["family", "sampler", "grid"], sort=False)["noise_floor"].first()
    wide["noise band"] = floors
    wide[f"inside band @{args.steps[-1]}"] = wide[f"err@{args.steps[-1]}"] <= wide["noise band"]
    wide.insert(0, "statistic", [metric[f] for f, _, _ in wide.index])
    setup = (f"Exact oracle denoisers, {args.n} samples per cell, each error the mean over {args.repeats} seeds "
             "(prior draw and exact reference fixed per seed across samplers and steps), "
             "each sampler on its default time grid. "
             f"Machine: {platform.machine()}, torch {torch.__version__}, no GPU needed (the oracles run on the CPU). "
             "NFE: network calls spent (masked_cached skips calls when nothing unmasks; the reflected Heun ODE "
             "spends two per step).")
    text = (f"# Every family's samplers against exact oracles\n\n{setup}\n\n"
            + wide.reset_index().to_markdown(index=False, floatfmt=".4g") + "\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "oracle_families.md").write_text(text, encoding="utf-8")
    table.to_csv(args.out / "oracle_families.csv", index=False)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    parser.add_argument("--repeats", type=int, default=5, help="seeds averaged per cell")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    print(write(run(args), args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
