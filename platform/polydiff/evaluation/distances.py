"""Sample-based distances between two point sets of equal dimension."""
from __future__ import annotations

import torch


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).double()


def _quantiles(values: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Column-wise empirical quantiles of ``values`` (N, P) at ``levels`` (Q,) -> (Q, P)."""
    return torch.quantile(values, levels, dim=0, interpolation="linear")


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, *, n_projections: int = 256,
                       n_quantiles: int = 512, generator: torch.Generator | None = None) -> float:
    """Sliced 2-Wasserstein distance (Rabin et al. 2011; Bonneel et al. 2015).

    SW_2(a, b) = sqrt( E_theta W_2^2(theta . a, theta . b) ), theta uniform on the sphere,
    each 1-D W_2 computed from ``n_quantiles`` matched quantiles (so sizes may differ).

    Args:
        a: samples, shape ``(N, *shape)``.
        b: samples, shape ``(M, *shape)``.
        n_projections: random directions; the estimate's spread shrinks as 1/sqrt of it.
        generator: seeds the directions.

    Returns:
        The distance as a float (0 for identical sets).
    """
    a, b = _flat(a), _flat(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sliced_wasserstein: dimensions differ, {a.shape[1]} vs {b.shape[1]}")
    theta = torch.randn(a.shape[1], n_projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    levels = (torch.arange(n_quantiles, dtype=torch.float64) + 0.5) / n_quantiles
    qa, qb = _quantiles(a @ theta, levels), _quantiles(b @ theta, levels)
    return float(((qa - qb) ** 2).mean().sqrt())


def mean_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Euclidean norm of the difference of sample means, ``|mean(a) - mean(b)|_2``.

    Args:
        a: samples, shape ``(N, *shape)``.
        b: samples, shape ``(M, *shape)``.
    """
    a, b = _flat(a), _flat(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"mean_error: dimensions differ, {a.shape[1]} vs {b.shape[1]}")
    return float((a.mean(0) - b.mean(0)).norm())


def cov_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frobenius norm of the difference of sample covariances, ``|cov(a) - cov(b)|_F``.

    Args:
        a: samples, shape ``(N, *shape)``, N >= 2.
        b: samples, shape ``(M, *shape)``, M >= 2.
    """
    a, b = _flat(a), _flat(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"cov_error: dimensions differ, {a.shape[1]} vs {b.shape[1]}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"cov_error: needs at least 2 points per set, got {a.shape[0]} and {b.shape[0]}")
    return float((torch.cov(a.T).reshape(a.shape[1], -1) - torch.cov(b.T).reshape(b.shape[1], -1)).norm())
