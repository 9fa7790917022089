"""What ``polydiff plugins [list|info|install|check|new]`` does; ``cli.py`` only parses arguments.

Each function returns the text to print (``list``, ``info``), an exit status (``install``,
``check``) or the folder it wrote (``new``), so the commands are testable without a shell.
"""
from __future__ import annotations

import json
import keyword
import re
import string
import subprocess
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from tabulate import tabulate

import polydiff
from polydiff.errors import PolydiffError
from polydiff.registry_file import RegistryEntry, find_registry, load_registry

PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
TEMPLATE_SUFFIX = ".tmpl"


def _components_text(components: Mapping[str, list[str]]) -> str:
    return "; ".join(f"{kind}: {', '.join(names)}" for kind, names in sorted(components.items()))


def _rows(manager: polydiff.PluginManager, show_all: bool, registry: Mapping[str, RegistryEntry]) -> list[dict[str, Any]]:
    rows = [info.as_dict() for info in manager.plugins.values() if show_all or not info.builtin]
    for row in rows:
        row["status"] = manager.plugins[row["name"]].status
    for name, entry in registry.items():
        if name not in manager.plugins:
            rows.append({"name": name, "distribution": entry.distribution, "version": "", "builtin": False,
                         "status": "not installed", "error": None, "hooks": [], "components": {},
                         "summary": entry.summary})
    return sorted(rows, key=lambda r: (not r["builtin"], r["name"]))


def list_plugins(manager: polydiff.PluginManager, *, show_all: bool = False, as_json: bool = False,
                 registry_path: Path | None = None) -> str:
    """The ``polydiff plugins list`` table (or JSON).

    Args:
        manager: the plugin manager that loaded the installed plugins.
        show_all: include the core's built-in plugins (``builtin.*``).
        as_json: a JSON list of records instead of a table.
        registry_path: ``registry.toml`` (default: found from the working folder); plugins
            listed there but not installed appear as ``not installed``.

    Returns:
        Columns name, distribution, version, hooks, components, status (``ok``,
        ``broken: <error>`` or ``not installed``).
    """
    rows = _rows(manager, show_all, load_registry(registry_path))
    if as_json:
        return json.dumps(rows, indent=2)
    if not rows:
        return "No plugins installed (use --all to show the built-ins; `polydiff plugins new NAME` starts one)."
    table = [[r["name"], r["distribution"], r["version"], ", ".join(h.removeprefix("polydiff_") for h in r["hooks"]),
              _components_text(r["components"]), r["status"]] for r in rows]
    return tabulate(table, headers=["name", "distribution", "version", "hooks", "components", "status"],
                    disable_numparse=True)


def plugin_info(manager: polydiff.PluginManager, name: str, *, registry_path: Path | None = None) -> str:
    """The ``polydiff plugins info NAME`` text: origin, components with summaries, registry
    entry, and the full error when the plugin is broken.

    Raises:
        PolydiffError: when ``name`` is neither loaded nor in the registry, listing the known names.
    """
    registry = load_registry(registry_path)
    info = manager.plugins.get(name)
    if info is None and name not in registry:
        known = sorted(set(manager.plugins) | set(registry))
        raise PolydiffError(f"unknown plugin {name!r}; known plugins: {', '.join(known) or '(none)'}")
    lines = [f"plugin: {name}"]
    if info is None:
        lines.append("status: not installed (run `polydiff plugins install " + name + "`)")
    else:
        lines += [f"distribution: {info.distribution} {info.version}", f"status: {info.status}",
                  f"hooks: {', '.join(info.hooks) or '(none)'}"]
        for spec in sorted(manager.registry.of_plugin(name), key=lambda s: (s.kind, s.name)):
            lines.append(f"  {spec.kind} {spec.name}: {spec.summary}")
    if name in registry:
        entry = registry[name]
        lines += [f"registry: {entry.distribution} at {entry.path} (modality {entry.modality or '-'}, "
                  f"core {entry.requires})", f"summary: {entry.summary}"]
    if info is not None and info.error:
        lines += ["error:", info.error]
    return "\n".join(lines)


def install_command(name: str, *, registry_path: Path | None = None) -> list[str]:
    """The pip command ``install_plugin`` runs for ``name`` (editable local path when present)."""
    source = Path(registry_path) if registry_path is not None else find_registry()
    registry = load_registry(source)
    if name not in registry:
        raise PolydiffError(f"plugin {name!r} is not in the registry {source or '(no registry.toml found)'}; "
                            f"known plugins: {', '.join(registry) or '(none)'}")
    entry = registry[name]
    command = [sys.executable, "-m", "pip", "install"]
    command += ["-e", str(entry.path)] if entry.path.is_dir() else [entry.distribution]
    constraints = Path(source).resolve().parent / "constraints.txt" if source is not None else None
    if constraints is not None and constraints.is_file():
        command += ["-c", str(constraints)]
    return command


def install_plugin(name: str, *, registry_path: Path | None = None) -> int:
    """Install the plugin ``name`` of ``registry.toml`` with pip, then its ``no_deps``
    requirements with ``pip install --no-deps``; return pip's exit status.

    Raises:
        PolydiffError: when ``name`` is not in the registry, listing the names that are.
    """
    command = install_command(name, registry_path=registry_path)
    print("running:", " ".join(command))
    status = subprocess.run(command, check=False).returncode
    source = Path(registry_path) if registry_path is not None else find_registry()
    no_deps = load_registry(source)[name].no_deps
    if status == 0 and no_deps:
        constraints = command[command.index("-c"):] if "-c" in command else []
        extra = [sys.executable, "-m", "pip", "install", "--no-deps", *no_deps, *constraints]
        print("running:", " ".join(extra))
        status = subprocess.run(extra, check=False).returncode
    return status


def check_plugin_command(name: str, *, budget: str = "tiny", expected_failures: Mapping[str, str] | None = None) -> int:
    """Run the conformance kit on ``name``, print one line per check, return 0 when none failed."""
    from polydiff.testing import check_plugin

    results = check_plugin(name, budget=budget, expected_failures=expected_failures)
    for result in results:
        print(f"{result.status:5} {result.id}")
        if result.reason:
            print("      " + result.reason.replace("\n", "\n      "))
    failed = sum(r.status == "FAIL" for r in results)
    print(f"{len(results) - failed} of {len(results)} checks passed or failed as expected; {failed} failed")
    return 1 if failed else 0


def template_values(name: str) -> dict[str, str]:
    """Substitutions for the plugin template: ``$name``, ``$Name``, ``$summary``, ``$core_version``."""
    return {"name": name, "Name": "".join(part.capitalize() for part in name.split("_")),
            "summary": f"the {name} modality (generated by `polydiff plugins new`)",
            "core_version": ".".join(polydiff.__version__.split(".")[:2])}


def _template_files() -> list[tuple[str, str]]:
    root = resources.files("polydiff") / "templates" / "plugin"
    out, stack = [], [(root, "")]
    while stack:
        node, prefix = stack.pop()
        for child in node.iterdir():
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                stack.append((child, rel + "/"))
            elif child.name.endswith(TEMPLATE_SUFFIX):
                out.append((rel[: -len(TEMPLATE_SUFFIX)], child.read_text(encoding="utf-8")))
    return sorted(out)


def new_plugin(name: str, directory: Path) -> Path:
    """Write a working plugin skeleton into ``directory / name`` and return that folder.

    The skeleton (``polydiff-<name>``: pyproject with the entry point, README, package
    ``polydiff_<name>`` with ``plugin.py`` and a seeded toy ``modality.py``, a conformance
    test and a modality test) passes the conformance kit as generated.

    Raises:
        PolydiffError: for a name that is not a lowercase identifier, or an existing folder.
    """
    if not PLUGIN_NAME.match(name) or keyword.iskeyword(name):
        raise PolydiffError(f"plugin name {name!r} must be a lowercase Python identifier (letters, digits, '_', "
                            f"starting with a letter), e.g. 'image' or 'point_cloud'")
    target = Path(directory) / name
    if target.exists():
        raise PolydiffError(f"{target} already exists; choose another name or directory (nothing was overwritten)")
    values = template_values(name)
    for rel, text in _template_files():
        path = target / rel.replace("{name}", name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(string.Template(text).substitute(values), encoding="utf-8")
    return target
