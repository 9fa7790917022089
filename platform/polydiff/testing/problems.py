"""Toy laws with exact denoisers, one per corruption family, on which samplers are checked.

``sampler_problem(family, ctx, n, generator)`` builds a one-field problem with the core's
built-in process of that family and its closed-form oracle (``polydiff.testing.oracles``);
the conformance kit's sampler checks and ``bench/oracle_families.py`` both use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

import polydiff

__all__ = ["SAMPLER_FAMILY_ORDER", "SamplerProblem", "fixed_law", "sampler_family", "sampler_problem"]


@dataclass
class SamplerProblem:
    """One field of a toy law with its exact denoiser, for the sampler checks.

    Attributes:
        space: the field's space (the field is ``"x"``).
        processes: ``{"x": Corruption}``.
        predict: the exact ``PredictFn`` (needs batches of ``prior``'s size).
        prior: the prior State the sampler starts from.
        options: extra sampler keywords (``source`` for bridges).
    """

    space: polydiff.Space
    processes: dict[str, polydiff.Corruption]
    predict: Any
    prior: dict[str, torch.Tensor]
    options: dict[str, Any]


SAMPLER_FAMILY_ORDER = ("gaussian", "masked", "uniform", "reflected", "bridge", "autoregressive")
"""The family whose toy problem a sampler is checked on: the first it supports in this order."""


def _process(ctx: Any, name: str, space: polydiff.Space, **options: Any) -> dict[str, polydiff.Corruption]:
    from polydiff.testing.checks import build_corruption  # checks imports this module

    return {"x": build_corruption(ctx.manager.registry.get("corruption", name), space, ctx, **options)}


def sampler_problem(family: str, ctx: Any, n: int, generator: torch.Generator) -> SamplerProblem:
    """The toy problem of ``family`` for ``n`` samples (the core's built-in processes and oracles):
    a 2-D Gaussian mixture (gaussian), a law over 27 sequences of 3 tokens (masked, uniform),
    three points in the unit box (reflected), paired 2-D Gaussians (bridge); the token law's
    exact causal conditionals for the autoregressive family."""
    from polydiff.testing import oracles

    if family == "gaussian":
        space = polydiff.Continuous((2,))
        processes = _process(ctx, "gaussian", space, schedule="vp-cosine")
        oracle = oracles.GaussianMixtureOracle([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], 0.25 * torch.eye(2).repeat(2, 1, 1))
        return SamplerProblem(space, processes, oracle.predict_fn(processes),
                              {"x": processes["x"].prior(n, generator=generator)}, {})
    if family in ("masked", "uniform", "autoregressive"):
        space = polydiff.Discrete((3,), vocab_size=3)
        processes = _process(ctx, family, space)
        oracle = oracles.EnumeratedSequenceOracle(fixed_law().reshape(3, 3, 3))
        return SamplerProblem(space, processes, oracle.predict_fn(processes),
                              {"x": processes["x"].prior(n, generator=generator)}, {})
    if family == "reflected":
        space = polydiff.Bounded((2,), low=0.0, high=1.0)
        processes = _process(ctx, "reflected", space)
        oracle = oracles.ReflectedPointOracle([[0.1, 0.1], [0.5, 0.9], [0.9, 0.3]], [0.5, 0.3, 0.2], 0.0, 1.0)
        return SamplerProblem(space, processes, oracle.predict_fn(processes),
                              {"x": processes["x"].prior(n, generator=generator)}, {})
    if family == "bridge":
        space = polydiff.Continuous((2,))
        processes = _process(ctx, "bridge", space)
        oracle = oracles.PairedGaussianOracle(torch.zeros(2), torch.eye(2), 0.5 * torch.eye(2), 0.1 * torch.eye(2))
        _, x1 = oracle.sample_pairs(n, generator)
        x1 = x1.float()
        source = {"x": x1}
        return SamplerProblem(space, processes, oracle.predict_fn(processes, source),
                              {"x": processes["x"].prior(n, generator=generator, source=x1)}, {"source": source})
    raise ValueError(f"no toy sampler problem for family {family!r}; families: {list(SAMPLER_FAMILY_ORDER)}")


def fixed_law() -> torch.Tensor:
    """A fixed law over the 27 sequences of 3 tokens in {0, 1, 2}, some of them impossible."""
    weights = torch.arange(27, dtype=torch.float64) % 5
    return weights / weights.sum()


def sampler_family(spec: polydiff.SamplerSpec) -> str:
    """The family a sampler's behaviour is checked on (see ``SAMPLER_FAMILY_ORDER``)."""
    return next(f for f in SAMPLER_FAMILY_ORDER if f in spec.families)


