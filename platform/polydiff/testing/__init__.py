"""The conformance kit: checks that every polydiff plugin (ours and third-party) runs.

In a plugin's tests::

    from polydiff.testing import PluginConformance

    class TestMyPlugin(PluginConformance):
        plugin = "my"                    # the entry-point name

Without pytest: ``check_plugin("my")`` (what ``polydiff plugins check my`` runs). Opt-in
fixtures: ``pytest_plugins = ["polydiff.testing.fixtures"]``. Closed-form denoisers for
toy data: ``polydiff.testing.oracles``. Example configs: ``step_example(path, overrides)``.
See docs/testing-plugins.md.
"""
from __future__ import annotations

from polydiff.testing.budgets import BUDGETS, SMALL, TINY, Budget, get_budget
from polydiff.testing.checks import CheckContext, Component
from polydiff.testing.conformance import (CheckResult, PluginConformance, check_id, check_plugin,
                                          expected_reason, iter_checks)
from polydiff.testing.examples import step_example

__all__ = [
    "BUDGETS", "Budget", "CheckContext", "CheckResult", "Component", "PluginConformance", "SMALL", "TINY",
    "check_id", "check_plugin", "expected_reason", "get_budget", "iter_checks", "step_example",
]
