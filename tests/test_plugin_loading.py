"""Plugin discovery and isolation, with fake distributions (conda's dist-info pattern).

``tests/data/fake_plugins`` holds ``*.dist-info`` folders (METADATA + entry_points.txt)
next to their modules; prepending the folder to ``sys.path`` makes ``importlib.metadata``
discover them as installed plugins of the group ``polydiff.plugins``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import polydiff
from polydiff.plugin_commands import list_plugins, plugin_info

FAKES = Path(__file__).parent / "data" / "fake_plugins"
ALL_FAKES = ["fakeok", "fakeimporterror", "fakeraising", "fakedupa", "fakedupb", "fakeunknown"]


@pytest.fixture(autouse=True)
def fake_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FAKES))
    for name in ("POLYDIFF_LOAD_PLUGINS", "POLYDIFF_DISABLE_PLUGIN_AUTOLOAD", "POLYDIFF_STRICT_PLUGINS"):
        monkeypatch.delenv(name, raising=False)


def manager(*names: str, **options) -> polydiff.PluginManager:
    return polydiff.make_plugin_manager(load_only=list(names), **options)


def test_ok_plugin_registers_its_components():
    m = manager("fakeok")
    info = m.plugins["fakeok"]
    assert (info.distribution, info.version, info.error) == ("polydiff-fakeok", "1.0", None)
    assert info.hooks == ["polydiff_metrics"]
    spec = m.registry.get("metric", "fake_spread")
    assert (spec.plugin, spec.distribution) == ("fakeok", "polydiff-fakeok")


def test_import_error_marks_only_that_plugin_broken():
    m = manager("fakeok", "fakeimporterror")
    broken = m.plugins["fakeimporterror"]
    assert "polydiff_dependency_that_is_not_installed" in broken.error
    assert broken.status.startswith("broken: ModuleNotFoundError")
    assert m.plugins["fakeok"].error is None
    assert m.registry.get("metric", "fake_spread").plugin == "fakeok"
    assert [p.name for p in m.broken()] == ["fakeimporterror"]


def test_raising_registration_hook_is_attributed_to_its_plugin():
    m = manager("fakeraising", "fakeok")
    assert "fakeraising cannot build its sampler" in m.plugins["fakeraising"].error
    assert m.plugins["fakeok"].error is None
    assert "ancestral" in m.registry.names("sampler")


def test_duplicate_name_names_both_plugins_and_distributions():
    m = manager("fakedupa", "fakedupb")
    with pytest.raises(polydiff.DuplicateNameError) as info:
        m.registry.get("metric", "dup_metric")
    for part in ("fakedupa", "fakedupb", "polydiff-fakedupa", "polydiff-fakedupb"):
        assert part in str(info.value)
    table = list_plugins(m)
    assert table.count("broken: DuplicateNameError") == 2


def test_unknown_hook_marks_the_plugin_broken():
    m = manager("fakeunknown", "fakeok")
    error = m.plugins["fakeunknown"].error
    assert error is not None and "polydiff_metricz" in error
    assert m.plugins["fakeok"].error is None


def test_blocked_plugin_is_not_loaded():
    m = manager("fakeok", "fakedupa", blocked=("fakeok",))
    assert "fakeok" not in m.plugins
    assert "fake_spread" not in m.registry.names("metric")
    assert m.registry.get("metric", "dup_metric").plugin == "fakedupa"


def test_load_plugins_environment_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("POLYDIFF_LOAD_PLUGINS", "fakeok, fakedupb")
    m = polydiff.make_plugin_manager()
    third_party = sorted(name for name, info in m.plugins.items() if not info.builtin)
    assert third_party == ["fakedupb", "fakeok"]


def test_disable_autoload_environment_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("POLYDIFF_DISABLE_PLUGIN_AUTOLOAD", "1")
    m = polydiff.make_plugin_manager()
    assert all(info.builtin for info in m.plugins.values())
    assert "gaussian" in m.registry.names("corruption")


def test_strict_mode_reraises_load_errors(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("POLYDIFF_STRICT_PLUGINS", "1")
    with pytest.raises(polydiff.PluginLoadError, match="fakeimporterror"):
        manager("fakeimporterror")
    with pytest.raises(RuntimeError, match="fakeraising cannot build"):
        manager("fakeraising")


def test_list_shows_builtins_only_with_all_and_registry_plugins_as_not_installed(tmp_path: Path):
    registry = tmp_path / "registry.toml"
    registry.write_text('[absent]\ndistribution = "polydiff-absent"\npath = "plugins/absent"\n'
                        'summary = "not here"\nmodality = ""\nrequires = ">=0.1"\n')
    m = manager("fakeok", "fakeimporterror")
    short = list_plugins(m, registry_path=registry)
    assert "builtin.toy" not in short and "fakeok" in short
    assert "absent" in short and "not installed" in short
    full = list_plugins(m, show_all=True, registry_path=registry)
    assert "builtin.toy" in full
    rows = {r["name"]: r for r in json.loads(list_plugins(m, as_json=True, registry_path=registry))}
    assert rows["fakeok"]["status"] == "ok"
    assert rows["fakeimporterror"]["status"].startswith("broken: ModuleNotFoundError")
    assert rows["absent"]["status"] == "not installed"


def test_info_shows_components_and_the_full_error():
    m = manager("fakeok", "fakeimporterror")
    ok = plugin_info(m, "fakeok")
    assert "metric fake_spread: standard deviation of the samples" in ok
    broken = plugin_info(m, "fakeimporterror")
    assert "error:" in broken and "polydiff_dependency_that_is_not_installed" in broken
    with pytest.raises(polydiff.PolydiffError, match="known plugins: .*fakeok"):
        plugin_info(m, "nosuchplugin")
