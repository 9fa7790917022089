"""Monte Carlo estimate of a process's negative ELBO, in bits per dimension (token).

For processes that implement ``Corruption.nelbo`` (the masked and uniform discrete
families), the continuous-time NELBO of a sample x0, per dimension, is

    NELBO(x0) / D = E_{t ~ U(0, 1)} E_{x_t ~ q(x_t | x0)} [nelbo(raw(x_t, t), x0, t)] + nelbo_prior(x0)

(MDLM, Sahoo et al. 2024, eq. 10; MD4, Shi et al. 2024, eq. 5; UDLM, Schiff et al. 2024).
The outer expectation is estimated with ``n_times`` stratified times per sample,
``t_k = (k + u_k) / K``, which keeps the estimator unbiased and lowers its variance. The
result bounds the negative log-likelihood from above, so ``2 ** value`` bounds the
per-token perplexity. For the autoregressive process (``exact_likelihood``) it is the exact
NLL, evaluated once.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from polydiff.corruptions.base import Corruption
from polydiff.errors import IncompatibleSpaceError
from polydiff.protocols import PredictFn
from polydiff.spaces import State

LN2 = math.log(2.0)


def has_nelbo(process: Corruption) -> bool:
    """Whether ``process`` overrides ``Corruption.nelbo`` (so it has a likelihood bound)."""
    return type(process).nelbo is not Corruption.nelbo


def _stratified_times(n: int, k: int, lo: float, generator: torch.Generator | None) -> torch.Tensor:
    """``(k, n)`` times: stratum ``j`` holds ``lo + (1 - lo) (j + u) / k`` with u ~ U(0, 1)."""
    u = torch.rand(k, n, generator=generator, dtype=torch.float64)
    strata = torch.arange(k, dtype=torch.float64)[:, None]
    return lo + (1.0 - lo) * (strata + u) / k


@torch.no_grad()
def nelbo_bits(predict: PredictFn, processes: Mapping[str, Corruption], x0: State, *, n_times: int = 16,
               generator: torch.Generator | None = None, t_min: float = 1e-6) -> dict[str, torch.Tensor]:
    """Per-sample NELBO in bits per dimension, for every field and for the whole State.

    Args:
        predict: ``PredictFn``; ``predict(x_t, t)[field].raw`` is what ``nelbo`` consumes.
        processes: field -> Corruption, each with a ``nelbo``.
        x0: data, field -> ``(B, *field_shape)``.
        n_times: stratified times per sample.
        generator: source of the times and the forward noise.
        t_min: the smallest time (the integrand is finite at 0; this avoids evaluating at exactly 0).

    Returns:
        ``{field: (B,), "total": (B,)}`` in bits per dimension; ``"total"`` averages the
        fields weighted by their number of dimensions.

    Raises:
        IncompatibleSpaceError: a process without a likelihood bound (e.g. Gaussian, which
            has ``polydiff.evaluation.likelihood`` instead).
    """
    for field, process in processes.items():
        if not has_nelbo(process):
            raise IncompatibleSpaceError(
                f"NELBO: field {field!r} uses {process.name!r} (family {process.family!r}), which has no nelbo; "
                "Gaussian fields have elbo_bits_per_dim / pf_ode_bits_per_dim instead")
    n = next(iter(x0.values())).shape[0]
    if all(getattr(p, "exact_likelihood", False) for p in processes.values()):
        n_times = 1  # the integrand does not depend on t (autoregressive): one evaluation is exact
    times = _stratified_times(n, n_times, t_min, generator)
    sums = {f: torch.zeros(n, dtype=torch.float64) for f in processes}
    for t in times:
        t_f = t.float()
        corrupted = {f: p.corrupt(x0[f], t_f, generator=generator) for f, p in processes.items()}
        preds = predict({f: c.x_t for f, c in corrupted.items()}, t_f)
        for f, p in processes.items():
            sums[f] += p.nelbo(preds[f].raw, x0[f], corrupted[f]).double().cpu()
    out = {f: (sums[f] / n_times + processes[f].nelbo_prior(x0[f]).double().cpu()) / LN2 for f in processes}
    dims = {f: x0[f][0].numel() for f in processes}
    out["total"] = sum(out[f] * dims[f] for f in processes) / sum(dims.values())
    return out
