"""Built-in metrics (filled in by its own change)."""
