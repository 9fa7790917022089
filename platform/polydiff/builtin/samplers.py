"""Built-in samplers: the generic ancestral sampler and the Gaussian-family solvers.

Default grids: "trailing" (uniform in t down to t_max / steps) for every sampler but Heun,
which keeps EDM's "karras" grid; chosen for the lowest error at NFE 10-20 over the oracle
schedules (VP linear / cosine, VE, EDM, flow) -- see docs/samplers.md, "Default grids".
"""
from __future__ import annotations

from collections.abc import Iterator

from polydiff.hookspecs import hookimpl
from polydiff.samplers import (sample_ancestral, sample_ddim, sample_dpmpp_2m, sample_dpmpp_3m, sample_euler,
                               sample_euler_maruyama, sample_heun, sample_pc, sample_unipc)
from polydiff.samplers.ancestral import ANCESTRAL_FAMILIES
from polydiff.specs import SamplerSpec

GAUSSIAN = frozenset({"gaussian"})


@hookimpl
def polydiff_samplers() -> Iterator[SamplerSpec]:
    """Ancestral (every family) and the Gaussian ODE / SDE samplers."""
    yield SamplerSpec(name="ancestral", summary="each process's reverse step q(x_s | x_t, x0_hat); DDPM for gaussian",
                      function=sample_ancestral, families=ANCESTRAL_FAMILIES, default_grid="trailing")
    yield SamplerSpec(name="ddim", summary="DDIM with eta (Song et al. 2021), any (alpha, sigma)",
                      function=sample_ddim, families=GAUSSIAN, default_grid="trailing")
    yield SamplerSpec(name="euler", summary="Euler on the probability-flow ODE, EDM variables (Karras et al. 2022)",
                      function=sample_euler, families=GAUSSIAN, default_grid="trailing")
    yield SamplerSpec(name="heun", summary="Heun with churn, EDM Algorithm 2 (Karras et al. 2022)",
                      function=sample_heun, families=GAUSSIAN, default_grid="karras", nfe_per_step=2)
    yield SamplerSpec(name="dpmpp_2m", summary="DPM-Solver++(2M), data prediction (Lu et al. 2022)",
                      function=sample_dpmpp_2m, families=GAUSSIAN, default_grid="trailing")
    yield SamplerSpec(name="dpmpp_3m", summary="DPM-Solver++ 3rd-order multistep (Lu et al. 2022)",
                      function=sample_dpmpp_3m, families=GAUSSIAN, default_grid="trailing")
    yield SamplerSpec(name="unipc", summary="UniPC predictor-corrector, bh2, order 2 (Zhao et al. 2023)",
                      function=sample_unipc, families=GAUSSIAN, default_grid="trailing")
    yield SamplerSpec(name="euler_maruyama", summary="Euler-Maruyama on the reverse SDE (Song et al. 2021)",
                      function=sample_euler_maruyama, families=GAUSSIAN, default_grid="trailing")
    yield SamplerSpec(name="pc", summary="reverse-diffusion predictor + Langevin corrector (Song et al. 2021)",
                      function=sample_pc, families=GAUSSIAN, default_grid="trailing", nfe_per_step=2)
