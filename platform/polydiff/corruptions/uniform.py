"""Uniform discrete diffusion: D3PM uniform (Austin et al. 2021) in continuous time (UDLM, Schiff et al. 2024).

Each token is kept with probability alpha(t) and otherwise resampled uniformly from the V
tokens (possibly to itself):

    q(x_t^i | x0^i) = alpha onehot(x0^i) + (1 - alpha) / V.

It is the CTMC with forward rate matrix Q_t = beta(t) (11^T / V - I), beta = -alpha'/alpha
(every jump x -> y != x at rate beta / V). Its reverse rates follow from Bayes
(Campbell et al. 2022, Prop. 1): with ``u = (1 - alpha) / V`` and ``r = alpha / u``, the
true reverse rate conditioned on x0, from the current token x to y != x, is

    R(x -> y | x0) = (beta / V) q_t(y | x0) / q_t(x | x0) = (beta / V) (1 + r [y = x0]) / (1 + r [x = x0]),

and the model's rate, sum_x0 p_theta(x0 | x_t) R(x -> y | x0), simplifies to

    R_theta(x -> y) = (beta / V) (1 + r p_y - r p_x / (1 + r)),    p = p_theta(. | x_t) per token.

The loss is the continuous-time ELBO of the CTMC (Campbell et al. 2022, Prop. 2) in the
"diffusion weighted denoising score entropy" form of SEDD (Lou et al. 2024, Thm. 3.6),
as used by UDLM: per token

    sum_{y != x} [R_theta - R log R_theta + R log R - R](x -> y),

summed over tokens and divided by their number D. Then E_{t ~ U(0, 1)}[nelbo] +
``nelbo_prior`` (the exact KL(q(x_1 | x0) || uniform)) bounds -log p_theta(x0) / D. The same
formula with the absorbing rates is the MDLM loss (``ctmc_elbo_integrand``; tested).

Ancestral step (exact for one token, O(V)): q(x_s | x_t, x0) ∝ q(x_t | x_s) q(x_s | x0) with
q(x_t | x_s) = a onehot(x_s) + (1 - a) / V, a = alpha_t / alpha_s, so

    p(x_s = z | x_t = x) = (a [z = x] + (1 - a) / V) (alpha_s c_z + u_s sum_k c_k),
    c = p_theta(. | x_t) / (u_t + alpha_t onehot(x)).

Notation: alpha_t, alpha_s, u_t = (1 - alpha_t) / V, u_s likewise; p_x = p_theta(x0 = x_t).
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from polydiff.corruptions.base import Corrupted, Prediction, append_dims
from polydiff.corruptions.masked import _DiscreteProcess, _float, sample_categorical
from polydiff.schedules import MaskingSchedule
from polydiff.spaces import Space


def _excess_log(d: torch.Tensor, log_rho: torch.Tensor | None = None) -> torch.Tensor:
    """rho - 1 - log(rho) for rho = 1 + d (>= 0): ``d - log1p(d)``, by its series
    d^2 (1/2 - d/3 + d^2/4 - d^3/5) where |d| < 1e-3, since the difference cancels there.

    ``log_rho``, when given, is log(rho) computed without forming 1 + d: for rho far below 1
    (a model rate much smaller than the true one) d rounds to -1 in float32 and log1p(d)
    would be -inf although rho > 0."""
    small = d.abs() < 1e-3
    ds = torch.where(small, d, torch.zeros_like(d))  # keeps the unused branch finite for autograd
    series = ds * ds * (0.5 - ds / 3 + ds * ds / 4 - ds * ds * ds / 5)
    log_term = torch.log1p(d) if log_rho is None else log_rho
    return torch.where(small, series, d - log_term)


def ctmc_elbo_integrand(model_rates: torch.Tensor, true_rates: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """``sum_{y != current} [R_theta - R log R_theta + R log R - R]``: one token's CTMC ELBO integrand.

    The generic form of Campbell et al. (2022) Prop. 2 / Lou et al. (2024) eq. 10, with the
    convention 0 log 0 = 0. For any family: pass the reverse rates from the current state.

    Args:
        model_rates: R_theta(x_t -> y), shape ``(..., K)`` over the K states.
        true_rates: R(x_t -> y | x0), shape ``(..., K)``.
        current: x_t, int64 of shape ``(...)``; its own entry is excluded.

    Returns:
        Shape ``(...)``, >= 0, zero when the rates agree.
    """
    off = 1.0 - F.one_hot(current.long(), model_rates.shape[-1]).to(model_rates.dtype)
    term = (model_rates - torch.xlogy(true_rates, model_rates) + torch.xlogy(true_rates, true_rates)
            - true_rates)
    return (term * off).sum(-1)


class UniformCorruption(_DiscreteProcess):
    """The uniform-noise discrete process (see the module docstring).

    Args:
        space: a ``Discrete`` field space.
        schedule: a ``MASKING_SCHEDULES`` name or a ``MaskingSchedule``: alpha(t) is the
            probability that a token has not been resampled.
        t_min: training times are uniform on ``[t_min, 1]``.
        low_discrepancy: antithetic training times (``polydiff.corruptions.masked.discrete_times``).
        name: the process name in messages; field: the field it is bound to.
    """

    family = "uniform"

    def __init__(self, space: Space, schedule: str | MaskingSchedule = "log-linear", *, t_min: float = 1e-3,
                 low_discrepancy: bool = True, name: str = "uniform", field: str = "") -> None:
        super().__init__(space, schedule, t_min=t_min, low_discrepancy=low_discrepancy, name=name, field=field)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """The forward jump intensity beta(t) = -alpha'(t) / alpha(t), float64 (alpha floored at 1e-300)."""
        t = torch.as_tensor(t).double()
        return -self.schedule.d_alpha(t) / self.schedule.alpha(t).clamp_min(1e-300)

    def corrupt(self, x0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None = None) -> Corrupted:
        """Keep each token with probability alpha(t), else draw it uniformly from the V tokens."""
        x0 = x0.long()
        noise = torch.randint(self.vocab_size, x0.shape, generator=generator, device=x0.device)
        return Corrupted(t=t, x_t=torch.where(self._keep(x0, t, generator), x0, noise))

    def predict(self, raw: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        """p_theta(x0 | x_t) = softmax(raw), shape ``(B, *field_shape, V)``."""
        return Prediction(raw=raw, x0=torch.softmax(_float(raw), dim=-1))

    def prior(self, n: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform tokens, ``(n, *field_shape)`` int64 (``dtype`` is ignored)."""
        return torch.randint(self.vocab_size, (n, *self.space.shape), generator=generator, device=device)

    def _rate_terms(self, p: torch.Tensor, x_t: torch.Tensor, x0: torch.Tensor, r: torch.Tensor
                    ) -> torch.Tensor:
        """Per token and target y, ``[R_theta - R - R log(R_theta / R)] / (beta / V)`` (0 at y = x_t).

        In units of beta / V: true rate b = (1 + r [y = x0]) / (1 + r [x = x0]); the model
        rate minus it, ``r (p_y - p_x / (1 + r) + ([x = x0] - [y = x0]) / (1 + r [x = x0]))``,
        is formed without cancellation, and the term is ``b (d - log1p(d))`` (``_excess_log``),
        d = (R_theta - R) / R. log(R_theta / R) is taken from the model rate written as a sum of
        non-negative terms, ``(1 - p_x) + p_x / (1 + r) + r p_y`` with 1 - p_x summed over the
        other tokens, so a model rate far below the true one (near t = 0, r ~ V / t) stays finite.
        """
        v = self.vocab_size
        hot_x, hot0 = F.one_hot(x_t.long(), v).to(p.dtype), F.one_hot(x0.long(), v).to(p.dtype)
        same = (x_t == x0).to(p.dtype)[..., None]
        p_x = (p * hot_x).sum(-1, keepdim=True)
        b = (1 + r * hot0) / (1 + r * same)
        diff = r * (p - p_x / (1 + r) + (same - hot0) / (1 + r * same))
        d = diff / b
        model = (p * (1 - hot_x)).sum(-1, keepdim=True) + p_x / (1 + r) + r * p
        log_rho = torch.log(model.clamp_min(torch.finfo(p.dtype).tiny)) - torch.log(b)
        return b * _excess_log(d, log_rho) * (1 - hot_x)

    def nelbo(self, raw: torch.Tensor, x0: torch.Tensor, corrupted: Corrupted) -> torch.Tensor:
        """The CTMC ELBO integrand (module docstring) in nats per token, shape ``(B,)``.

        ``(beta / V) sum_i sum_{y != x_t^i} b (d - log1p d) / D``; O(V) per token.
        """
        p = torch.softmax(_float(raw), dim=-1)
        t = corrupted.t.to(p.device)
        a = self.alpha(t)
        r = append_dims(self.vocab_size * a / (1.0 - a).clamp_min(1e-300), p.ndim).to(p.dtype)
        per_token = self._rate_terms(p, corrupted.x_t, x0, r).sum(-1)
        scale = (self.beta(t) / self.vocab_size).to(p.dtype)
        return scale * per_token.flatten(1).sum(1) / self.space.dim

    def nelbo_prior(self, x0: torch.Tensor) -> torch.Tensor:
        """Exact KL(q(x_1 | x0) || uniform) per token, shape ``(B,)``, float64:
        ``(alpha + u) log(V (alpha + u)) + (V - 1) u log(V u)``, u = (1 - alpha(1)) / V."""
        v, a1 = self.vocab_size, self.schedule.alpha_one
        u = (1.0 - a1) / v
        kl = (a1 + u) * math.log(v * (a1 + u)) + ((v - 1) * u * math.log(v * u) if u > 0 else 0.0)
        return torch.full((x0.shape[0],), max(kl, 0.0), dtype=torch.float64, device=x0.device)

    def posterior_weights(self, x_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor, probs: torch.Tensor
                          ) -> torch.Tensor:
        """Unnormalised p(x_s | x_t) = sum_x0 p(x0 | x_t) q(x_s | x_t, x0), float64 ``(B, *field_shape, V)``
        (module docstring, "Ancestral step")."""
        v = self.vocab_size
        a_t = append_dims(self.alpha(t.to(x_t.device)), x_t.ndim + 1)
        a_s = append_dims(self.alpha(s.to(x_t.device)), x_t.ndim + 1)
        hot = F.one_hot(x_t.long(), v).double()
        c = probs.double() / (((1.0 - a_t) / v) + a_t * hot).clamp_min(1e-300)
        ratio = a_t / a_s.clamp_min(1e-300)
        return (ratio * hot + (1.0 - ratio) / v) * (a_s * c + (1.0 - a_s) / v * c.sum(-1, keepdim=True))

    def reverse_step(self, x_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor, prediction: Prediction, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact one-token ancestral step from ``posterior_weights`` (categorical draw in float64);
        at s = 0 it draws x0 from ``prediction.x0``."""
        return sample_categorical(self.posterior_weights(x_t, t, s, prediction.x0), generator)
