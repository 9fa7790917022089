"""Masked (absorbing-state) discrete diffusion: MDLM (Sahoo et al. 2024) and MD4 (Shi et al. 2024).

Each token of a ``Discrete(shape, V)`` field is kept with probability alpha(t) and
otherwise replaced by the mask id ``V`` (Austin et al. 2021, D3PM "absorbing"):

    q(x_t^i | x0^i) = alpha(t) onehot(x0^i) + (1 - alpha(t)) onehot(mask)      (MDLM eq. 2)

The denoiser outputs V logits per token (no mask logit). ``predict`` applies MDLM's
"SUBS" parametrisation (Sec. 3.2.3): softmax over the V real tokens at masked positions
(so the mask has probability zero), the one-hot of x_t carried over at unmasked ones.
The loss is the continuous-time NELBO integrand (MDLM eq. 10 / MD4 eq. 5):

    nelbo = (-alpha'(t) / (1 - alpha(t))) * sum_{i masked} -log p_theta(x0^i | x_t) / D

with D the number of tokens of the field, so E_{t ~ U(0, 1)}[nelbo] is the NELBO per
token in nats (divide by ln 2 for bits). Ancestral sampling unmasks each masked token with
probability (alpha_s - alpha_t) / (1 - alpha_t) to a draw from p_theta(x0^i | x_t)
(MDLM eq. 7 with SUBS); unmasked tokens never change.

Notation:
    alpha, d_alpha   alpha(t), d alpha / dt of the masking schedule
    w                -d_alpha / (1 - alpha), the NELBO weight (1/t for linear and log-linear)
    V, mask          vocabulary size, mask id (= V)
    D                tokens per sample of the field (prod of its shape)
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from polydiff.corruptions.base import Corrupted, Corruption, Prediction, append_dims
from polydiff.schedules import MASKING_SCHEDULES, MaskingSchedule
from polydiff.spaces import Space


def masking_schedule(schedule: str | MaskingSchedule) -> MaskingSchedule:
    """Resolve a masking schedule name (``MASKING_SCHEDULES``) or pass an instance through.

    Raises:
        ValueError: an unknown name, listing the allowed ones.
    """
    if isinstance(schedule, MaskingSchedule):
        return schedule
    if schedule not in MASKING_SCHEDULES:
        raise ValueError(f"unknown masking schedule {schedule!r}; allowed: {sorted(MASKING_SCHEDULES)}")
    return MASKING_SCHEDULES[schedule]()


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one index per row of ``probs`` (shape ``(..., K)``, unnormalised, >= 0) in float64.

    Inverse-CDF sampling in float64: float32 Gumbel-max truncates small probabilities
    (Zheng et al. 2024, "Masked diffusion models are secretly time-agnostic masked models
    and exploit inaccurate categorical sampling", Sec. 4). Zero-probability entries are
    never drawn.

    Returns:
        int64 indices of shape ``probs.shape[:-1]``.
    """
    cdf = probs.double().clamp_min(0).cumsum(-1)
    u = torch.rand((*probs.shape[:-1], 1), generator=generator, dtype=torch.float64, device=probs.device)
    idx = torch.searchsorted(cdf, u * cdf[..., -1:], right=True)
    return idx[..., 0].clamp(max=probs.shape[-1] - 1)


def discrete_times(n: int, t_min: float, low_discrepancy: bool, *, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Training times uniform on ``[t_min, 1]``, shape ``(n,)``, float32.

    With ``low_discrepancy`` the batch holds ``(u + i / n) mod 1`` for one u ~ U(0, 1)
    (MDLM's antithetic sampling, Sahoo et al. 2024 App. B.1; Kingma et al. 2021 App. I.1):
    every time is still marginally uniform, so the loss stays unbiased, with lower variance.
    """
    if low_discrepancy:
        u = torch.rand(1, generator=generator, device=device, dtype=torch.float64)
        u = (u + torch.arange(n, device=device, dtype=torch.float64) / n) % 1.0
    else:
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    return (t_min + (1.0 - t_min) * u).float()


def _float(raw: torch.Tensor) -> torch.Tensor:
    """Logits in float32, or float64 when given float64 (exact oracles, math tests)."""
    return raw if raw.dtype == torch.float64 else raw.float()


class _DiscreteProcess(Corruption):
    """What the masked and uniform processes share: a masking schedule and the times."""

    space_kinds = frozenset({"discrete"})

    def __init__(self, space: Space, schedule: str | MaskingSchedule, *, t_min: float, low_discrepancy: bool,
                 name: str, field: str) -> None:
        super().__init__(space, name=name, field=field)
        if not 0.0 <= t_min < 1.0:
            raise ValueError(f"corruption {self.name!r}: t_min must be in [0, 1), got {t_min}")
        self.schedule = masking_schedule(schedule)
        self.t_min, self.low_discrepancy = float(t_min), bool(low_discrepancy)
        self.vocab_size = space.vocab_size

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """alpha(t) in float64, shaped like ``t``."""
        return self.schedule.alpha(torch.as_tensor(t).double())

    def sample_t(self, n: int, *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """Uniform on ``[t_min, 1]`` (low-discrepancy by default; see ``discrete_times``)."""
        return discrete_times(n, self.t_min, self.low_discrepancy, generator=generator, device=device)

    def loss(self, raw: torch.Tensor, x0: torch.Tensor, corrupted: Corrupted) -> torch.Tensor:
        """The NELBO integrand ``nelbo`` (nats per token), shape ``(B,)``."""
        return self.nelbo(raw, x0, corrupted)

    def _keep(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Bernoulli(alpha(t)) per token, shape of ``x0``: True where the token stays clean."""
        a = append_dims(self.alpha(t.to(x0.device)), x0.ndim)
        u = torch.rand(x0.shape, generator=generator, device=x0.device, dtype=torch.float64)
        return u < a


class MaskedCorruption(_DiscreteProcess):
    """The masked (absorbing) process with MDLM's SUBS parametrisation (see the module docstring).

    Args:
        space: a ``Discrete`` field space; the mask id is ``space.vocab_size``.
        schedule: a ``MASKING_SCHEDULES`` name (``"linear"``, ``"cosine"``, ``"log-linear"``)
            or a ``MaskingSchedule``.
        t_min: training times are uniform on ``[t_min, 1]`` (MDLM: 1e-3).
        low_discrepancy: antithetic training times (``discrete_times``).
        name: the process name in messages; field: the field it is bound to.
    """

    family = "masked"

    def __init__(self, space: Space, schedule: str | MaskingSchedule = "log-linear", *, t_min: float = 1e-3,
                 low_discrepancy: bool = True, name: str = "masked", field: str = "") -> None:
        super().__init__(space, schedule, t_min=t_min, low_discrepancy=low_discrepancy, name=name, field=field)
        self.mask_id = space.vocab_size

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """w(t) = -alpha'(t) / (1 - alpha(t)) in float64 (MDLM eq. 10); 0 where alpha = 1
        (no token is masked there, so the integrand is 0 and w never multiplies anything)."""
        t = torch.as_tensor(t).double()
        one_minus = 1.0 - self.schedule.alpha(t)
        safe = torch.where(one_minus > 0, one_minus, torch.ones_like(one_minus))
        return torch.where(one_minus > 0, -self.schedule.d_alpha(t) / safe, torch.zeros_like(t))

    def corrupt(self, x0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None = None) -> Corrupted:
        """Keep each token with probability alpha(t), else write the mask id (MDLM eq. 2)."""
        x0 = x0.long()
        x_t = torch.where(self._keep(x0, t, generator), x0, torch.full_like(x0, self.mask_id))
        return Corrupted(t=t, x_t=x_t)

    def predict(self, raw: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        """SUBS (MDLM Sec. 3.2.3): softmax(raw) over the V tokens where x_t is masked, the
        one-hot of x_t where it is not. ``x0`` has shape ``(B, *field_shape, V)``."""
        probs = torch.softmax(_float(raw), dim=-1)
        masked = (x_t == self.mask_id)[..., None]
        carried = F.one_hot(x_t.long().clamp(max=self.vocab_size - 1), self.vocab_size).to(probs.dtype)
        return Prediction(raw=raw, x0=torch.where(masked, probs, carried))

    def nelbo(self, raw: torch.Tensor, x0: torch.Tensor, corrupted: Corrupted) -> torch.Tensor:
        """``w(t) sum_{i masked} -log softmax(raw)[x0^i] / D``, shape ``(B,)`` (MDLM eq. 10, MD4 eq. 5).

        Unmasked positions contribute nothing (SUBS "carry-over": their p_theta(x0 | x_t) is 1).
        """
        log_p = torch.log_softmax(_float(raw), dim=-1).gather(-1, x0.long()[..., None])[..., 0]
        masked = corrupted.x_t == self.mask_id
        nll = torch.where(masked, -log_p, torch.zeros_like(log_p)).flatten(1).sum(1)
        w = self.weight(corrupted.t.to(log_p.device)).to(log_p.dtype)
        return w * nll / self.space.dim

    def nelbo_prior(self, x0: torch.Tensor) -> torch.Tensor:
        """alpha(1) log V nats per token (0 when alpha(1) = 0), shape ``(B,)``, float64.

        With alpha(1) = 0 (linear, cosine) q(x_1 | x0) is the all-mask prior and the KL is 0.
        With alpha(1) > 0 (log-linear, 1e-3) the KL to the all-mask point mass is infinite;
        the value returned is the exact KL(q(x_1 | x0) || r) to the prior r that masks each
        token with probability 1 - alpha(1) and else draws it uniformly, i.e. the bound of the
        model that starts from r. r differs from all-mask by at most D alpha(1) in total
        variation; the samplers start from all-mask (see docs/discrete.md).
        """
        a1 = self.schedule.alpha_one
        return torch.full((x0.shape[0],), a1 * math.log(self.vocab_size), dtype=torch.float64, device=x0.device)

    def prior(self, n: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """All mask: ``(n, *field_shape)`` int64 filled with ``vocab_size`` (``dtype`` is ignored)."""
        return torch.full((n, *self.space.shape), self.mask_id, dtype=torch.long, device=device)

    def unmask_probability(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """(alpha_s - alpha_t) / (1 - alpha_t) in float64, shape of ``t`` (1 where alpha_t = 1)."""
        a_t, a_s = self.alpha(t), self.alpha(s)
        den = 1.0 - a_t
        safe = torch.where(den > 0, den, torch.ones_like(den))
        return torch.where(den > 0, (a_s - a_t) / safe, torch.ones_like(den)).clamp(0.0, 1.0)

    def reverse_step(self, x_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor, prediction: Prediction, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral step of MDLM eq. 7 with SUBS: a masked token becomes a draw from
        ``prediction.x0`` with probability (alpha_s - alpha_t) / (1 - alpha_t) and stays
        masked otherwise; unmasked tokens stay. At s = 0 every token is unmasked."""
        p = append_dims(self.unmask_probability(t.to(x_t.device), s.to(x_t.device)), x_t.ndim)
        u = torch.rand(x_t.shape, generator=generator, device=x_t.device, dtype=torch.float64)
        unmask = (x_t == self.mask_id) & (u < p)
        return torch.where(unmask, sample_categorical(prediction.x0, generator), x_t)
