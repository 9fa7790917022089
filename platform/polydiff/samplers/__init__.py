"""Samplers: plain functions ``fn(model, processes, x, grid, *, generator, callback, **options)``."""
from polydiff.samplers.ancestral import sample_ancestral
from polydiff.samplers.bridge import sample_bridge_ode, sample_bridge_sde
from polydiff.samplers.common import SampleOutput
from polydiff.samplers.gaussian_ode import (sample_ddim, sample_dpmpp_2m, sample_dpmpp_3m, sample_euler,
                                            sample_heun, sample_unipc)
from polydiff.samplers.gaussian_sde import sample_euler_maruyama, sample_pc
from polydiff.samplers.grids import GRIDS, make_grid
from polydiff.samplers.guidance import classifier_free_guidance, gradient_guidance, inpaint
from polydiff.samplers.masked import fix_tokens, sample_confidence, sample_masked, sample_masked_cached, sample_semi_ar
from polydiff.samplers.reflected import sample_reflected_ode, sample_reflected_sde

__all__ = [
    "GRIDS", "SampleOutput", "classifier_free_guidance", "fix_tokens", "gradient_guidance", "inpaint", "make_grid",
    "sample_ancestral", "sample_bridge_ode", "sample_bridge_sde", "sample_confidence", "sample_ddim",
    "sample_dpmpp_2m", "sample_dpmpp_3m", "sample_euler", "sample_euler_maruyama", "sample_heun", "sample_masked",
    "sample_masked_cached", "sample_pc", "sample_reflected_ode", "sample_reflected_sde", "sample_semi_ar",
    "sample_unipc",
]
