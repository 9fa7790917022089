"""Built-in toy (filled in by its own change)."""
