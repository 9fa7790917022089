"""Gaussian noise schedules as functions of continuous time.

Convention (everywhere in polydiff): t in [0, 1], t = 0 is the data, t = 1 the prior.
A schedule maps t to ``x_t = alpha(t) x0 + sigma(t) eps`` and returns a
``ScheduleValues`` record with the derivatives (the flow_matching ``SchedulerOutput``
idea). At exactly t = 0 every schedule returns alpha = 1, sigma = 0: the data itself.
Schedules whose noise does not vanish continuously at t = 0 (VE, EDM) jump there;
training never draws t = 0 and samplers treat the step to t = 0 as "return the denoised
estimate" (k-diffusion appends sigma = 0 the same way).

Implemented:
    VPLinear    Song et al. (2021) VP SDE, beta(t) = beta_min + t (beta_max - beta_min).
    VPCosine    variance preserving with log-SNR(t) = -2 log tan(a t + b), the continuous
                cosine schedule (Nichol & Dhariwal 2021; Kingma et al. 2021, VDM),
                clipped to [logsnr_min, logsnr_max].
    VE          Song et al. (2021) VE SDE, sigma(t) = sigma_min (sigma_max / sigma_min)^t.
    EDM         Karras et al. (2022): alpha = 1, sigma(t) interpolates sigma_min..sigma_max
                in sigma^(1/rho) (so a uniform t grid is the Karras grid); training t from
                ln sigma ~ N(P_mean, P_std^2) (EDM Table 1).
    Flow        rectified flow / linear interpolant (Liu et al. 2023; Lipman et al. 2023):
                alpha = 1 - t, sigma = t. flow_matching's time runs the other way
                (x_0 noise, x_1 data); polydiff's t equals 1 - t_flow_matching.

Masking schedules (last section) give the discrete families' alpha(t), the probability
that a token is still clean at t: ``LinearMasking`` and ``CosineMasking`` (MD4, Shi et al.
2024) and ``LogLinearMasking`` (MDLM, Sahoo et al. 2024), indexed by ``MASKING_SCHEDULES``.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ScheduleValues:
    """alpha(t), sigma(t) and their time derivatives, each shaped like t."""

    alpha: torch.Tensor
    sigma: torch.Tensor
    d_alpha: torch.Tensor
    d_sigma: torch.Tensor

    @property
    def log_snr(self) -> torch.Tensor:
        """lambda(t) = log(alpha^2 / sigma^2); +inf at t = 0."""
        return 2.0 * (torch.log(self.alpha) - torch.log(self.sigma))

    @property
    def d_log_snr(self) -> torch.Tensor:
        """d lambda / dt = 2 (alpha'/alpha - sigma'/sigma); negative for every schedule."""
        return 2.0 * (self.d_alpha / self.alpha - self.d_sigma / self.sigma)


def _at_data(t: torch.Tensor, alpha, sigma, d_alpha, d_sigma) -> ScheduleValues:
    """Force (alpha, sigma) = (1, 0) at exactly t = 0 (see the module docstring)."""
    clean = t <= 0
    one, zero = torch.ones_like(t), torch.zeros_like(t)
    return ScheduleValues(torch.where(clean, one, alpha), torch.where(clean, zero, sigma),
                          d_alpha, d_sigma)


class Schedule(ABC):
    """A Gaussian schedule: ``__call__(t) -> ScheduleValues`` and its inverse in log-SNR.

    Subclasses implement ``values`` (valid for t in (0, 1]) and ``t_from_log_snr``.
    ``t_min`` is the smallest positive time samplers step to before the final jump to
    t = 0; ``t_max`` is where sampling starts.
    """

    name: str = "schedule"
    t_min: float = 1e-3
    t_max: float = 1.0

    def __call__(self, t: torch.Tensor) -> ScheduleValues:
        """Evaluate the schedule at times ``t`` (any shape, floating point)."""
        t = torch.as_tensor(t)
        if not torch.is_floating_point(t):
            t = t.to(torch.get_default_dtype())
        alpha, sigma, d_alpha, d_sigma = self.values(t.clamp(min=self.t_floor))
        return _at_data(t, alpha, sigma, d_alpha, d_sigma)

    t_floor: float = 1e-12

    @abstractmethod
    def values(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return ``(alpha, sigma, d_alpha, d_sigma)`` for t in (0, 1]."""

    @abstractmethod
    def t_from_log_snr(self, log_snr: torch.Tensor) -> torch.Tensor:
        """The time at which ``log(alpha^2 / sigma^2)`` equals ``log_snr``."""

    def sample_t(self, n: int, *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Draw training times, shape ``(n,)``; uniform on ``[t_min, 1]`` unless overridden."""
        u = torch.rand(n, generator=generator, device=device, dtype=dtype)
        return self.t_min + (1.0 - self.t_min) * u

    def prior_std(self) -> float:
        """Standard deviation of the prior N(0, sigma(t_max)^2) that sampling starts from."""
        return float(self(torch.tensor(self.t_max, dtype=torch.float64)).sigma)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class VPLinear(Schedule):
    """VP SDE with linear beta (Song et al. 2021, eq. 11; DDPM's continuous limit).

    log alpha(t) = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2, sigma = sqrt(1 - alpha^2).
    """

    name = "vp-linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3) -> None:
        if not 0 < beta_min < beta_max:
            raise ValueError(f"vp-linear needs 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max, self.t_min = float(beta_min), float(beta_max), float(t_min)

    def values(self, t):
        db = self.beta_max - self.beta_min
        log_alpha = -0.25 * t**2 * db - 0.5 * t * self.beta_min
        alpha = torch.exp(log_alpha)
        sigma = torch.sqrt(-torch.expm1(2 * log_alpha))
        d_log_alpha = -0.5 * t * db - 0.5 * self.beta_min
        d_alpha = alpha * d_log_alpha
        d_sigma = -alpha * d_alpha / sigma
        return alpha, sigma, d_alpha, d_sigma

    def t_from_log_snr(self, log_snr):
        # alpha^2 = sigmoid(lambda)  =>  log alpha = -softplus(-lambda) / 2; solve the quadratic.
        log_alpha = -0.5 * torch.nn.functional.softplus(-log_snr)
        a, b = 0.25 * (self.beta_max - self.beta_min), 0.5 * self.beta_min
        return (-b + torch.sqrt(b * b - 4 * a * log_alpha)) / (2 * a)


class VPCosine(Schedule):
    """Variance-preserving cosine schedule in continuous time.

    alpha = cos(a t + b), sigma = sin(a t + b) with a, b chosen so that the log-SNR
    -2 log tan(a t + b) runs from ``logsnr_max`` at t = 0+ to ``logsnr_min`` at t = 1
    (Nichol & Dhariwal 2021 cosine schedule without the offset s; Hoogeboom et al. 2023).
    """

    name = "vp-cosine"

    def __init__(self, logsnr_min: float = -15.0, logsnr_max: float = 15.0, t_min: float = 1e-3) -> None:
        if not logsnr_min < logsnr_max:
            raise ValueError(f"vp-cosine needs logsnr_min < logsnr_max, got {logsnr_min}, {logsnr_max}")
        self.logsnr_min, self.logsnr_max, self.t_min = float(logsnr_min), float(logsnr_max), float(t_min)
        self._b = math.atan(math.exp(-0.5 * self.logsnr_max))
        self._a = math.atan(math.exp(-0.5 * self.logsnr_min)) - self._b

    def values(self, t):
        phi = self._a * t + self._b
        alpha, sigma = torch.cos(phi), torch.sin(phi)
        return alpha, sigma, -self._a * sigma, self._a * alpha

    def t_from_log_snr(self, log_snr):
        return (torch.atan(torch.exp(-0.5 * log_snr)) - self._b) / self._a


class VE(Schedule):
    """Variance-exploding schedule (Song et al. 2021, SMLD): alpha = 1, geometric sigma."""

    name = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 80.0) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"ve needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.t_min = 0.0 + 1e-9
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def values(self, t):
        sigma = self.sigma_min * torch.exp(t * self._log_ratio)
        return torch.ones_like(t), sigma, torch.zeros_like(t), sigma * self._log_ratio

    def t_from_log_snr(self, log_snr):
        return (torch.log(torch.exp(-0.5 * log_snr)) - math.log(self.sigma_min)) / self._log_ratio

    def sample_t(self, n, *, generator=None, device=None, dtype=torch.float32):
        """Uniform on (0, 1], i.e. log-uniform sigma in [sigma_min, sigma_max]."""
        return torch.rand(n, generator=generator, device=device, dtype=dtype).clamp(min=1e-6)


class EDM(Schedule):
    """EDM schedule (Karras et al. 2022): alpha = 1 and
    sigma(t) = (sigma_min^(1/rho) + t (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho.

    A uniform grid in t is the Karras et al. eq. 5 grid. Training draws
    ln sigma ~ N(P_mean, P_std^2) (Table 1), clamped to [sigma_min, sigma_max].
    ``sigma_data`` is used by the EDM loss weight and preconditioning.
    """

    name = "edm"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                 p_mean: float = -1.2, p_std: float = 1.2, sigma_data: float = 0.5) -> None:
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"edm needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max, self.rho = float(sigma_min), float(sigma_max), float(rho)
        self.p_mean, self.p_std, self.sigma_data = float(p_mean), float(p_std), float(sigma_data)
        self.t_min = 1e-9
        self._lo, self._hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)

    def values(self, t):
        base = self._lo + t * (self._hi - self._lo)
        sigma = base**self.rho
        d_sigma = self.rho * base ** (self.rho - 1) * (self._hi - self._lo)
        return torch.ones_like(t), sigma, torch.zeros_like(t), d_sigma

    def t_from_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Inverse of sigma(t) on [sigma_min, sigma_max]."""
        return (sigma ** (1 / self.rho) - self._lo) / (self._hi - self._lo)

    def t_from_log_snr(self, log_snr):
        return self.t_from_sigma(torch.exp(-0.5 * log_snr))

    def sample_t(self, n, *, generator=None, device=None, dtype=torch.float32):
        """ln sigma ~ N(P_mean, P_std^2), clamped to the schedule's sigma range."""
        z = torch.randn(n, generator=generator, device=device, dtype=dtype)
        sigma = torch.exp(self.p_mean + self.p_std * z).clamp(self.sigma_min * 1.0001, self.sigma_max)
        return self.t_from_sigma(sigma).clamp(min=1e-6, max=1.0)


class Flow(Schedule):
    """Linear interpolant / rectified flow: x_t = (1 - t) x0 + t eps.

    ``t_max`` stays just below 1 so that the log-SNR is finite where samplers start.
    """

    name = "flow"

    def __init__(self, t_min: float = 1e-3, t_max: float = 1.0 - 1e-4) -> None:
        self.t_min, self.t_max = float(t_min), float(t_max)

    def values(self, t):
        return 1.0 - t, t, -torch.ones_like(t), torch.ones_like(t)

    def t_from_log_snr(self, log_snr):
        return torch.sigmoid(-0.5 * log_snr)

    def sample_t(self, n, *, generator=None, device=None, dtype=torch.float32):
        """Uniform on [t_min, t_max]."""
        u = torch.rand(n, generator=generator, device=device, dtype=dtype)
        return self.t_min + (self.t_max - self.t_min) * u


BUILTIN_SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (VPLinear, VPCosine, VE, EDM, Flow)
}


# ---------------------------------------------------------------------------
# Masking schedules of the discrete (masked and uniform) families
# ---------------------------------------------------------------------------

class MaskingSchedule(ABC):
    """The probability alpha(t) that a token is still clean at time t (discrete families).

    Masked (absorbing) process: a token is kept with probability alpha(t), else masked
    (Austin et al. 2021, D3PM absorbing; Sahoo et al. 2024, MDLM; Shi et al. 2024, MD4).
    Uniform process: a token is kept with probability alpha(t), else resampled uniformly
    (D3PM uniform; Schiff et al. 2024, UDLM). Contract: alpha(0) = 1, alpha decreasing on
    [0, 1], alpha(1) = 0 or close to it (``alpha_one``). Both methods take a tensor of
    times of any shape and compute in its floating dtype (processes pass float64).
    """

    name: str = "masking"

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """alpha(t), shaped like ``t``."""

    @abstractmethod
    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """d alpha / dt (<= 0), shaped like ``t``."""

    @property
    def alpha_one(self) -> float:
        """alpha(1): the probability that a token survives to the prior time (0 or small)."""
        return float(self.alpha(torch.tensor(1.0, dtype=torch.float64)))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class LinearMasking(MaskingSchedule):
    """alpha(t) = 1 - t, the linear schedule of MD4 (Shi et al. 2024, Table 1 / eq. 4)."""

    name = "linear"

    def alpha(self, t):
        return 1.0 - t

    def d_alpha(self, t):
        return -torch.ones_like(t)


class CosineMasking(MaskingSchedule):
    """alpha(t) = 1 - cos(pi/2 (1 - t)), the cosine schedule of MD4 (Shi et al. 2024, Table 1),
    d alpha / dt = -(pi/2) sin(pi/2 (1 - t)); evaluated as 1 - sin(pi t / 2), which is exactly
    1 at t = 0 and 0 at t = 1 in floating point."""

    name = "cosine"

    def alpha(self, t):
        return 1.0 - torch.sin(0.5 * math.pi * t)

    def d_alpha(self, t):
        return -0.5 * math.pi * torch.cos(0.5 * math.pi * t)


class LogLinearMasking(MaskingSchedule):
    """alpha(t) = 1 - (1 - eps) t: MDLM's log-linear schedule (Sahoo et al. 2024, Sec. 3.5 and
    App. E), whose total noise sigma(t) = -log(1 - (1 - eps) t) is log-linear; alpha(1) = eps.

    Args:
        eps: alpha(1), the chance that a token survives to t = 1 (MDLM: 1e-3).
    """

    name = "log-linear"

    def __init__(self, eps: float = 1e-3) -> None:
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"log-linear masking needs 0 <= eps < 1, got {eps}")
        self.eps = float(eps)

    def alpha(self, t):
        return 1.0 - (1.0 - self.eps) * t

    def d_alpha(self, t):
        return torch.full_like(t, -(1.0 - self.eps))


MASKING_SCHEDULES: dict[str, type[MaskingSchedule]] = {
    cls.name: cls for cls in (LinearMasking, CosineMasking, LogLinearMasking)
}
"""Masking schedule name -> class (the ``schedule`` option of the masked and uniform processes)."""
