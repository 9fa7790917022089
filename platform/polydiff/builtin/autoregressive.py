"""The built-in ``autoregressive`` process (a causal language model) and its left-to-right sampler.

Registered like any plugin. The process needs a causal denoiser (``DenoiserSpec(causal=True)``,
e.g. the core's ``causal_transformer``); ``build_experiment`` says so when it is paired with
another. See ``polydiff.corruptions.autoregressive`` and docs/discrete.md.
"""
from __future__ import annotations

from collections.abc import Iterator

from polydiff.corruptions.autoregressive import AutoregressiveCorruption
from polydiff.hookspecs import hookimpl
from polydiff.samplers.autoregressive import AUTOREGRESSIVE, sample_autoregressive
from polydiff.spaces import Space
from polydiff.specs import CorruptionSpec, SamplerSpec


def autoregressive(space: Space, *, field: str = "") -> AutoregressiveCorruption:
    """Build an ``AutoregressiveCorruption`` for a ``Discrete((L,), V)`` field.

    Raises:
        ValueError: a field with more than one axis.
    """
    return AutoregressiveCorruption(space, field=field)


@hookimpl
def polydiff_corruptions() -> Iterator[CorruptionSpec]:
    """Teacher forcing for a causal network: exact next-token likelihood in the shared loop."""
    yield CorruptionSpec(name="autoregressive", summary="a causal language model: next-token cross entropy, "
                         "exact likelihood", family="autoregressive", factory=autoregressive,
                         spaces=frozenset({"discrete"}))


@hookimpl
def polydiff_samplers() -> Iterator[SamplerSpec]:
    """Left-to-right sampling with temperature / top-k and the network's key / value cache."""
    yield SamplerSpec(name="autoregressive", summary="left-to-right sampling, one token per call, "
                      "key / value cache when the network offers one", function=sample_autoregressive,
                      families=AUTOREGRESSIVE, default_grid="uniform")
