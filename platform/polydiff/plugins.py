"""The plugin manager: entry-point discovery, broken-plugin isolation, the component registry.

Order of work (STYLE.md section 15):
1. a fresh ``pluggy.PluginManager("polydiff")`` with ``hookspecs`` added;
2. the core's built-ins registered by module name (``polydiff.builtin.BUILTIN_PLUGINS``);
3. unless autoload is disabled, each entry point of group ``polydiff.plugins`` loaded and
   registered in its own ``try``: a failure is recorded as broken and the rest go on;
4. ``check_pending`` per plugin (an unknown ``polydiff_*`` hook marks the plugin broken);
5. each registration hook implementation called individually, so an exception is pinned
   on its plugin; specs validated and indexed by ``(kind, name)``.

Environment switches: ``POLYDIFF_LOAD_PLUGINS=a,b`` (only these third-party plugins),
``POLYDIFF_DISABLE_PLUGIN_AUTOLOAD=1``, ``POLYDIFF_STRICT_PLUGINS=1`` (re-raise load errors),
``POLYDIFF_TRACE_PLUGINS=1`` (print every hook call). ``blocked=("name",)`` or the CLI's
``-p no:NAME`` block a plugin.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import os
import sys
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pluggy

from polydiff import hookspecs
from polydiff.errors import DuplicateNameError, PluginLoadError, UnknownComponentError
from polydiff.specs import SPEC_TYPES

ENTRY_POINT_GROUP = "polydiff.plugins"
KIND_HOOKS = {
    "modality": "polydiff_modalities",
    "schedule": "polydiff_schedules",
    "corruption": "polydiff_corruptions",
    "denoiser": "polydiff_denoisers",
    "sampler": "polydiff_samplers",
    "metric": "polydiff_metrics",
}


@dataclass
class PluginInfo:
    """What is known about one plugin: where it comes from and whether it works."""

    name: str
    distribution: str
    version: str
    builtin: bool = False
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``"ok"`` or ``"broken: <first line of the error>"``."""
        return "ok" if self.error is None else f"broken: {self.error.strip().splitlines()[-1]}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record for ``polydiff plugins list --json``."""
        return {"name": self.name, "distribution": self.distribution, "version": self.version,
                "builtin": self.builtin, "status": "ok" if self.error is None else "broken",
                "error": self.error, "hooks": self.hooks, "components": self.components}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _format_error(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


class Registry:
    """Components of every kind, indexed by name, with their plugin of origin.

    ``get(kind, name)`` returns the spec or raises ``UnknownComponentError`` listing close
    matches and every installed name of that kind; a name registered by two plugins raises
    ``DuplicateNameError`` naming both distributions.
    """

    def __init__(self, plugins: Mapping[str, PluginInfo]) -> None:
        self.plugins = dict(plugins)
        self._specs: dict[str, dict[str, Any]] = {kind: {} for kind in SPEC_TYPES}
        self._clashes: dict[tuple[str, str], list[Any]] = {}

    def add(self, spec: Any) -> None:
        """Index one validated spec; a second spec of the same kind and name is a clash."""
        table = self._specs[spec.kind]
        if spec.name in table:
            first = table[spec.name]
            self._clashes.setdefault((spec.kind, spec.name), [first]).append(spec)
            message = self.clash_message(spec.kind, spec.name)
            for info in (self.plugins.get(first.plugin), self.plugins.get(spec.plugin)):
                if info is not None and info.error is None and not info.builtin:
                    info.error = f"DuplicateNameError: {message}"
            return
        table[spec.name] = spec

    def clash_message(self, kind: str, name: str) -> str:
        """The error text for a name registered more than once."""
        owners = " and ".join(f"plugin {s.plugin!r} (distribution {s.distribution or '?'})"
                              for s in self._clashes[(kind, name)])
        return (f"{kind} {name!r} is registered by {owners}; uninstall one of them or block it "
                f"with POLYDIFF_LOAD_PLUGINS / -p no:NAME")

    def get(self, kind: str, name: str) -> Any:
        """The spec of ``kind`` called ``name``."""
        if kind not in self._specs:
            raise UnknownComponentError(f"unknown component kind {kind!r}; kinds are {sorted(self._specs)}")
        if (kind, name) in self._clashes:
            raise DuplicateNameError(self.clash_message(kind, name))
        table = self._specs[kind]
        if name not in table:
            close = difflib.get_close_matches(str(name), list(table), n=3)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise UnknownComponentError(
                f"unknown {kind} {name!r}.{hint} Installed {kind}s: {', '.join(sorted(table)) or '(none)'}."
                + self._broken_hint())
        return table[name]

    def _broken_hint(self) -> str:
        broken = [p.name for p in self.plugins.values() if p.error]
        return f" Broken plugins (see `polydiff plugins list`): {', '.join(broken)}." if broken else ""

    def names(self, kind: str) -> list[str]:
        """Sorted names of every registered component of ``kind``."""
        return sorted(self._specs[kind])

    def specs(self, kind: str) -> list[Any]:
        """Every registered spec of ``kind``, sorted by name."""
        return [self._specs[kind][n] for n in self.names(kind)]

    def of_plugin(self, plugin: str) -> list[Any]:
        """Every spec registered by ``plugin``."""
        return [s for table in self._specs.values() for s in table.values() if s.plugin == plugin]


class PluginManager:
    """A pluggy manager plus what was learned while loading: plugin records and the registry.

    Build one with ``make_plugin_manager``; keep one per run or test (no global state).
    """

    def __init__(self, pm: pluggy.PluginManager, plugins: dict[str, PluginInfo]) -> None:
        self.pm = pm
        self.plugins = plugins
        self.registry = Registry(plugins)

    @property
    def hook(self) -> Any:
        """The pluggy hook relay (``manager.hook.polydiff_train_step_end(...)``)."""
        return self.pm.hook

    def broken(self) -> list[PluginInfo]:
        """Plugins that failed to load or register."""
        return [p for p in self.plugins.values() if p.error is not None]


def _register_module(pm: pluggy.PluginManager, plugins: dict[str, PluginInfo], obj: Any, info: PluginInfo,
                     strict: bool) -> None:
    try:
        pm.register(obj, name=info.name)
        for hook_caller in pm.get_hookcallers(obj) or []:
            info.hooks.append(hook_caller.name)
        unknown = sorted(hc.name for hc in pm.get_hookcallers(obj) or [] if hc.spec is None)
        if unknown:
            raise PluginLoadError(f"plugin {info.name!r} implements unknown hooks {unknown}; "
                                  f"known hooks: {sorted(KIND_HOOKS.values())} and the loop events")
        plugins[info.name] = info
    except Exception as exc:  # isolation: a broken plugin must not break the host
        if pm.is_registered(obj):
            pm.unregister(obj)
        info.error = _format_error(exc)
        info.hooks.clear()
        plugins[info.name] = info
        if strict:
            raise PluginLoadError(f"plugin {info.name!r} ({info.distribution}) failed to load: {info.error}") from exc


def _load_builtins(pm: pluggy.PluginManager, plugins: dict[str, PluginInfo]) -> None:
    from polydiff.builtin import BUILTIN_PLUGINS

    version = importlib.metadata.version("polydiff") if _has_dist("polydiff") else "0+unknown"
    for module_name in BUILTIN_PLUGINS:
        short = module_name.rsplit(".", 1)[-1]
        info = PluginInfo(name=f"builtin.{short}", distribution="polydiff", version=version, builtin=True)
        module = importlib.import_module(module_name)
        _register_module(pm, plugins, module, info, strict=True)


def _has_dist(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _load_entrypoints(pm: pluggy.PluginManager, plugins: dict[str, PluginInfo], *, only: set[str] | None,
                      blocked: set[str], strict: bool) -> None:
    for ep in _entry_points():
        if ep.name in blocked or (only is not None and ep.name not in only) or ep.name in plugins:
            continue
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        info = PluginInfo(name=ep.name, distribution=dist, version=version)
        try:
            obj = ep.load()
        except Exception as exc:
            info.error = _format_error(exc)
            plugins[ep.name] = info
            if strict:
                raise PluginLoadError(f"plugin {ep.name!r} ({dist}) failed to import: {info.error}") from exc
            continue
        _register_module(pm, plugins, obj, info, strict)


def _call_registration(manager: PluginManager, strict: bool) -> None:
    for kind, hook_name in KIND_HOOKS.items():
        spec_type = SPEC_TYPES[kind]
        for impl in getattr(manager.pm.hook, hook_name).get_hookimpls():
            info = manager.plugins.get(impl.plugin_name)
            if info is None or info.error is not None:
                continue
            try:
                specs = list(impl.function() or ())
                for spec in specs:
                    if not isinstance(spec, spec_type):
                        raise PluginLoadError(f"{hook_name} of plugin {info.name!r} yielded "
                                              f"{type(spec).__name__}, expected polydiff.{spec_type.__name__}")
                    problems = spec.problems()
                    if problems:
                        raise PluginLoadError(f"{hook_name} of plugin {info.name!r}: " + "; ".join(problems))
            except Exception as exc:
                info.error = _format_error(exc)
                if strict or info.builtin:
                    raise
                continue
            for spec in specs:
                spec = replace(spec, plugin=info.name, distribution=info.distribution)
                manager.registry.add(spec)
                info.components.setdefault(kind, []).append(spec.name)


def make_plugin_manager(*, autoload: bool | None = None, load_only: Iterable[str] | None = None,
                        blocked: Iterable[str] = (), strict: bool | None = None, trace: bool | None = None,
                        extra_plugins: Mapping[str, Any] | None = None) -> PluginManager:
    """Build a fresh plugin manager with the built-ins, installed plugins and their registry.

    Args:
        autoload: load third-party entry points; default: not ``POLYDIFF_DISABLE_PLUGIN_AUTOLOAD``.
        load_only: load only these entry-point names; default: ``POLYDIFF_LOAD_PLUGINS``.
        blocked: entry-point names never to load (``-p no:NAME``).
        strict: re-raise load errors; default: ``POLYDIFF_STRICT_PLUGINS``.
        trace: print every hook call to stderr; default: ``POLYDIFF_TRACE_PLUGINS``.
        extra_plugins: ``name -> object with @hookimpl functions`` registered in-process
            (tests, notebooks), after the entry points.

    Returns:
        A ``PluginManager`` whose ``registry`` holds every component that loaded.
    """
    autoload = not _flag("POLYDIFF_DISABLE_PLUGIN_AUTOLOAD") if autoload is None else autoload
    strict = _flag("POLYDIFF_STRICT_PLUGINS") if strict is None else strict
    trace = _flag("POLYDIFF_TRACE_PLUGINS") if trace is None else trace
    if load_only is None and os.environ.get("POLYDIFF_LOAD_PLUGINS", "").strip():
        load_only = [n.strip() for n in os.environ["POLYDIFF_LOAD_PLUGINS"].split(",") if n.strip()]
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)
    plugins: dict[str, PluginInfo] = {}
    _load_builtins(pm, plugins)
    if autoload:
        _load_entrypoints(pm, plugins, only=set(load_only) if load_only is not None else None,
                          blocked=set(blocked), strict=strict)
    for name, obj in (extra_plugins or {}).items():
        dist = getattr(inspect.getmodule(obj), "__name__", "in-process") if not isinstance(obj, type) else "in-process"
        _register_module(pm, plugins, obj, PluginInfo(name=name, distribution=dist or "in-process", version="0"), strict)
    if trace:
        pm.trace.root.setwriter(lambda message: print(message, end="", file=sys.stderr))
        pm.enable_tracing()
    manager = PluginManager(pm, plugins)
    _call_registration(manager, strict)
    return manager
