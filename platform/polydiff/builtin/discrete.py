"""Built-in discrete corruption family and its samplers (registered through the hooks)."""
