"""A fake plugin implementing a hook that does not exist (a typo of polydiff_metrics)."""
import polydiff


@polydiff.hookimpl
def polydiff_metricz():
    return []
