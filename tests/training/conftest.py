"""Fixtures for the trainer tests: the tiny plugin (loaded by path, so the DDP script can
load the same file) and a factory of validated configs."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).with_name("training_plugin.py")
_spec = importlib.util.spec_from_file_location("polydiff_training_test_plugin", _PATH)
plugin = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = plugin
_spec.loader.exec_module(plugin)


@pytest.fixture
def tp():
    """The ``training_plugin`` module."""
    return plugin
