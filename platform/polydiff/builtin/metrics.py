"""Built-in sample-quality metrics.

Each metric compares ``samples`` with ``reference`` field by field and returns tidy rows
``{"metric": name, "field": field, "value": float}``: sliced Wasserstein, MMD and the moment
errors for every continuous or bounded field present in both States, and the sequence and
per-token total variations for every discrete field. All six are distances: lower is better.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from polydiff.evaluation.categorical import sequence_tv, token_tv
from polydiff.evaluation.distances import cov_error, mean_error, sliced_wasserstein
from polydiff.evaluation.mmd import mmd_squared
from polydiff.hookspecs import hookimpl
from polydiff.spaces import Space, State
from polydiff.specs import MetricSpec

CONTINUOUS_KINDS = ("continuous", "bounded")


def per_field_metric(name: str, distance: Callable[..., float], *, takes_generator: bool,
                         kinds: tuple[str, ...] = CONTINUOUS_KINDS) -> Callable[..., list[dict[str, Any]]]:
    """Turn ``distance(a, b[, generator=g]) -> float`` into a metric function over continuous fields.

    Args:
        name: the metric name written into each row.
        distance: a two-sample distance on tensors of shape ``(N, *field_shape)``.
        takes_generator: whether ``distance`` accepts ``generator=``.
        kinds: the space kinds of the fields it scores.

    Returns:
        ``metric(samples, reference, *, spaces, generator=None) -> list[row]``.
    """

    def metric(samples: State, reference: State, *, spaces: Mapping[str, Space],
               generator: torch.Generator | None = None) -> list[dict[str, Any]]:
        rows = []
        for field, space in spaces.items():
            if space.kind not in kinds or field not in samples or field not in reference:
                continue
            a, b = samples[field].detach().cpu(), reference[field].detach().cpu()
            value = distance(a, b, generator=generator) if takes_generator else distance(a, b)
            rows.append({"metric": name, "field": field, "value": float(value)})
        return rows

    metric.__name__ = name
    metric.__doc__ = f"{name} per {'/'.join(kinds)} field: {(distance.__doc__ or '').strip().splitlines()[0]}"
    return metric


sliced_wasserstein_metric = per_field_metric("sliced_wasserstein", sliced_wasserstein, takes_generator=True)
mmd_metric = per_field_metric("mmd", mmd_squared, takes_generator=True)
mean_error_metric = per_field_metric("mean_error", mean_error, takes_generator=False)
cov_error_metric = per_field_metric("cov_error", cov_error, takes_generator=False)
sequence_tv_metric = per_field_metric("sequence_tv", sequence_tv, takes_generator=False, kinds=("discrete",))
token_tv_metric = per_field_metric("token_tv", token_tv, takes_generator=False, kinds=("discrete",))


@hookimpl
def polydiff_metrics():
    """Sliced Wasserstein, MMD^2, the errors of the first two moments, and categorical total variations."""
    yield MetricSpec(name="sliced_wasserstein", summary="sliced 2-Wasserstein distance per continuous field",
                     function=sliced_wasserstein_metric)
    yield MetricSpec(name="mmd", summary="unbiased MMD^2, Gaussian kernels at median-distance bandwidths "
                     "(Gretton et al. 2012)", function=mmd_metric)
    yield MetricSpec(name="mean_error", summary="norm of the difference of means per continuous field",
                     function=mean_error_metric)
    yield MetricSpec(name="cov_error", summary="Frobenius norm of the difference of covariances per continuous field",
                     function=cov_error_metric)
    yield MetricSpec(name="sequence_tv", summary="total variation between empirical laws of whole sequences per "
                     "discrete field", function=sequence_tv_metric)
    yield MetricSpec(name="token_tv", summary="per-position unigram total variation per discrete field",
                     function=token_tv_metric)
