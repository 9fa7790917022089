"""The exact joint denoiser of a labelled Gaussian mixture under a composite process.

Data: a label k ~ Categorical(w) and a point x0 | k ~ N(mu_k, S_k). The point field is
corrupted by a Gaussian process, x_t = alpha x0 + sigma eps, and the label field by a
discrete process (masked or uniform) with keep probability a(t), both at one time t. Then

    p(k | x_t, l_t) ∝ w_k N(x_t; alpha mu_k, alpha^2 S_k + sigma^2 I) q(l_t | k),

with q(l_t | k) = a [l_t = k] + (1 - a) [l_t = mask] (masked) or a [l_t = k] + (1 - a) / K
(uniform), and

    E[x0 | x_t, l_t] = sum_k p(k | x_t, l_t) E[x0 | x_t, k].

Both are returned as the Predictions of the two fields, so every sampler that supports
both families can be checked against the known joint law.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from polydiff import Corruption, Prediction, x0_to_eps
from polydiff.testing.oracles.gaussian import GaussianMixtureOracle


def _label_log_likelihood(process: Corruption, l_t: torch.Tensor, t: torch.Tensor, k: int) -> torch.Tensor:
    """``log q(l_t | label = j)`` for every j, shape ``(B, K)``; ``l_t`` of shape ``(B,)``."""
    keep = process.schedule.alpha(t.double())[:, None]
    same = torch.nn.functional.one_hot(l_t.clamp(max=k - 1).long(), k).double()
    same = same * (l_t < k).double()[:, None]
    if process.family == "masked":
        masked = (l_t == k).double()[:, None]
        prob = keep * same + (1 - keep) * masked
    elif process.family == "uniform":
        prob = keep * same + (1 - keep) / k
    else:
        raise ValueError(f"the label field needs a masked or uniform process, got family {process.family!r}")
    return torch.log(prob.clamp_min(0.0))


class LabelledMixtureOracle:
    """Exact predictions for ``{x_field: Continuous((D,)), label_field: Discrete((1,), K)}``.

    Args:
        weights: ``(K,)`` label probabilities.
        means: ``(K, D)`` component means.
        covs: ``(K, D, D)`` component covariances.
    """

    def __init__(self, weights, means, covs) -> None:
        self.mixture = GaussianMixtureOracle(weights, means, covs)
        self.k = self.mixture.weights.shape[0]

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` exact samples: points ``(n, D)`` float64 and labels ``(n,)`` int64."""
        m = self.mixture
        label = torch.multinomial(m.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, m.dim, generator=generator, dtype=torch.float64)
        return m.means[label] + torch.einsum("nij,nj->ni", torch.linalg.cholesky(m.covs)[label], z), label

    def predict_fn(self, processes: Mapping[str, Corruption], x_field: str = "x", label_field: str = "label"):
        """A ``PredictFn`` for the two fields (Gaussian ``x_field``, masked or uniform ``label_field``)."""
        gauss, disc = processes[x_field], processes[label_field]

        def predict(x: Mapping[str, torch.Tensor], t: torch.Tensor) -> dict[str, Prediction]:
            v = gauss.schedule(t.double())
            alpha, sigma = v.alpha[:, None], v.sigma[:, None]
            log_joint, post = self.mixture.components(x[x_field], alpha, sigma)
            log_joint = log_joint + _label_log_likelihood(disc, x[label_field][:, 0], t, self.k)
            r = torch.softmax(log_joint, dim=1)
            x0 = (r[:, :, None] * post).sum(1)
            x0 = torch.where((sigma[:, 0] == 0)[:, None], x[x_field].double(), x0).to(x[x_field].dtype)
            eps = x0_to_eps(x0, x[x_field], alpha.to(x0.dtype), sigma.to(x0.dtype))
            probs = r.to(torch.float32)[:, None, :]
            return {x_field: Prediction(raw=x0, x0=x0, eps=eps),
                    label_field: Prediction(raw=probs.clamp_min(1e-30).log(), x0=probs)}

        return predict
