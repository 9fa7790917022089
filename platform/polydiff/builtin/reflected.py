"""Built-in reflected corruption family and its samplers (registered through the hooks)."""
