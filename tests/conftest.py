"""Shared test setup: the kit's opt-in fixtures (fresh plugin manager, generator, run dir, network guard)."""
pytest_plugins = ["polydiff.testing.fixtures"]
