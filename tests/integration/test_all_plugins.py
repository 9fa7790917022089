"""Every plugin listed in registry.toml, installed together with the core (as `make` does).

These run against the real environment, not fake dist-infos: each registered plugin must be
installed, load without error, add no clashing names, satisfy the core version it
declares, and its demo must run through `polydiff demo` at a tiny budget.
"""
import importlib.metadata

import pytest
from packaging.specifiers import SpecifierSet

import polydiff
from polydiff.registry_file import load_registry
from polydiff.report import run_demo

REGISTRY = load_registry()


def test_registry_entries_are_installed_and_load_cleanly():
    manager = polydiff.make_plugin_manager()
    installed = {p.name: p for p in manager.plugins.values()}
    for name, entry in REGISTRY.items():
        assert name in installed, f"plugin {name!r} of registry.toml is not installed; run `make install`"
        assert installed[name].error is None, f"plugin {name!r} is broken: {installed[name].error}"
        assert installed[name].distribution == entry.distribution
        assert polydiff.__version__ in SpecifierSet(entry.requires), (
            f"plugin {name!r} requires polydiff {entry.requires}, the core is {polydiff.__version__}")
    assert manager.broken() == [], [(p.name, p.error) for p in manager.broken()]


def test_every_registered_name_resolves_to_one_component():
    registry = polydiff.make_plugin_manager().registry
    for kind in ("modality", "schedule", "corruption", "denoiser", "sampler", "metric"):
        for name in registry.names(kind):
            assert registry.get(kind, name).name == name


def test_core_version_matches_the_installed_distribution():
    assert importlib.metadata.version("polydiff") == polydiff.__version__


@pytest.mark.xdist_group("demo")
def test_demo_of_every_installed_modality_runs_at_a_tiny_budget(tmp_path):
    folder, results = run_demo(tmp_path / "report", steps=40)
    assert results, "no installed modality declares a demo config"
    failed = {r.modality: r.error for r in results if r.error}
    assert not failed, failed
    assert {r.modality for r in results} >= {"toy"} | {e.modality for e in REGISTRY.values() if e.modality}
    text = (folder / "report.md").read_text()
    for result in results:
        assert result.rows and all(row["value"] == row["value"] for row in result.rows)
        shown = result.pictures + result.texts  # text modalities show samples.txt, the others pictures
        assert shown and all(p.stat().st_size > 0 for p in shown)
        assert f"## {result.modality}" in text
    assert (folder / "report.html").stat().st_size > 0
