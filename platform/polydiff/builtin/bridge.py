"""Built-in bridge corruption family and its samplers (registered through the hooks).

``bridge`` builds a ``BridgeCorruption`` (Brownian / I2SB, VP and VE / DDBM, OU / SGMSE)
from the plain values of a ``[corruption]`` table; ``bridge_sde`` and ``bridge_ode`` are
the DBIM samplers (Zheng et al. 2024) of ``polydiff.samplers.bridge``.
"""
from __future__ import annotations

from collections.abc import Iterator

from polydiff.corruptions.bridge import BRIDGES, BridgeCorruption
from polydiff.hookspecs import hookimpl
from polydiff.samplers.bridge import sample_bridge_ode, sample_bridge_sde
from polydiff.spaces import Space
from polydiff.specs import CorruptionSpec, SamplerSpec

BRIDGE = frozenset({"bridge"})


def bridge_corruption(space: Space, *, bridge: str = "brownian", sigma: float | None = None,
                      profile: str | None = None, beta_min: float | None = None, beta_max: float | None = None,
                      sigma_min: float | None = None, sigma_max: float | None = None, gamma: float | None = None,
                      parametrization: str = "x0", weighting: str = "none", sigma_data: float = 0.5,
                      sigma_source: float = 0.5, data_source_cov: float = 0.0, t_min: float = 1e-3,
                      t_max: float = 1.0, field: str = "") -> BridgeCorruption:
    """Build a ``BridgeCorruption``; every option is a plain value (see its docstring).

    Raises:
        ValueError: an unknown ``bridge`` (listing ``BRIDGES``) or an option the bridge does not take.
    """
    if bridge not in BRIDGES:
        raise ValueError(f"corruption 'bridge': unknown bridge {bridge!r}; bridges: {sorted(BRIDGES)}")
    return BridgeCorruption(space, bridge=bridge, sigma=sigma, profile=profile, beta_min=beta_min, beta_max=beta_max,
                            sigma_min=sigma_min, sigma_max=sigma_max, gamma=gamma, parametrization=parametrization,
                            weighting=weighting, sigma_data=sigma_data, sigma_source=sigma_source,
                            data_source_cov=data_source_cov, t_min=t_min, t_max=t_max, field=field)


@hookimpl
def polydiff_corruptions() -> Iterator[CorruptionSpec]:
    """The bridge family: one spec whose ``bridge`` option picks the bridge."""
    yield CorruptionSpec(name="bridge", summary="diffusion bridge pinned at a paired x1: brownian (I2SB), vp/ve "
                                                "(DDBM), ou (SGMSE); predicts E[x0 | x_t, x1]",
                         family="bridge", factory=bridge_corruption, spaces=frozenset({"continuous", "bounded"}))


@hookimpl
def polydiff_samplers() -> Iterator[SamplerSpec]:
    """The bridge SDE (DBIM eta, ancestral at eta = 1) and the bridge ODE (DBIM eta = 0)."""
    yield SamplerSpec(name="bridge_sde", summary="bridge SDE: DBIM steps with eta, I2SB's posterior sampler at eta = 1",
                      function=sample_bridge_sde, families=BRIDGE, default_grid="uniform")
    yield SamplerSpec(name="bridge_ode", summary="bridge ODE: DBIM eta = 0 with a booting-noise first step",
                      function=sample_bridge_ode, families=BRIDGE, default_grid="uniform")
