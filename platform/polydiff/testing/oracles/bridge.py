"""The exact denoiser E[x0 | x_t, x1] of paired Gaussian data under a diffusion bridge.

Data: ``x0 ~ N(mean, cov)`` and ``x1 = A x0 + e`` with ``e ~ N(0, noise_cov)``. Given x1,
x0 | x1 ~ N(m, S) with the Kalman gain ``K = cov A^T (A cov A^T + noise_cov)^{-1}``:

    m(x1) = mean + K (x1 - A mean),        S = cov - K A cov.

A bridge process writes ``x_t = a x0 + b x1 + c z``, so with x1 fixed ``y = x_t - b x1 =
a x0 + c z`` is a linear Gaussian observation of x0 ~ N(m, S) and

    E[x0 | x_t, x1] = m + a S (a^2 S + c^2 I)^{-1} (x_t - a m - b x1)

(Gaussian conditioning: Cov(x0, y) = a S, Var(y) = a^2 S + c^2 I). At a pinned bridge's
t = 1 (a = c = 0) the gain is 0 and the denoiser returns m, the posterior mean.

The source x1 is fixed when the ``PredictFn`` is made (``predict_fn(processes, source)``),
because samplers call ``model(x, t)`` with the state only; the batch of every call must be
the batch of that x1. Everything is computed in float64; predictions come back in the
dtype of x_t.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from polydiff import Corruption, Prediction

Tensor = torch.Tensor


def _matrix(value, name: str, d: int) -> Tensor:
    m = torch.as_tensor(value, dtype=torch.float64)
    if m.shape != (d, d):
        raise ValueError(f"PairedGaussianOracle: {name} must have shape ({d}, {d}), got {tuple(m.shape)}")
    return m


class PairedGaussianOracle:
    """Paired Gaussian data ``x0 ~ N(mean, cov)``, ``x1 = A x0 + e``, ``e ~ N(0, noise_cov)``, in D dimensions.

    Args:
        mean: shape ``(D,)``.
        cov: shape ``(D, D)``, positive definite.
        A: the degradation, shape ``(D, D)``.
        noise_cov: shape ``(D, D)``, positive semi-definite (``A cov A^T + noise_cov``
            must be invertible).
    """

    def __init__(self, mean, cov, A, noise_cov) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        if self.mean.ndim != 1:
            raise ValueError(f"PairedGaussianOracle: mean must have shape (D,), got {tuple(self.mean.shape)}")
        d = self.dim = self.mean.shape[0]
        self.cov, self.A, self.noise_cov = (_matrix(v, n, d) for v, n in ((cov, "cov"), (A, "A"),
                                                                          (noise_cov, "noise_cov")))
        source_cov = self.A @ self.cov @ self.A.T + self.noise_cov
        self.gain = torch.linalg.solve(source_cov, self.A @ self.cov).T  # K = cov A^T (A cov A^T + N)^{-1}
        self.posterior_cov = self.cov - self.gain @ self.A @ self.cov
        self.posterior_cov = 0.5 * (self.posterior_cov + self.posterior_cov.T)

    def sample_pairs(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw ``n`` pairs: ``(x0, x1)``, each of shape ``(n, D)``, float64."""
        z0 = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        ze = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x0 = self.mean + z0 @ torch.linalg.cholesky(self.cov).T
        noise = ze @ _sqrt_psd(self.noise_cov).T
        return x0, x0 @ self.A.T + noise

    def posterior(self, x1: Tensor) -> tuple[Tensor, Tensor]:
        """x0 | x1 ~ N(m, S): ``m`` of shape ``(B, D)`` for ``x1`` of shape ``(B, D)``, ``S`` of shape ``(D, D)``."""
        x1 = torch.as_tensor(x1, dtype=torch.float64)
        return self.mean + (x1 - self.mean @ self.A.T) @ self.gain.T, self.posterior_cov

    def denoise(self, x_t: Tensor, x1: Tensor, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        """E[x0 | x_t, x1] for ``x_t``, ``x1`` of shape ``(B, D)`` and ``a``, ``b``, ``c`` of shape ``(B,)``."""
        x, x1 = x_t.double(), x1.double()
        m, s = self.posterior(x1)
        a, b, c = (v.double()[:, None, None] for v in (a, b, c))
        eye = torch.eye(self.dim, dtype=torch.float64)
        var_y = a**2 * s + c**2 * eye  # (B, D, D)
        pinned = (a == 0).expand_as(var_y)
        var_y = torch.where(pinned, eye.expand_as(var_y), var_y)  # gain a S Var^{-1} is 0 there anyway
        resid = x - a[:, :, 0] * m - b[:, :, 0] * x1
        sol = torch.linalg.solve(var_y, resid[..., None])[..., 0]
        return m + a[:, :, 0] * (sol @ s.T)

    def predict_fn(self, processes: Mapping[str, Corruption], source: Mapping[str, Tensor],
                   field: str | None = None):
        """A ``PredictFn`` for one bridge field (the only field when ``field`` is None).

        Args:
            processes: field -> bridge Corruption (with ``coefficients(t) -> (a, b, c)``).
            source: field -> the x1 batch, shape ``(B, D)``, that every call's state pairs with.
            field: the field to denoise.

        Returns:
            ``predict(x, t) -> {field: Prediction(raw=x0_hat, x0=x0_hat)}``.
        """
        field = field or next(iter(processes))
        process = processes[field]
        if process.family != "bridge":
            raise ValueError(f"PairedGaussianOracle needs a bridge process on field {field!r}, "
                             f"got family {process.family!r}")
        if field not in source:
            raise ValueError(f"PairedGaussianOracle.predict_fn: pass source={{{field!r}: x1}}")
        x1 = source[field]

        def predict(x: Mapping[str, Tensor], t: Tensor) -> dict[str, Prediction]:
            if x[field].shape != x1.shape:
                raise ValueError(f"PairedGaussianOracle: state {tuple(x[field].shape)} does not match the "
                                 f"source {tuple(x1.shape)} given to predict_fn")
            coef = process.coefficients(t.double())
            x0 = self.denoise(x[field], x1, coef.a, coef.b, coef.c).to(x[field].dtype)
            return {field: Prediction(raw=x0, x0=x0)}

        return predict


def _sqrt_psd(m: Tensor) -> Tensor:
    """A symmetric square root of a positive semi-definite matrix (Cholesky fails on singular ones)."""
    values, vectors = torch.linalg.eigh(m)
    return vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
