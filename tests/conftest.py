"""Shared test setup: the kit's opt-in fixtures (fresh plugin manager, generator, run dir, network
guard, and a session folder for plugins' caches)."""
pytest_plugins = ["polydiff.testing.fixtures"]
