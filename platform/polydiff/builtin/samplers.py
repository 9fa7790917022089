"""Built-in samplers (filled in by its own change)."""
