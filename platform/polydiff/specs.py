"""Frozen records that registration hooks return.

Each hook ``polydiff_<kind>s`` yields spec objects; the plugin manager validates them
(lowercase unique names, non-empty summary, callable factory) and indexes them by
``(kind, name)``. A spec names *what* a component is and *how to build it*; it holds no
state. ``plugin`` and ``distribution`` are filled in by the plugin manager.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_\-]*$")

FAMILIES = frozenset({"gaussian", "masked", "uniform", "reflected", "bridge", "composite", "autoregressive"})
"""Corruption families known to the core. Samplers declare which of them they support."""


@dataclass(frozen=True)
class _Spec:
    name: str
    summary: str
    plugin: str = field(default="", compare=False)
    distribution: str = field(default="", compare=False)

    kind = "component"

    def problems(self) -> list[str]:
        """Describe what is wrong with this spec (empty when valid)."""
        out = []
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            out.append(f"name {self.name!r} must be lowercase letters, digits, '_' or '-', starting with a letter")
        if not isinstance(self.summary, str) or not self.summary.strip():
            out.append(f"{self.kind} {self.name!r} needs a non-empty summary")
        return out


@dataclass(frozen=True)
class ModalitySpec(_Spec):
    """A data modality: what one sample is, how data is read and how results are written.

    Attributes:
        name: unique lowercase name, e.g. ``"toy"``, ``"image"``.
        summary: one line shown by ``polydiff plugins list``.
        factory: ``factory(**options) -> Modality`` (see ``polydiff.protocols.Modality``);
            ``options`` come from the ``[modality]`` table of an experiment config.
        demo_config: a complete experiment config (as a dict) that ``polydiff demo`` runs
            at a small budget; None when the modality has no demo.
    """

    factory: Callable[..., Any] = None  # type: ignore[assignment]
    demo_config: Mapping[str, Any] | None = None
    kind = "modality"

    def problems(self) -> list[str]:
        """As ``_Spec.problems``, and the factory must be callable."""
        out = super().problems()
        if not callable(self.factory):
            out.append(f"modality {self.name!r}: factory must be callable")
        return out


@dataclass(frozen=True)
class ScheduleSpec(_Spec):
    """A Gaussian noise schedule ``t -> (alpha, sigma)``; see ``polydiff.schedules.Schedule``.

    Attributes:
        factory: ``factory(**options) -> Schedule``.
    """

    factory: Callable[..., Any] = None  # type: ignore[assignment]
    kind = "schedule"

    def problems(self) -> list[str]:
        """As ``_Spec.problems``, and the factory must be callable."""
        out = super().problems()
        if not callable(self.factory):
            out.append(f"schedule {self.name!r}: factory must be callable")
        return out


@dataclass(frozen=True)
class CorruptionSpec(_Spec):
    """A corruption (forward) process family member.

    Attributes:
        family: one of ``FAMILIES``; samplers are matched to processes by family.
        factory: ``factory(space, **options) -> Corruption`` for one field's space.
        spaces: the space kinds it accepts (``"continuous"``, ``"bounded"``, ``"discrete"``).
    """

    family: str = ""
    factory: Callable[..., Any] = None  # type: ignore[assignment]
    spaces: frozenset[str] = frozenset()
    kind = "corruption"

    def problems(self) -> list[str]:
        """As ``_Spec.problems``, and a known family, callable factory, declared spaces."""
        out = super().problems()
        if self.family not in FAMILIES:
            out.append(f"corruption {self.name!r}: family {self.family!r} is not one of {sorted(FAMILIES)}")
        if not callable(self.factory):
            out.append(f"corruption {self.name!r}: factory must be callable")
        if not self.spaces:
            out.append(f"corruption {self.name!r}: declare the space kinds it accepts")
        return out


@dataclass(frozen=True)
class DenoiserSpec(_Spec):
    """A denoiser network.

    Attributes:
        factory: ``factory(spaces, cond_spaces, **options) -> torch.nn.Module`` whose
            ``forward(x_t: State, t: Tensor (B,), cond: State | None) -> State`` returns one
            raw output per diffused field with that field's shape (plus a trailing vocab
            axis for discrete fields).
        spaces: the space kinds of diffused fields it can take.
        modalities: modality names it is built for; empty means any modality whose fields
            are of the accepted space kinds.
        conditional: whether it accepts ``cond`` (and so classifier-free guidance).
        causal: whether the output at sequence position i depends only on the inputs at
            positions < i (a causal language model); the ``autoregressive`` process requires
            it, and a causal network may offer ``decoder(n, cond)`` for cached decoding
            (see ``polydiff.samplers.autoregressive``).
        kit_options: factory options that make the network small enough for the
            conformance kit's tiny training runs (e.g. ``{"channels": 16}``); the kit also
            passes ``width`` and ``depth`` when the factory takes them.
    """

    factory: Callable[..., Any] = None  # type: ignore[assignment]
    spaces: frozenset[str] = frozenset({"continuous", "bounded"})
    modalities: frozenset[str] = frozenset()
    conditional: bool = False
    causal: bool = False
    kit_options: Mapping[str, Any] = field(default_factory=dict)
    kind = "denoiser"

    def problems(self) -> list[str]:
        """As ``_Spec.problems``, and the factory must be callable."""
        out = super().problems()
        if not callable(self.factory):
            out.append(f"denoiser {self.name!r}: factory must be callable")
        return out


@dataclass(frozen=True)
class SamplerSpec(_Spec):
    """A sampler: a plain function, stateless between calls.

    Attributes:
        function: ``function(model, processes, x, grid, *, generator=None, callback=None,
            **options) -> SampleOutput``; see ``polydiff.protocols.Sampler``.
        families: corruption families it supports; a mismatch is a clear error.
        default_grid: the time grid used when a config names none
            (``"uniform"``, ``"karras"`` or ``"logsnr"``).
        nfe_per_step: network evaluations per grid interval (Heun: 2), for budgeting.
    """

    function: Callable[..., Any] = None  # type: ignore[assignment]
    families: frozenset[str] = frozenset({"gaussian"})
    default_grid: str = "uniform"
    nfe_per_step: int = 1
    kind = "sampler"

    def problems(self) -> list[str]:
        """As ``_Spec.problems``, and known families, a callable function."""
        out = super().problems()
        if not callable(self.function):
            out.append(f"sampler {self.name!r}: function must be callable")
        unknown = set(self.families) - FAMILIES
        if unknown or not self.families:
            out.append(f"sampler {self.name!r}: families {sorted(self.families)} must be a non-empty subset of {sorted(FAMILIES)}")
        return out


@dataclass(frozen=True)
class MetricSpec(_Spec):
    """A sample-quality metric.

    Attributes:
        function: ``function(samples: State, reference: State, *, spaces, generator)
            -> list[dict]`` tidy rows, each at least ``{"metric": name, "value": float}``
            (extra keys such as ``"field"`` allowed). A function that also declares a
            keyword ``modality`` receives the Modality object (opt-in, like pluggy's
            arguments): for metrics that need the training split.
        modalities: modality names it applies to; empty means every modality.
        higher_is_better: the direction used by comparison reports.
        kit_options: modality options the conformance kit builds the metric's modality
            with (e.g. ``{"conditional": True}`` for a metric of class-conditional samples).
    """

    function: Callable[..., Any] = None  # type: ignore[assignment]
    modalities: frozenset[str] = frozenset()
    higher_is_better: bool = False
    kit_options: Mapping[str, Any] = field(default_factory=dict)
    kind = "metric"

    def problems(self) -> list[str]:
        """As ``_Spec.problems``, and the function must be callable."""
        out = super().problems()
        if not callable(self.function):
            out.append(f"metric {self.name!r}: function must be callable")
        return out


SPEC_TYPES: dict[str, type[_Spec]] = {
    "modality": ModalitySpec,
    "schedule": ScheduleSpec,
    "corruption": CorruptionSpec,
    "denoiser": DenoiserSpec,
    "sampler": SamplerSpec,
    "metric": MetricSpec,
}
"""Component kind -> the spec type its registration hook must yield."""
