"""A working fake plugin: one metric."""
import polydiff


def spread(samples, reference, *, spaces, generator=None):
    return [{"metric": "fake_spread", "field": f, "value": float(samples[f].std())} for f in spaces]


@polydiff.hookimpl
def polydiff_metrics():
    yield polydiff.MetricSpec(name="fake_spread", summary="standard deviation of the samples", function=spread)
