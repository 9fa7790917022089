"""``PluginConformance``, ``iter_checks`` and ``check_plugin``: running the checks.

``iter_checks`` looks at what a plugin registered and yields ``(component, check)`` pairs
by declared capability (sklearn ``_yield_all_checks``). ``PluginConformance`` turns them
into one parametrised pytest test; ``check_plugin`` runs them without pytest (that is what
``polydiff plugins check NAME`` calls, like sklearn's ``check_estimator``).

A plugin author writes the whole test module::

    from polydiff.testing import PluginConformance

    class TestImagePlugin(PluginConformance):
        plugin = "image"              # the entry-point name
        budget = "tiny"               # see polydiff.testing.budgets
        expected_failures = {          # data: each becomes xfail(strict=True)
            "denoiser[unet,corruption=gaussian]-check_tiny_training_lowers_loss": "needs > tiny budget",
        }

A key of ``expected_failures`` is a full test id (``<component>-<check>``) or a bare check
name, which then applies to every component it runs on.
"""
from __future__ import annotations

import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import polydiff
from polydiff.testing import checks as C
from polydiff.testing.budgets import Budget, get_budget
from polydiff.testing.problems import SAMPLER_FAMILY_ORDER

Check = Callable[[C.Component, C.CheckContext], None]
ALL_FAMILIES = frozenset({"gaussian", "masked", "uniform", "reflected", "bridge"})
"""The families of the generic ancestral sampler (autoregressive has its own)."""
UNPAIRED_FAMILIES = frozenset({"composite"})
"""Families never paired with a denoiser automatically: they need a process per field."""


def _plugin_checks(name: str) -> Iterator[tuple[C.Component, Check]]:
    component = C.Component("plugin", name)
    for check in (C.check_entry_point_loads, C.check_specs_valid, C.check_no_import_side_effects):
        yield component, check


def _modality_checks(spec: Any, ctx: C.CheckContext) -> Iterator[tuple[C.Component, Check]]:
    component = C.Component("modality", spec.name, spec)
    for check in (C.check_spaces_declared, C.check_dataset_matches_spaces, C.check_encode_decode_roundtrip,
                  C.check_artefact_written):
        yield component, check
    if callable(getattr(spec.factory, "check_data", None)) or _has_data_check(spec, ctx):
        yield component, C.check_missing_data_message


def _has_data_check(spec: Any, ctx: C.CheckContext) -> bool:
    try:
        return callable(getattr(C.build_modality(spec.name, ctx), "check_data", None))
    except Exception:  # the modality checks themselves report a factory that fails
        return False


def _corruption_checks(spec: Any, ctx: C.CheckContext) -> Iterator[tuple[C.Component, Check]]:
    component = C.Component("corruption", spec.name, spec)
    yield component, C.check_corrupt_shapes
    if spec.family == "autoregressive":  # no time: no forward marginal at t = 1, no reverse step
        return
    yield component, C.check_prior_matches_t1
    if _has_conversions(spec, ctx):
        yield component, C.check_parameterisation_roundtrip
    yield component, C.check_reverse_step_defined


def _has_conversions(spec: Any, ctx: C.CheckContext) -> bool:
    kinds = sorted(spec.spaces - {"discrete"})
    if not kinds:
        return False
    try:
        process = C.build_corruption(spec, C.example_space(kinds[0]), ctx)
    except Exception:  # check_corrupt_shapes reports a factory that fails
        return False
    return callable(getattr(process, "target", None))


TOY_MODALITIES = ("toy", "toy-tokens", "toy-box", "toy-paired")
"""The core's one-field toy modalities (continuous, discrete, bounded, paired) that denoisers
without a modality of their own are trained on."""


def _modality_fits(name: str, kinds: set[str], bridge: bool, ctx: C.CheckContext) -> bool:
    """Whether modality ``name`` has only fields of ``kinds`` and, for a bridge, declares pairs."""
    try:
        modality = C.build_modality(name, ctx)
    except Exception:
        return False
    fields = {s.kind for s in modality.spaces.values()}
    return fields <= kinds and (not bridge or bool(getattr(modality, "pairs", None)))


def _denoiser_modality(spec: Any, corruption: Any, plugin: str, ctx: C.CheckContext) -> str:
    """The modality a (denoiser, corruption) pair trains on: one the denoiser names, else its
    plugin's own, else a core toy modality, whose field kinds both accept ("" if none)."""
    registry = ctx.manager.registry
    installed = set(registry.names("modality"))
    named = sorted(spec.modalities & installed)
    own = sorted(s.name for s in registry.of_plugin(plugin) if s.kind == "modality")
    candidates = named or own + [m for m in TOY_MODALITIES if m in installed]
    kinds = set(spec.spaces) & set(corruption.spaces)
    bridge = corruption.family == "bridge"
    return next((m for m in candidates if _modality_fits(m, kinds, bridge, ctx)), "")


def _denoiser_checks(spec: Any, plugin: str, ctx: C.CheckContext) -> Iterator[tuple[C.Component, Check]]:
    for corruption in ctx.manager.registry.specs("corruption"):
        if corruption.family in UNPAIRED_FAMILIES or (corruption.family == "autoregressive") != spec.causal:
            continue
        modality = _denoiser_modality(spec, corruption, plugin, ctx)
        if not modality:
            continue
        component = C.Component("denoiser", spec.name, spec, partner=corruption, modality=modality)
        yield component, C.check_forward_per_field
        if spec.conditional:
            yield component, C.check_cond_dropout_supported
        yield component, C.check_tiny_training_lowers_loss
        yield component, C.check_checkpoint_roundtrip


def _sampler_checks(spec: Any) -> Iterator[tuple[C.Component, Check]]:
    component = C.Component("sampler", spec.name, spec)
    yield component, C.check_signature_matches_protocol
    if any(f in spec.families for f in SAMPLER_FAMILY_ORDER):
        for check in (C.check_returns_declared_space, C.check_seeded_determinism, C.check_nfe_reported):
            yield component, check
    if not ALL_FAMILIES <= set(spec.families):
        yield component, C.check_rejects_unsupported_family


def iter_checks(plugin_name: str, manager: polydiff.PluginManager | None = None, *,
                budget: str | Budget = "tiny", tmp_dir: Path | None = None) -> Iterator[tuple[C.Component, Check]]:
    """Yield every applicable ``(component, check)`` pair for the plugin ``plugin_name``.

    Args:
        plugin_name: the entry-point name (``"image"``) or a built-in (``"builtin.toy"``).
        manager: where to look the plugin up; default: a fresh ``make_plugin_manager()``.
        budget: sizes the capability probes use (they build modalities and processes).
        tmp_dir: scratch folder for the probes; default: a temporary folder.

    Yields:
        The plugin-level checks first, then per modality, corruption, denoiser (paired with
        each compatible corruption), sampler and metric, each in name order.
    """
    manager = manager or polydiff.make_plugin_manager()
    with tempfile.TemporaryDirectory(prefix="polydiff-kit-") as scratch:
        ctx = C.CheckContext(manager, get_budget(budget), Path(tmp_dir or scratch))
        yield from _plugin_checks(plugin_name)
        specs = sorted(manager.registry.of_plugin(plugin_name), key=lambda s: (s.kind, s.name))
        by_kind = {kind: [s for s in specs if s.kind == kind] for kind in
                   ("modality", "corruption", "denoiser", "sampler", "metric")}
        for spec in by_kind["modality"]:
            yield from _modality_checks(spec, ctx)
        for spec in by_kind["corruption"]:
            yield from _corruption_checks(spec, ctx)
        for spec in by_kind["denoiser"]:
            yield from _denoiser_checks(spec, plugin_name, ctx)
        for spec in by_kind["sampler"]:
            yield from _sampler_checks(spec)
        for spec in by_kind["metric"]:
            yield C.Component("metric", spec.name, spec), C.check_finite_rows


def check_id(component: C.Component, check: Check) -> str:
    """The test id of a pair, e.g. ``modality[toy]-check_encode_decode_roundtrip``."""
    return f"{component.id}-{check.__name__}"


def expected_reason(expected_failures: Mapping[str, str], component: C.Component, check: Check) -> str | None:
    """The reason a pair is expected to fail (by full id, then by bare check name), or None."""
    return expected_failures.get(check_id(component, check), expected_failures.get(check.__name__))


def unused_expected_failures(expected_failures: Mapping[str, str], ids: list[str]) -> list[str]:
    """Keys of ``expected_failures`` that match no generated check (typos, removed components)."""
    names = {i.rsplit("-", 1)[-1] for i in ids}
    return sorted(k for k in expected_failures if k not in ids and k not in names)


def rebind(component: C.Component, manager: polydiff.PluginManager) -> C.Component:
    """The same component with its specs looked up again in ``manager``."""
    if component.spec is None:
        return component
    registry = manager.registry
    partner = registry.get("corruption", component.partner.name) if component.partner is not None else None
    return replace(component, spec=registry.get(component.kind, component.name), partner=partner)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check run by ``check_plugin``.

    Attributes:
        id: the test id, ``<component>-<check>``.
        status: ``"PASS"``, ``"FAIL"`` or ``"XFAIL"`` (failed as expected).
        reason: the error (FAIL), the expected-failure reason (XFAIL), or ``""``.
    """

    id: str
    status: str
    reason: str = ""


def run_check(component: C.Component, check: Check, ctx: C.CheckContext, expected: str | None) -> CheckResult:
    """Run one check and classify the outcome; an unexpected pass of an expected failure is a FAIL."""
    cid = check_id(component, check)
    try:
        check(component, ctx)
    except Exception as exc:
        if expected is not None:
            return CheckResult(cid, "XFAIL", expected)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return CheckResult(cid, "FAIL", detail)
    if expected is not None:
        return CheckResult(cid, "FAIL", f"expected to fail ({expected}) but passed; remove it from expected_failures")
    return CheckResult(cid, "PASS")


def check_plugin(name: str, *, manager: polydiff.PluginManager | None = None, budget: str | Budget = "tiny",
                 expected_failures: Mapping[str, str] | None = None) -> list[CheckResult]:
    """Run every applicable conformance check on plugin ``name`` without pytest.

    Args:
        name: the entry-point name of an installed plugin, or a built-in (``"builtin.toy"``).
        manager: the plugin manager to use; default: a fresh one.
        budget: ``"tiny"`` (default), ``"small"`` or a ``Budget``.
        expected_failures: ``{check id or check name: reason}``.

    Returns:
        One ``CheckResult`` per check, in ``iter_checks`` order.
    """
    manager = manager or polydiff.make_plugin_manager()
    expected = dict(expected_failures or {})
    with tempfile.TemporaryDirectory(prefix="polydiff-check-") as tmp:
        ctx = C.CheckContext(manager, get_budget(budget), Path(tmp))
        return [run_check(component, check, ctx, expected_reason(expected, component, check))
                for component, check in iter_checks(name, manager, budget=budget)]


class PluginConformance:
    """Subclass this (as ``Test<Name>Plugin``) to run the whole kit on a plugin with pytest.

    Attributes:
        plugin: the entry-point name of the plugin under test.
        budget: ``"tiny"`` or ``"small"`` (``polydiff.testing.budgets``).
        expected_failures: ``{check id or check name: reason}``; each becomes
            ``pytest.mark.xfail(strict=True)``, so a fixed check fails until it is removed.
    """

    plugin: ClassVar[str] = ""
    budget: ClassVar[str] = "tiny"
    expected_failures: ClassVar[Mapping[str, str]] = {}

    def pytest_generate_tests(self, metafunc: Any) -> None:
        """Parametrise ``test_conformance`` with one case per applicable check (pytest hook)."""
        import pytest

        if metafunc.function.__name__ != "test_conformance":
            return
        if not self.plugin:
            raise TypeError(f"{type(self).__name__}: set the class attribute `plugin` to the entry-point name")
        params, ids = [], []
        for component, check in iter_checks(self.plugin, budget=self.budget):
            reason = expected_reason(self.expected_failures, component, check)
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason is not None else []
            ids.append(check_id(component, check))
            params.append(pytest.param(component, check, id=ids[-1], marks=marks))
        unused = unused_expected_failures(self.expected_failures, ids)
        if unused:
            raise ValueError(f"{type(self).__name__}.expected_failures names checks that do not exist: {unused}; "
                             f"generated ids include {ids[:5]}")
        metafunc.parametrize(("component", "check"), params)

    def _kit_context(self, tmp_path_factory: Any) -> C.CheckContext:
        """One context (plugin manager, scratch folder, cached tiny runs) per test class."""
        cls = type(self)
        ctx = cls.__dict__.get("_polydiff_kit_context")
        if ctx is None:
            ctx = C.CheckContext(polydiff.make_plugin_manager(), get_budget(cls.budget),
                                 tmp_path_factory.mktemp(f"kit-{cls.plugin}"))
            cls._polydiff_kit_context = ctx
        return ctx

    def test_conformance(self, component: C.Component, check: Check, tmp_path_factory: Any) -> None:
        """Run one conformance check (parametrised by ``pytest_generate_tests``)."""
        ctx = self._kit_context(tmp_path_factory)
        check(rebind(component, ctx.manager), ctx)
