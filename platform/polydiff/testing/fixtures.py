"""Opt-in pytest fixtures for polydiff and plugin tests.

Enable in a ``conftest.py`` with ``pytest_plugins = ["polydiff.testing.fixtures"]``. This is
deliberately not a ``pytest11`` entry point: that would import torch into every pytest run
of the environment (datasette had to add lazy imports for exactly that reason).

Fixtures:
    plugin_manager: a fresh, isolated ``PluginManager`` (built-ins and installed plugins).
    temporary_plugin: ``temporary_plugin(obj, name=...)`` -> a fresh manager that also has
        ``obj`` (a module, class or instance with ``@polydiff.hookimpl`` functions)
        registered; nothing outlives the test.
    generator: a ``torch.Generator`` seeded with 0.
    run_dir: an empty run folder under the test's ``tmp_path``.
    no_network (autouse): ``socket.connect`` to anything but loopback or a Unix socket
        raises, because nothing in polydiff may download at run time (DESIGN section 10).
    private_cache (autouse, per session): ``POLYDIFF_CACHE`` points at a folder of the test
        session, so plugins' caches (e.g. feature classifiers) never land in ~/.cache.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import polydiff


@pytest.fixture
def plugin_manager() -> polydiff.PluginManager:
    """A fresh plugin manager: built-ins plus installed plugins, no state shared with other tests."""
    return polydiff.make_plugin_manager()


@pytest.fixture
def temporary_plugin() -> Callable[..., polydiff.PluginManager]:
    """Build a fresh manager with an in-process plugin registered next to the installed ones.

    Usage::

        class Extra:
            @polydiff.hookimpl
            def polydiff_samplers(self):
                yield polydiff.SamplerSpec(name="mine", summary="...", function=mine)

        def test_mine(temporary_plugin):
            manager = temporary_plugin(Extra(), name="extra")
            assert manager.registry.get("sampler", "mine")
    """

    def make(obj: Any, *, name: str = "temporary", **options: Any) -> polydiff.PluginManager:
        return polydiff.make_plugin_manager(extra_plugins={name: obj}, **options)

    return make


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with 0."""
    return torch.Generator().manual_seed(0)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """An empty run folder (``tmp_path / "run"``)."""
    path = tmp_path / "run"
    path.mkdir()
    return path


def _is_local(address: Any) -> bool:
    """True for Unix-socket paths and loopback hosts (torch.distributed's gloo uses loopback TCP)."""
    if not isinstance(address, tuple):
        return True
    host = str(address[0])
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make ``socket.connect`` to a non-loopback address raise ``OSError`` for the test."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guard(address: Any) -> None:
        if not _is_local(address):
            raise OSError(f"network access to {address!r} is disabled in polydiff tests: "
                          f"no code path may download at run time (DESIGN section 10)")

    def connect(self: socket.socket, address: Any) -> None:
        guard(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        guard(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Point ``POLYDIFF_CACHE`` at a folder of this test session; restore it afterwards."""
    import os

    previous = os.environ.get("POLYDIFF_CACHE")
    os.environ["POLYDIFF_CACHE"] = str(tmp_path_factory.mktemp("polydiff-cache"))
    yield Path(os.environ["POLYDIFF_CACHE"])
    if previous is None:
        os.environ.pop("POLYDIFF_CACHE", None)
    else:
        os.environ["POLYDIFF_CACHE"] = previous
