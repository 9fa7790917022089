"""Maximum mean discrepancy with a Gaussian kernel mixture (Gretton et al. 2012).

The kernel is an average of Gaussian kernels k_h(x, y) = exp(-|x - y|^2 / (2 h^2)) whose
bandwidths h are multiples of the median pairwise distance of the pooled sample (the
"median heuristic", Gretton et al. 2012, section 8), so the value is comparable across
data sets of different scales without tuning.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

BANDWIDTH_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
MAX_POINTS = 2000
"""Each set is subsampled (without replacement) to at most this many points."""


def _subsample(x: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
    if x.shape[0] <= n:
        return x
    return x[torch.randperm(x.shape[0], generator=generator)[:n].to(x.device)]


def median_distance(x: torch.Tensor, *, max_points: int = 1000, generator: torch.Generator | None = None) -> float:
    """Median Euclidean distance between distinct rows of ``x`` (N, D), on at most ``max_points`` rows."""
    x = _subsample(x, max_points, generator)
    d = torch.cdist(x, x)
    off = ~torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return float(d[off].median())


def mmd_squared(a: torch.Tensor, b: torch.Tensor, *, bandwidth_factors: Sequence[float] = BANDWIDTH_FACTORS,
                max_points: int = MAX_POINTS, generator: torch.Generator | None = None) -> float:
    """Unbiased estimate of MMD^2 (Gretton et al. 2012, eq. 3) with a Gaussian kernel mixture.

    MMD^2_u = sum_{i != j} k(a_i, a_j) / (m (m - 1)) + sum_{i != j} k(b_i, b_j) / (n (n - 1))
    - 2 sum_{i, j} k(a_i, b_j) / (m n), with k the mean of Gaussian kernels of bandwidths
    ``factor * median pairwise distance`` of the pooled sample. Being unbiased, the estimate
    can be slightly negative when both sets come from the same law.

    Args:
        a: samples, shape ``(M, *shape)`` (flattened to ``(M, D)``), M >= 2.
        b: samples, shape ``(N, *shape)``, N >= 2.
        bandwidth_factors: multiples of the median distance used as bandwidths.
        max_points: subsample each set to at most this many points.
        generator: seeds the subsampling.

    Returns:
        MMD^2 as a float (kernel values lie in [0, 1], so MMD^2 lies in [-1, 2]).
    """
    a, b = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"mmd: dimensions differ, {a.shape[1]} vs {b.shape[1]}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"mmd: needs at least 2 points per set, got {a.shape[0]} and {b.shape[0]}")
    a, b = _subsample(a, max_points, generator), _subsample(b, max_points, generator)
    h = max(median_distance(torch.cat([a, b]), generator=generator), 1e-12)
    scales = [1.0 / (2 * (f * h) ** 2) for f in bandwidth_factors]

    def kernel_sum(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(x, y).pow(2)
        return sum(torch.exp(-s * d2).sum() for s in scales) / len(scales)

    m, n = a.shape[0], b.shape[0]
    kaa = (kernel_sum(a, a) - m) / (m * (m - 1))   # remove the diagonal k(a_i, a_i) = 1
    kbb = (kernel_sum(b, b) - n) / (n * (n - 1))
    kab = kernel_sum(a, b) / (m * n)
    return float(kaa + kbb - 2 * kab)
