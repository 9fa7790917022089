"""Closed-form denoisers for toy data: the exact E[x0 | x_t] of a Gaussian process.

Used by the oracle tests (DESIGN.md section 11), by the conformance kit's sampler checks
and by authors of new samplers: with an exact denoiser, any gap between samples and the
data distribution is the sampler's own error.

For x_t = alpha x0 + sigma eps:

* Gaussian mixture x0 ~ sum_k w_k N(mu_k, S_k): x_t | k ~ N(alpha mu_k, C_k) with
  C_k = alpha^2 S_k + sigma^2 I, responsibilities r_k(x_t) ∝ w_k N(x_t; alpha mu_k, C_k),
  and E[x0 | x_t] = sum_k r_k (mu_k + alpha S_k C_k^{-1} (x_t - alpha mu_k)).
* Point cloud (the empirical distribution of points y_i): r_i ∝ exp(-|x_t - alpha y_i|^2
  / (2 sigma^2)) and E[x0 | x_t] = sum_i r_i y_i.

Both compute in float64 and return predictions in the dtype of x_t.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from polydiff import Corruption, Prediction, x0_to_eps


def _gaussian_values(process: Corruption, t: torch.Tensor):
    if process.family != "gaussian":
        raise ValueError(f"oracle denoisers need a Gaussian process, got family {process.family!r}")
    v = process.schedule(t.double())
    return v.alpha[:, None], v.sigma[:, None]


class _ExactDenoiser:
    """Shared by the oracles: turn ``denoise(x_t, alpha, sigma)`` into a ``PredictFn``."""

    def denoise(self, x_t: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict_fn(self, processes: Mapping[str, Corruption], field: str | None = None):
        """A ``PredictFn`` for one Gaussian field (the only field when ``field`` is None)."""
        field = field or next(iter(processes))
        process = processes[field]

        def predict(x: Mapping[str, torch.Tensor], t: torch.Tensor) -> dict[str, Prediction]:
            alpha, sigma = _gaussian_values(process, t)
            x0 = self.denoise(x[field], alpha, sigma).to(x[field].dtype)
            eps = x0_to_eps(x0, x[field], alpha.to(x0.dtype), sigma.to(x0.dtype))
            return {field: Prediction(raw=x0, x0=x0, eps=eps)}

        return predict


class GaussianMixtureOracle(_ExactDenoiser):
    """The exact denoiser of a Gaussian mixture in ``D`` dimensions.

    Args:
        weights: mixture weights, shape ``(K,)`` (normalised here).
        means: component means, shape ``(K, D)``.
        covs: component covariances, shape ``(K, D, D)`` (positive definite).
    """

    def __init__(self, weights, means, covs) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        self.weights = self.weights / self.weights.sum()
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.covs = torch.as_tensor(covs, dtype=torch.float64)
        k, d = self.means.shape
        if self.weights.shape != (k,) or self.covs.shape != (k, d, d):
            raise ValueError(f"shapes disagree: weights {tuple(self.weights.shape)}, means {(k, d)}, "
                             f"covs {tuple(self.covs.shape)}")
        self.dim = d

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` exact samples, shape ``(n, D)``, float64."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        chol = torch.linalg.cholesky(self.covs)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[comp] + torch.einsum("nij,nj->ni", chol[comp], z)

    def mean(self) -> torch.Tensor:
        """Mean of the mixture, shape ``(D,)``."""
        return self.weights @ self.means

    def covariance(self) -> torch.Tensor:
        """Covariance of the mixture, shape ``(D, D)``."""
        mu = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covs + self.means[:, :, None] * self.means[:, None, :])
        return second - mu[:, None] * mu[None, :]

    def components(self, x_t: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per component k: ``log w_k N(x_t; alpha mu_k, C_k)`` ``(B, K)`` and the posterior mean
        E[x0 | x_t, k] ``(B, K, D)``, for ``x_t`` ``(B, D)`` and ``alpha``, ``sigma`` ``(B, 1)``."""
        x = x_t.double()
        eye = torch.eye(self.dim, dtype=torch.float64)
        a2 = (alpha**2)[:, :, None]
        cov_t = a2[:, None] * self.covs[None] + (sigma**2)[:, :, None, None] * eye  # (B, K, D, D)
        diff = x[:, None, :] - alpha[:, :, None] * self.means[None]  # (B, K, D)
        chol = torch.linalg.cholesky(cov_t)
        sol = torch.cholesky_solve(diff[..., None], chol)[..., 0]  # C_k^{-1} (x_t - alpha mu_k)
        log_det = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        log_joint = torch.log(self.weights)[None] - 0.5 * (diff * sol).sum(-1) - 0.5 * log_det
        post = self.means[None] + alpha[:, :, None] * torch.einsum("kij,bkj->bki", self.covs, sol)
        return log_joint, post

    def denoise(self, x_t: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """E[x0 | x_t] for ``x_t`` of shape ``(B, D)`` and ``alpha``, ``sigma`` of shape ``(B, 1)``."""
        log_joint, post = self.components(x_t, alpha, sigma)
        x0 = (torch.softmax(log_joint, dim=1)[:, :, None] * post).sum(1)
        return torch.where((sigma[:, 0] == 0)[:, None], x_t.double(), x0)


class PointCloudOracle(_ExactDenoiser):
    """The exact denoiser of the empirical distribution of ``points`` (shape ``(M, D)``)."""

    def __init__(self, points) -> None:
        self.points = torch.as_tensor(points, dtype=torch.float64)
        if self.points.ndim != 2:
            raise ValueError(f"points must have shape (M, D), got {tuple(self.points.shape)}")

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` points with replacement, shape ``(n, D)``."""
        idx = torch.randint(len(self.points), (n,), generator=generator)
        return self.points[idx]

    def denoise(self, x_t: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """E[x0 | x_t] for ``x_t`` of shape ``(B, D)``; ``alpha``, ``sigma`` of shape ``(B, 1)``."""
        x = x_t.double()
        scaled = alpha[:, None, :] * self.points[None]  # (B, M, D)
        d2 = ((x[:, None, :] - scaled) ** 2).sum(-1)
        safe_sigma = sigma.clamp(min=1e-30)
        r = torch.softmax(-d2 / (2 * safe_sigma**2), dim=1)
        x0 = r @ self.points
        return torch.where((sigma[:, 0] == 0)[:, None], x, x0)
