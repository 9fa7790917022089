"""Run metadata: package versions, installed plugins and the git commit, for ``run.json``.

Everything here is best effort: a missing ``git`` executable, a folder that is not a git
checkout or a package without metadata gives ``None``, never an exception.
"""
from __future__ import annotations

import importlib.metadata
import platform as _platform
import subprocess
from pathlib import Path
from typing import Any

import numpy
import torch


def git_commit(where: Path | None = None) -> str | None:
    """The ``HEAD`` commit of the git checkout holding ``where`` (default: the current
    folder, then the polydiff source folder), or None."""
    candidates = [where] if where is not None else [Path.cwd(), Path(__file__).resolve().parent]
    for folder in candidates:
        try:
            done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                  timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str | None]:
    """Versions of python, torch, numpy and polydiff (None when unknown)."""
    from polydiff import __version__

    return {"python": _platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "polydiff": _version("polydiff") or __version__}


def plugin_versions(manager: Any) -> dict[str, dict[str, str | None]]:
    """Third-party plugins known to ``manager``: name -> distribution, version and status."""
    out = {}
    for name, info in sorted(getattr(manager, "plugins", {}).items()):
        if getattr(info, "builtin", False):
            continue
        out[name] = {"distribution": info.distribution, "version": info.version, "status": info.status}
    return out


def run_metadata(manager: Any) -> dict[str, Any]:
    """Versions, plugins and git commit of the code that runs."""
    return {"versions": package_versions(), "plugins": plugin_versions(manager), "git_commit": git_commit(),
            "platform": _platform.platform()}
