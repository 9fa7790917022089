"""Built-in discrete corruption families (masked, uniform) and the masked-family samplers.

Registered through the same hooks as any plugin. The factories take plain values (they
come from the ``[corruption]`` table of a config); the uniform family is sampled by the
generic ``"ancestral"`` sampler (its exact one-token reverse step), the masked family by
``"ancestral"`` or the four samplers below. See docs/discrete.md.
"""
from __future__ import annotations

from collections.abc import Iterator

from polydiff.corruptions.masked import MaskedCorruption
from polydiff.corruptions.uniform import UniformCorruption
from polydiff.hookspecs import hookimpl
from polydiff.samplers.masked import sample_confidence, sample_masked, sample_masked_cached, sample_semi_ar
from polydiff.spaces import Space
from polydiff.specs import CorruptionSpec, SamplerSpec

DISCRETE = frozenset({"discrete"})
MASKED = frozenset({"masked"})


def masked(space: Space, *, schedule: str = "log-linear", t_min: float = 1e-3, low_discrepancy: bool = True,
           field: str = "") -> MaskedCorruption:
    """Build a ``MaskedCorruption`` with a masking schedule ``"linear"``, ``"cosine"`` or ``"log-linear"``.

    Raises:
        ValueError: an unknown schedule name, listing the allowed ones.
    """
    return MaskedCorruption(space, schedule, t_min=t_min, low_discrepancy=low_discrepancy, field=field)


def uniform(space: Space, *, schedule: str = "log-linear", t_min: float = 1e-3, low_discrepancy: bool = True,
            field: str = "") -> UniformCorruption:
    """Build a ``UniformCorruption`` with a masking schedule ``"linear"``, ``"cosine"`` or ``"log-linear"``.

    Raises:
        ValueError: an unknown schedule name, listing the allowed ones.
    """
    return UniformCorruption(space, schedule, t_min=t_min, low_discrepancy=low_discrepancy, field=field)


@hookimpl
def polydiff_corruptions() -> Iterator[CorruptionSpec]:
    """The masked (absorbing) and uniform discrete processes."""
    yield CorruptionSpec(name="masked", summary="absorbing-state masking with SUBS and the MDLM/MD4 NELBO "
                         "(Sahoo et al. 2024; Shi et al. 2024)", family="masked", factory=masked, spaces=DISCRETE)
    yield CorruptionSpec(name="uniform", summary="uniform token resampling, D3PM/UDLM with the CTMC ELBO "
                         "(Austin et al. 2021; Schiff et al. 2024)", family="uniform", factory=uniform,
                         spaces=DISCRETE)


@hookimpl
def polydiff_samplers() -> Iterator[SamplerSpec]:
    """Ancestral masked sampling (with ReMDM remasking), its cached form, confidence and semi-AR."""
    yield SamplerSpec(name="masked", summary="ancestral masked sampling with optional ReMDM remasking "
                      "(Sahoo et al. 2024; Wang et al. 2025)", function=sample_masked, families=MASKED,
                      default_grid="uniform")
    yield SamplerSpec(name="masked_cached", summary="ancestral masked sampling reusing the network output "
                      "while nothing changes (MDLM cache)", function=sample_masked_cached, families=MASKED,
                      default_grid="uniform")
    yield SamplerSpec(name="masked_confidence", summary="confidence / margin / random-order unmasking "
                      "(MaskGIT, LLaDA)", function=sample_confidence, families=MASKED, default_grid="uniform")
    yield SamplerSpec(name="masked_semi_ar", summary="semi-autoregressive blocks of masked sampling "
                      "(LLaDA, SSD-LM, BD3-LM)", function=sample_semi_ar, families=MASKED, default_grid="uniform")
