"""A fake plugin registering the metric name "dup_metric" (so does its twin)."""
import polydiff


def dup(samples, reference, *, spaces, generator=None):
    return [{"metric": "dup_metric", "value": 0.0}]


@polydiff.hookimpl
def polydiff_metrics():
    yield polydiff.MetricSpec(name="dup_metric", summary="clashes with the twin plugin", function=dup)
