"""Built-in reflected corruption family and its samplers (registered through the hooks)."""
from __future__ import annotations

from collections.abc import Iterator

from polydiff.corruptions.reflected import ReflectedCorruption
from polydiff.hookspecs import hookimpl
from polydiff.samplers.reflected import REFLECTED, sample_reflected_ode, sample_reflected_sde
from polydiff.spaces import Space
from polydiff.specs import CorruptionSpec, SamplerSpec


def reflected(space: Space, *, sigma_min: float = 0.01, sigma_max: float = 2.0, t_min: float = 0.0,
              field: str = "") -> ReflectedCorruption:
    """Build a ``ReflectedCorruption`` (Lou & Ermon 2023) for a ``Bounded`` field; see its docstring."""
    return ReflectedCorruption(space, sigma_min=sigma_min, sigma_max=sigma_max, t_min=t_min, field=field)


@hookimpl
def polydiff_corruptions() -> Iterator[CorruptionSpec]:
    """Reflected Brownian motion on the box of a bounded field."""
    yield CorruptionSpec(name="reflected", summary="Brownian motion reflected at the box walls, uniform prior "
                         "(Lou & Ermon 2023)", family="reflected", factory=reflected,
                         spaces=frozenset({"bounded"}))


@hookimpl
def polydiff_samplers() -> Iterator[SamplerSpec]:
    """The reflected reverse SDE and probability-flow ODE; a uniform grid in t is geometric in sigma."""
    yield SamplerSpec(name="reflected_sde", summary="reflected Euler-Maruyama on the reverse SDE, optional "
                      "reflected Langevin corrector (Lou & Ermon 2023)", function=sample_reflected_sde,
                      families=REFLECTED, default_grid="uniform")
    yield SamplerSpec(name="reflected_ode", summary="Heun on the probability-flow ODE in sigma, reflected at the "
                      "walls after every stage", function=sample_reflected_ode, families=REFLECTED,
                      default_grid="uniform", nfe_per_step=2)
