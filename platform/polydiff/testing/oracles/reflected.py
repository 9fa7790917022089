"""The exact score of a weighted point cloud under the reflected process (Lou & Ermon 2023).

For data ``x0 ~ sum_i w_i delta(y_i)`` on a box, the marginal of the reflected process at
noise level sigma is, per sample, in unit-box coordinates u = (x - low) / (high - low),

    p_t(u) = sum_i w_i prod_d k_sigma(u_d | y_id),

with k the reflected heat kernel of ``ReflectedCorruption.kernel_log_density``. Its score
is ``d/du_d log p_t = sum_i r_i(u) d/du_d log k_sigma(u_d | y_id)`` with the posterior
responsibilities ``r_i ∝ w_i prod_d k_sigma(u_d | y_id)``, and ``E[x0 | x_t] = sum_i r_i y_i``
exactly. With the training points of a data set (equal weights) it is the exact denoiser
of the empirical distribution: sampling it reproduces training points (it memorises).

Cost: ``B * M * D`` kernel evaluations (10 Gaussians each) per call, computed in float64
in batch chunks of at most ``CHUNK`` of them, so memory stays below ~50 MB for any M.
Uses only the public ``polydiff`` API plus the process's own kernel and schedule methods.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from polydiff import Corruption, PredictFn, Prediction

CHUNK = 1 << 19
"""Kernel evaluations (batch rows x points x dimensions) per chunk."""


def _check_process(process: Corruption, low: float, high: float) -> None:
    if process.family != "reflected":
        raise ValueError(f"ReflectedPointOracle needs a reflected-family process, got {process.name!r} "
                         f"(family {process.family!r})")
    if (float(process.space.low), float(process.space.high)) != (low, high):
        raise ValueError(f"ReflectedPointOracle built for the box [{low}, {high}] but field {process.field!r} "
                         f"has the box [{process.space.low}, {process.space.high}]")


class ReflectedPointOracle:
    """The exact score and E[x0 | x_t] of ``sum_i w_i delta(y_i)`` under a reflected process.

    Args:
        points: the atoms y_i, shape ``(M, D)``, inside ``[low, high]``.
        weights: their weights, shape ``(M,)`` (normalised here); None for equal weights.
        low, high: the box of the field the oracle serves.

    Raises:
        ValueError: for a wrong shape, a point outside the box or a negative weight.
    """

    def __init__(self, points, weights=None, low: float = 0.0, high: float = 1.0) -> None:
        self.points = torch.as_tensor(points, dtype=torch.float64)
        if self.points.ndim != 2:
            raise ValueError(f"points must have shape (M, D), got {tuple(self.points.shape)}")
        if bool((self.points < low).any() | (self.points > high).any()):
            raise ValueError(f"points must lie inside the box [{low}, {high}]")
        m = len(self.points)
        w = torch.ones(m, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if w.shape != (m,) or bool((w < 0).any()) or not float(w.sum()) > 0:
            raise ValueError(f"weights must be {m} non-negative numbers with a positive sum, got {w.tolist()}")
        self.weights = w / w.sum()
        self.low, self.high = float(low), float(high)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` atoms with their weights, shape ``(n, D)``, float64."""
        idx = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        return self.points[idx]

    def posterior(self, process: Corruption, x_t: torch.Tensor,
                  t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Responsibilities and unit-coordinate score at ``x_t`` (shape ``(B, D)``), float64.

        Returns:
            ``(r (B, M), score_u (B, D))``.
        """
        _check_process(process, self.low, self.high)
        u = process.to_unit(x_t)
        y = process.to_unit(self.points)
        sigma = process.sigma(t.detach()).double().view(-1, 1, 1)
        rows = max(1, CHUNK // (y.numel() or 1))
        parts = [self._chunk(process, u[i:i + rows], y, sigma[i:i + rows]) for i in range(0, len(u), rows)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _chunk(self, process: Corruption, u: torch.Tensor, y: torch.Tensor,
               sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_k = process.kernel_log_density(u[:, None, :], y[None], sigma)  # (b, M, D)
        r = torch.softmax(torch.log(self.weights)[None] + log_k.sum(-1), dim=1)
        score_k = process.kernel_score(u[:, None, :], y[None], sigma)
        return r, (r[:, :, None] * score_k).sum(1)

    def predict_fn(self, processes: Mapping[str, Corruption], field: str | None = None) -> PredictFn:
        """A ``PredictFn`` for one reflected field of shape ``(D,)`` (the only field when None).

        Each Prediction holds, in the dtype of x_t: ``raw = sigma score_u`` (the process's
        network convention), ``score = score_u / (high - low)`` (field coordinates, as
        ``ReflectedCorruption.predict``) and ``x0 = sum_i r_i y_i``, the exact E[x0 | x_t].
        """
        field = field or next(iter(processes))
        process = processes[field]
        width = self.high - self.low

        def predict(x: Mapping[str, torch.Tensor], t: torch.Tensor) -> dict[str, Prediction]:
            """The exact Prediction of ``field`` at ``(x, t)``, t of shape ``(B,)``."""
            x_t = x[field]
            r, score_u = self.posterior(process, x_t, t)
            sigma = process.sigma(t.detach()).double()[:, None]
            x0 = process.reflect(r @ self.points).to(x_t.dtype)  # folds back rounding past a wall
            return {field: Prediction(raw=(sigma * score_u).to(x_t.dtype), x0=x0,
                                      score=(score_u / width).to(x_t.dtype))}

        return predict
