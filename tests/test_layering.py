"""Dependency direction (STYLE.md section 14), checked on the source with ``ast``.

- the core (``platform/``) never imports a plugin package ``polydiff_*``;
- ``polydiff.hookspecs`` imports only pluggy at run time (the rest under TYPE_CHECKING);
- ``polydiff.builtin`` is imported by nobody but ``polydiff.plugins`` (by module-name string);
- ``polydiff.testing`` imports the public API, itself, and the trainer/checkpoint it drives;
- plugins import ``polydiff`` (and ``polydiff.testing`` in tests) only, never each other.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "platform" / "polydiff"
PLUGINS = ROOT / "plugins"
TESTING_ALLOWED = {"polydiff", "polydiff.testing", "polydiff.training.trainer", "polydiff.training.checkpoint"}


def imports(path: Path, *, runtime_only: bool = False) -> list[str]:
    """Absolute module names imported by ``path`` (``from x import y`` gives ``x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip |= {id(n) for child in node.body for n in ast.walk(child)}
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
    return out


def core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_core_never_imports_plugins():
    bad = [(p.relative_to(ROOT), m) for p in core_files() for m in imports(p) if m.startswith("polydiff_")]
    assert not bad, bad


def test_hookspecs_runtime_imports_only_pluggy():
    runtime = {m for m in imports(CORE / "hookspecs.py", runtime_only=True)} - {"__future__", "typing"}
    assert runtime == {"pluggy"}, runtime


def test_builtin_is_imported_only_by_the_plugin_manager():
    bad = [p.relative_to(ROOT) for p in core_files()
           if p.name != "plugins.py" and "builtin" not in p.parts
           and any(m.startswith("polydiff.builtin") for m in imports(p))]
    assert not bad, bad


def test_testing_uses_the_public_api():
    bad = []
    for path in sorted((CORE / "testing").glob("*.py")):
        for module in imports(path):
            if module.startswith("polydiff") and not module.startswith("polydiff.testing") and module not in TESTING_ALLOWED:
                bad.append((path.name, module))
    assert not bad, f"polydiff.testing may import only {sorted(TESTING_ALLOWED)}: {bad}"


def test_plugins_import_only_the_public_api_and_not_each_other():
    bad = []
    for plugin in sorted(p for p in PLUGINS.glob("*") if p.is_dir()):
        own = f"polydiff_{plugin.name}"
        for path in sorted(plugin.rglob("*.py")):
            in_tests = "tests" in path.relative_to(plugin).parts
            for module in imports(path):
                top = module.split(".")[0]
                if top == "polydiff" and module != "polydiff" and not (in_tests and module.startswith("polydiff.testing")):
                    bad.append((str(path.relative_to(ROOT)), module))
                elif top.startswith("polydiff_") and top != own:
                    bad.append((str(path.relative_to(ROOT)), module))
    assert not bad, bad


def test_the_rules_catch_a_violation(tmp_path: Path):
    sample = tmp_path / "sample.py"
    sample.write_text("from typing import TYPE_CHECKING\nimport polydiff_image\nif TYPE_CHECKING:\n"
                      "    from polydiff.corruptions import base\nfrom polydiff.testing import checks\n")
    assert set(imports(sample)) == {"typing", "polydiff_image", "polydiff.corruptions", "polydiff.testing"}
    assert set(imports(sample, runtime_only=True)) == {"typing", "polydiff_image", "polydiff.testing"}
