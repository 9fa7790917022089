"""Built-in bridge corruption family and its samplers (registered through the hooks)."""
