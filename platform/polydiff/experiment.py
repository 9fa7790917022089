"""Build an experiment from a validated config: modality, processes, denoiser, sampling.

``build_experiment(config)`` resolves every name through the plugin registry, binds one
corruption process per diffused field, builds the denoiser (wrapped in EDM
preconditioning where a process asks for it) and offers ``loss`` for the trainer and
``sample`` / ``evaluate`` for the CLI. It is the one place where config meets components.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from polydiff.corruptions.base import Corruption, Prediction
from polydiff.corruptions.composite import CompositeCorruption
from polydiff.denoisers.preconditioning import EDMPreconditioning
from polydiff.errors import ConfigError, IncompatibleSpaceError
from polydiff.plugins import PluginManager, make_plugin_manager
from polydiff.samplers.common import SampleOutput
from polydiff.spaces import Space, State

_NAME_KEYS = {"name"}


def _options(table: Mapping[str, Any], drop: set[str]) -> dict[str, Any]:
    """Factory options: the table without ``drop`` keys and without unset (None) values."""
    return {k: v for k, v in table.items() if k not in drop and v is not None}


def _call_factory(factory, what: str, *args, **options):
    try:
        return factory(*args, **options)
    except TypeError as exc:
        try:
            params = [p for p in inspect.signature(factory).parameters if p not in ("self", "space", "spaces", "cond_spaces")]
        except (TypeError, ValueError):
            params = []
        raise ConfigError(f"{what}: {exc}; accepted options: {params or 'see its documentation'}") from exc


def _field_table(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """One field's corruption table: the base table with the field's keys on top, or the
    field's keys alone when they name another corruption."""
    if "name" in override and override["name"] != base.get("name"):
        return dict(override)
    return {**base, **override}


def build_processes(cfg: Mapping[str, Any], spaces: Mapping[str, Space], manager: PluginManager) -> dict[str, Corruption]:
    """Bind a corruption process to each diffused field from the ``[corruption]`` table.

    ``[corruption.fields.<field>]`` overrides any key for one field; a field table that
    names another corruption than ``[corruption]`` starts from its own keys alone (a
    Gaussian schedule means nothing to a masked process).
    """
    base = dict(cfg)
    per_field = base.pop("fields", {}) or {}
    unknown = sorted(set(per_field) - set(spaces))
    if unknown:
        raise ConfigError(f"[corruption.fields] names fields {unknown} that the modality does not have; "
                          f"fields: {sorted(spaces)}")
    processes = {}
    for field, space in spaces.items():
        table = _field_table(base, per_field.get(field, {}))
        spec = manager.registry.get("corruption", table["name"])
        if space.kind not in spec.spaces:
            raise IncompatibleSpaceError(
                f"corruption {spec.name!r} (family {spec.family!r}, from {spec.distribution}) accepts spaces "
                f"{sorted(spec.spaces)}; field {field!r} has {space} of kind {space.kind!r}")
        options = _options(table, {"name"})
        if not options.get("schedule_options"):  # the config default {}: nothing to pass
            options.pop("schedule_options", None)
        params = inspect.signature(spec.factory).parameters
        accepts_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if "field" in params or accepts_kw:
            options["field"] = field
        if "registry" in params or accepts_kw:
            options["registry"] = manager.registry
        processes[field] = _call_factory(spec.factory, f"corruption {spec.name!r} for field {field!r}", space, **options)
    return processes


@dataclass
class Experiment:
    """Everything a run needs, built from one config.

    Attributes:
        config: the validated config (``polydiff.config.validate``).
        manager: the plugin manager the components came from.
        modality: the Modality object.
        processes: field -> Corruption.
        denoiser: the network (EDM-preconditioned where asked), an ``nn.Module``.
    """

    config: dict[str, dict[str, Any]]
    manager: PluginManager
    modality: Any
    processes: dict[str, Corruption]
    denoiser: nn.Module

    @property
    def spaces(self) -> Mapping[str, Space]:
        """Diffused fields -> spaces."""
        return self.modality.spaces

    @property
    def cond_spaces(self) -> Mapping[str, Space]:
        """Conditioning fields -> spaces."""
        return getattr(self.modality, "cond_spaces", {}) or {}

    @property
    def pairs(self) -> dict[str, str]:
        """Diffused field -> the conditioning field holding its paired source x1 (bridges)."""
        return dict(getattr(self.modality, "pairs", {}) or {})

    @property
    def composite(self) -> CompositeCorruption:
        """The product of the per-field processes at one shared time."""
        return CompositeCorruption(self.processes)

    def sources(self, cond: State | None) -> dict[str, torch.Tensor] | None:
        """Bridge field -> its source batch x1, read from the (undropped) conditioning ``cond``.

        Raises:
            IncompatibleSpaceError: a bridge field's paired conditioning field is absent.
        """
        bridged = [f for f, p in self.processes.items() if p.family == "bridge"]
        if not bridged:
            return None
        missing = [self.pairs[f] for f in bridged if cond is None or self.pairs[f] not in cond]
        if missing:
            raise IncompatibleSpaceError(f"bridge fields {bridged} need their source fields {missing} "
                                         f"(modality {self.modality.name!r} pairs {self.pairs}); pass them in cond")
        return {f: cond[self.pairs[f]] for f in bridged}

    def split_batch(self, batch: State) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """Separate a data batch into (diffused fields, conditioning fields or None)."""
        x0 = {f: batch[f] for f in self.spaces}
        cond = {f: batch[f] for f in self.cond_spaces if f in batch}
        return x0, (cond or None)

    def drop_cond(self, cond: State | None, p: float, generator: torch.Generator | None) -> State | None:
        """Classifier-free guidance training: replace each sample's conditioning with the null
        value (id ``vocab_size`` for discrete fields, zeros otherwise) with probability ``p``."""
        if cond is None or p <= 0:
            return cond
        out = {}
        sources = set(self.pairs.values())
        for name, value in cond.items():
            if name in sources:  # a bridge's pinned sample is part of the process, never dropped
                out[name] = value
                continue
            keep = torch.rand(value.shape[0], generator=generator, device="cpu").to(value.device) >= p
            keep = keep.view(-1, *([1] * (value.ndim - 1)))
            space = self.cond_spaces[name]
            null = torch.full_like(value, space.vocab_size) if space.kind == "discrete" else torch.zeros_like(value)
            out[name] = torch.where(keep, value, null)
        return out

    def loss(self, model: nn.Module, batch: State, *, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean training loss over the batch: one shared t, each field's process loss summed.

        Returns:
            ``(scalar loss, {"loss/<field>": detached 0-d tensor})``; tensors, not floats, so
            the trainer synchronises with the device once per step rather than once per field.
        """
        x0, cond = self.split_batch(batch)
        sources = self.sources(cond)
        cond = self.drop_cond(cond, self.config["training"]["cond_dropout"], generator)
        product = self.composite
        n = next(iter(x0.values())).shape[0]
        device = next(iter(x0.values())).device
        t = product.sample_t(n, generator=generator, device="cpu").to(device)
        corrupted = product.corrupt(x0, t, generator=None if device.type != "cpu" else generator, sources=sources)
        raw = model({f: c.x_t for f, c in corrupted.items()}, t, cond)
        per_field = {f: v.mean() for f, v in product.loss(raw, x0, corrupted).items()}
        total = sum(per_field.values())
        return total, {f"loss/{f}": v.detach() for f, v in per_field.items()}

    def predict_fn(self, model: nn.Module, cond: State | None = None):
        """``model(x, t) -> {field: Prediction}`` for samplers (no guidance)."""
        processes = self.processes

        def predict(x: State, t: torch.Tensor) -> dict[str, Prediction]:
            raw = model(x, t, cond)
            return {f: p.predict(raw[f], x[f], t) for f, p in processes.items()}

        predict.network, predict.cond = model, cond  # for cached autoregressive decoding
        return predict

    def sample(self, model: nn.Module, n: int, *, sampler: str | None = None, steps: int | None = None,
               grid: str | None = None, generator: torch.Generator | None = None, cond: State | None = None,
               guidance_scale: float | None = None, device: torch.device | str = "cpu",
               callback=None, known: State | None = None, mask: State | None = None,
               **options: Any) -> SampleOutput:
        """Draw ``n`` samples with a registered sampler; values default to the ``[sampling]`` table.

        ``known`` / ``mask`` (field -> ``(n or 1, *field_shape)``, mask 1 where known) inpaint:
        the known values replace the prediction's x0 at every step (``polydiff.samplers.inpaint``)
        and, for discrete fields, are written unmasked into the prior, so masked samplers
        condition on them exactly.
        """
        from polydiff.samplers.grids import make_grid
        from polydiff.samplers.guidance import classifier_free_guidance, inpaint

        s_cfg = self.config["sampling"]
        spec = self.manager.registry.get("sampler", sampler or s_cfg["sampler"])
        steps = steps or s_cfg["steps"]
        scale = s_cfg["guidance_scale"] if guidance_scale is None else guidance_scale
        opts = {**s_cfg.get("options", {}), **options}
        sources = self.sources(cond)
        check_sampler_options(spec, opts)
        if sources is not None and _accepts(spec.function, "source"):
            opts["source"] = sources  # samplers without it reject bridge fields by family
        x = {f: v.to(device) for f, v in self.composite.prior(
            n, generator=generator, device="cpu",
            sources=None if sources is None else {f: v.cpu() for f, v in sources.items()}).items()}
        try:
            grid_t = make_grid(grid or s_cfg["grid"] or spec.default_grid, self.processes, steps).to(device)
        except ValueError as exc:
            raise ConfigError(f"[sampling] grid: {exc}") from exc
        if cond is not None and scale != 1.0:
            predict = classifier_free_guidance(self.predict_fn(model, cond), self.predict_fn(model, None), scale)
        else:
            predict = self.predict_fn(model, cond)
        if known is not None:
            known, mask = self._known(known, mask, n, device)
            predict = inpaint(predict, known, mask, self.processes)
            x = {f: torch.where(mask[f].bool(), known[f].to(v.dtype), v) if self.spaces[f].kind == "discrete" else v
                 for f, v in x.items()}
        with torch.no_grad():
            return spec.function(predict, self.processes, x, grid_t, generator=generator, callback=callback, **opts)

    def _known(self, known: State, mask: State | None, n: int, device: torch.device | str
               ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Known values and masks per field, checked against the spaces and expanded to ``n``.

        Raises:
            ConfigError: a field that is not diffused, or a value / mask of the wrong shape.
        """
        if mask is None:
            raise ConfigError("inpainting needs a mask for every known field (1 where known, 0 elsewhere)")
        out_known, out_mask = {}, {}
        for field, value in known.items():
            if field not in self.spaces:
                raise ConfigError(f"inpainting: {field!r} is not a diffused field; fields: {sorted(self.spaces)}")
            if field not in mask:
                raise ConfigError(f"inpainting: field {field!r} has known values but no mask")
            shape = tuple(self.spaces[field].shape)
            for what, tensor in (("values", value), ("mask", mask[field])):
                if tuple(tensor.shape[1:]) != shape or tensor.shape[0] not in (1, n):
                    raise ConfigError(f"inpainting: the known {what} of field {field!r} have shape "
                                      f"{tuple(tensor.shape)}; expected (1, {', '.join(map(str, shape))}) or "
                                      f"({n}, {', '.join(map(str, shape))})")
            out_known[field] = value.to(device).expand(n, *shape)
            out_mask[field] = mask[field].to(device).expand(n, *shape)
        return out_known, out_mask

    def evaluate(self, samples: State, reference: State, *, generator: torch.Generator | None = None,
                 metrics: list[str] | None = None) -> list[dict[str, Any]]:
        """Tidy metric rows comparing ``samples`` with ``reference`` (diffused fields only).

        A metric function that takes a keyword ``modality`` also gets the Modality object
        (for metrics that need the training data, e.g. a feature classifier trained on it).
        """
        names = metrics if metrics is not None else self.config["evaluation"]["metrics"]
        registry = self.manager.registry
        if names is None:
            names = [s.name for s in registry.specs("metric")
                     if not s.modalities or self.modality.name in s.modalities]
        rows = []
        for name in names:
            spec = registry.get("metric", name)
            extra = {"modality": self.modality} if _accepts(spec.function, "modality") else {}
            for row in spec.function(samples, reference, spaces=self.spaces, generator=generator, **extra):
                rows.append({"metric": name, **row})
        return rows


def _accepts(function: Any, keyword: str) -> bool:
    params = inspect.signature(function).parameters
    return keyword in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def check_sampler_options(spec, options: Mapping[str, Any]) -> None:
    """Raise ConfigError if ``options`` has a key the sampler function does not accept.

    The message names the sampler, the unknown keys and the options it does accept.
    """
    params = inspect.signature(spec.function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = sorted(n for n, p in params.items()
                      if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in ("generator", "callback"))
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"[sampling] options {unknown} are not options of sampler {spec.name!r}; "
                          f"it accepts {accepted or 'no options'}")


def build_modality(cfg: Mapping[str, Any], manager: PluginManager):
    """Build the modality object named by ``[modality] name`` with the table's other keys."""
    spec = manager.registry.get("modality", cfg["name"])
    return _call_factory(spec.factory, f"modality {spec.name!r}", **_options(cfg, _NAME_KEYS))


def build_denoiser(cfg: Mapping[str, Any], modality, processes: Mapping[str, Corruption],
                   manager: PluginManager) -> nn.Module:
    """Build the ``[denoiser]`` network and wrap it in EDM preconditioning where a process asks."""
    spec = manager.registry.get("denoiser", cfg["name"])
    for field, space in modality.spaces.items():
        if space.kind not in spec.spaces:
            raise IncompatibleSpaceError(
                f"denoiser {spec.name!r} (from {spec.distribution}) takes spaces {sorted(spec.spaces)}; "
                f"field {field!r} of modality {modality.name!r} is {space}")
    if spec.modalities and modality.name not in spec.modalities:
        raise IncompatibleSpaceError(f"denoiser {spec.name!r} is built for modalities {sorted(spec.modalities)}, "
                                     f"not {modality.name!r}")
    causal_fields = sorted(f for f, p in processes.items() if p.family == "autoregressive")
    if causal_fields and not spec.causal:
        causal = sorted(s.name for s in manager.registry.specs("denoiser") if s.causal)
        raise IncompatibleSpaceError(f"fields {causal_fields} use the 'autoregressive' process, which needs a causal "
                                     f"denoiser; {spec.name!r} is not causal (causal denoisers: {causal})")
    net = _call_factory(spec.factory, f"denoiser {spec.name!r}", modality.spaces,
                        getattr(modality, "cond_spaces", {}) or {}, **_options(cfg, _NAME_KEYS))
    if any(getattr(p, "preconditioning", "none") == "edm" for p in processes.values()):
        net = EDMPreconditioning(net, processes)
    return net


def check_sampler_families(sampler: str, processes: Mapping[str, Corruption], manager: PluginManager) -> None:
    """The ``[sampling] sampler`` must support the family of every field's process, so that a
    run never trains to the end and then fails to sample.

    Raises:
        ConfigError: naming the sampler, the field, its family and the samplers that fit.
    """
    registry = manager.registry
    spec = registry.get("sampler", sampler)
    for field, process in processes.items():
        if process.family not in spec.families:
            fitting = sorted(s.name for s in registry.specs("sampler")
                             if {p.family for p in processes.values()} <= set(s.families))
            raise ConfigError(f"[sampling] sampler {sampler!r} supports families {sorted(spec.families)}; field "
                              f"{field!r} uses {process.name!r} (family {process.family!r}). Samplers that fit "
                              f"every field: {fitting}")


def check_pairs(modality: Any, processes: Mapping[str, Corruption]) -> None:
    """Every bridge field must be paired with a conditioning field of the same shape.

    A modality declares ``pairs = {diffused field: conditioning field}``; the conditioning
    field holds the source sample x1 that pins the bridge.

    Raises:
        IncompatibleSpaceError: naming the field, the process and what the modality declares.
    """
    pairs = dict(getattr(modality, "pairs", {}) or {})
    cond_spaces = getattr(modality, "cond_spaces", {}) or {}
    for field, process in processes.items():
        if process.family != "bridge":
            continue
        source = pairs.get(field)
        if source is None:
            raise IncompatibleSpaceError(
                f"corruption {process.name!r} (family 'bridge') on field {field!r} needs a paired source field, "
                f"but modality {modality.name!r} declares pairs {pairs}; use a paired modality (e.g. 'toy-paired') "
                f"or another corruption")
        if source not in cond_spaces:
            raise IncompatibleSpaceError(f"modality {modality.name!r}: pairs[{field!r}] = {source!r} is not one of "
                                         f"its conditioning fields {sorted(cond_spaces)}")
        if tuple(cond_spaces[source].shape) != tuple(modality.spaces[field].shape):
            raise IncompatibleSpaceError(
                f"modality {modality.name!r}: source field {source!r} {cond_spaces[source]} must have the shape of "
                f"field {field!r} {modality.spaces[field]}")


def build_experiment(config: Mapping[str, Any], manager: PluginManager | None = None) -> Experiment:
    """Resolve a validated config into an ``Experiment`` (weights freshly initialised, seeded)."""
    manager = manager or make_plugin_manager()
    torch.manual_seed(config["experiment"]["seed"])
    modality = build_modality(config["modality"], manager)
    processes = build_processes(config["corruption"], modality.spaces, manager)
    check_pairs(modality, processes)
    check_sampler_families(config["sampling"]["sampler"], processes, manager)
    denoiser = build_denoiser(config["denoiser"], modality, processes, manager)
    return Experiment(config=dict(config), manager=manager, modality=modality, processes=processes,
                      denoiser=denoiser)
