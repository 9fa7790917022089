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
