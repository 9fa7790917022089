"""A fake plugin whose registration hook raises."""
import polydiff


@polydiff.hookimpl
def polydiff_samplers():
    raise RuntimeError("fakeraising cannot build its sampler")
