"""`polydiff plugins new` writes an exact tree, and the generated plugin passes the kit as generated.

The end-to-end test installs the plugin into the running environment (editable, no
dependencies, no build isolation: nothing is downloaded), runs the plugin's own tests in a
subprocess and ``polydiff plugins check``, and always uninstalls it again.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import polydiff
from polydiff.plugin_commands import new_plugin

EXPECTED_TREE = [
    "README.md",
    "pyproject.toml",
    "src/polydiff_demoplug/__init__.py",
    "src/polydiff_demoplug/modality.py",
    "src/polydiff_demoplug/plugin.py",
    "tests/test_demoplug_conformance.py",
    "tests/test_demoplug_modality.py",
]


CHECK = "from polydiff.plugin_commands import check_plugin_command; raise SystemExit(check_plugin_command('demoplug'))"


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_new_writes_the_exact_tree(tmp_path: Path):
    root = new_plugin("demoplug", tmp_path)
    assert root == tmp_path / "demoplug"
    assert tree(root) == EXPECTED_TREE
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "polydiff-demoplug"' in pyproject
    assert '[project.entry-points."polydiff.plugins"]\ndemoplug = "polydiff_demoplug.plugin"' in pyproject
    conformance = (root / "tests" / "test_demoplug_conformance.py").read_text()
    assert "class TestDemoplugPlugin(PluginConformance):" in conformance and 'plugin = "demoplug"' in conformance
    for path in root.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
        assert "$" not in path.read_text(), f"unsubstituted placeholder in {path}"


@pytest.mark.parametrize("name", ["Demo", "2d", "my-plugin", "", "class", "a.b"])
def test_new_rejects_bad_names(tmp_path: Path, name: str):
    with pytest.raises(polydiff.PolydiffError, match="lowercase Python identifier"):
        new_plugin(name, tmp_path)


def test_new_refuses_to_overwrite(tmp_path: Path):
    (tmp_path / "demoplug").mkdir()
    (tmp_path / "demoplug" / "keep.txt").write_text("mine")
    with pytest.raises(polydiff.PolydiffError, match="already exists"):
        new_plugin("demoplug", tmp_path)
    assert tree(tmp_path / "demoplug") == ["keep.txt"]


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_generated_plugin_passes_its_tests_and_the_kit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in ("POLYDIFF_LOAD_PLUGINS", "POLYDIFF_DISABLE_PLUGIN_AUTOLOAD"):
        monkeypatch.delenv(name, raising=False)
    root = new_plugin("demoplug", tmp_path)
    installed = pip("install", "--no-deps", "--no-build-isolation", "-e", str(root))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    try:
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert "passed" in run.stdout and "failed" not in run.stdout
        assert "modality[demoplug]-check_encode_decode_roundtrip" in subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", "tests"], cwd=root,
            capture_output=True, text=True, timeout=300).stdout
        # a fresh interpreter, as `polydiff plugins check`: this one started before the install
        check = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
        assert "PASS  plugin[demoplug]-check_entry_point_loads" in check.stdout
    finally:
        removed = pip("uninstall", "-y", "polydiff-demoplug")
        assert removed.returncode == 0, removed.stderr
