"""Gaussian corruption: x_t = alpha(t) x0 + sigma(t) eps, and its parametrisations.

The network may predict eps, x0, the Salimans & Ho (2022) velocity
``v = alpha eps - sigma x0``, or the flow velocity ``u = dx_t/dt = alpha' x0 + sigma' eps``
(rectified flow). All are converted through (alpha, sigma) by the ``*_to_*`` functions
below (flow_matching ``path/affine.py`` idea); every sampler consumes the data
prediction ``x0_hat = E[x0 | x_t]``.

Notation: alpha, sigma = schedule at t; d_alpha, d_sigma their time derivatives.
"""
from __future__ import annotations

import torch

from polydiff.corruptions.base import Corrupted, Corruption, Prediction, append_dims
from polydiff.schedules import EDM, Schedule, ScheduleValues
from polydiff.spaces import Space

PARAMETRIZATIONS = ("eps", "x0", "v", "flow_velocity")
WEIGHTINGS = ("none", "edm", "snr")
PRECONDITIONINGS = ("none", "edm")
REVERSE_VARIANCES = ("small", "large")


def eps_to_x0(eps, x_t, alpha, sigma):
    """x0 = (x_t - sigma eps) / alpha."""
    return (x_t - sigma * eps) / alpha


def x0_to_eps(x0, x_t, alpha, sigma):
    """eps = (x_t - alpha x0) / sigma."""
    return (x_t - alpha * x0) / sigma


def v_to_x0(v, x_t, alpha, sigma):
    """x0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2) for v = alpha eps - sigma x0."""
    return (alpha * x_t - sigma * v) / (alpha**2 + sigma**2)


def x0_to_v(x0, x_t, alpha, sigma):
    """v = alpha eps - sigma x0 with eps implied by (x0, x_t)."""
    return alpha * x0_to_eps(x0, x_t, alpha, sigma) - sigma * x0


def flow_velocity_to_x0(u, x_t, alpha, sigma, d_alpha, d_sigma):
    """Solve x_t = alpha x0 + sigma eps, u = d_alpha x0 + d_sigma eps for x0."""
    return (d_sigma * x_t - sigma * u) / (d_sigma * alpha - sigma * d_alpha)


def x0_to_flow_velocity(x0, x_t, alpha, sigma, d_alpha, d_sigma):
    """u = d_alpha x0 + d_sigma eps with eps implied by (x0, x_t)."""
    return d_alpha * x0 + d_sigma * x0_to_eps(x0, x_t, alpha, sigma)


def edm_loss_weight(sigma_e: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (Karras et al. 2022, Table 1)."""
    return (sigma_e**2 + sigma_data**2) / (sigma_e * sigma_data) ** 2


class GaussianCorruption(Corruption):
    """Gaussian forward process q(x_t | x0) = N(alpha(t) x0, sigma(t)^2 I).

    Args:
        space: a Continuous or Bounded field space.
        schedule: a ``Schedule`` (VP-linear, VP-cosine, VE, EDM, flow, or a plugin's).
        parametrization: what the network outputs: ``"eps"``, ``"x0"``, ``"v"`` or
            ``"flow_velocity"``.
        weighting: loss weight, in the parametrisation's own target space:
            ``"none"`` (DDPM's L_simple for eps; plain regression otherwise), ``"edm"``
            (lambda(sigma) of EDM on the x0 error; requires ``parametrization="x0"``),
            ``"snr"`` (x0 error weighted by alpha^2/sigma^2, i.e. eps-matching).
        preconditioning: ``"edm"`` to have the experiment wrap the network in
            ``EDMPreconditioning`` (then the wrapper outputs x0); ``"none"`` otherwise.

    Defaults follow each schedule's paper: EDM -> x0 + edm weighting + edm
    preconditioning; flow -> flow_velocity; VP and VE -> eps.
    """

    family = "gaussian"
    space_kinds = frozenset({"continuous", "bounded"})

    def __init__(self, space: Space, schedule: Schedule, *, parametrization: str | None = None,
                 weighting: str | None = None, preconditioning: str | None = None,
                 name: str = "gaussian", field: str = "") -> None:
        super().__init__(space, name=name, field=field)
        self.schedule = schedule
        is_edm = isinstance(schedule, EDM)
        default_param = "x0" if is_edm else "flow_velocity" if schedule.name == "flow" else "eps"
        self.parametrization = parametrization or default_param
        self.weighting = weighting or ("edm" if is_edm and self.parametrization == "x0" else "none")
        self.preconditioning = preconditioning or ("edm" if is_edm and self.parametrization == "x0" else "none")
        self._validate()

    def _validate(self) -> None:
        for key, value, allowed in (("parametrization", self.parametrization, PARAMETRIZATIONS),
                                    ("weighting", self.weighting, WEIGHTINGS),
                                    ("preconditioning", self.preconditioning, PRECONDITIONINGS)):
            if value not in allowed:
                raise ValueError(f"gaussian corruption: {key} {value!r} is not one of {list(allowed)}")
        if self.weighting in ("edm", "snr") and self.parametrization != "x0":
            raise ValueError(f"gaussian corruption: weighting {self.weighting!r} needs parametrization 'x0', "
                             f"got {self.parametrization!r}")
        if self.preconditioning == "edm" and self.parametrization != "x0":
            raise ValueError("gaussian corruption: preconditioning 'edm' makes the network output x0; "
                             f"set parametrization 'x0' (got {self.parametrization!r})")

    @property
    def sigma_data(self) -> float:
        """Standard deviation of the data assumed by EDM weighting and preconditioning."""
        return float(getattr(self.schedule, "sigma_data", 0.5))

    @property
    def t_start(self) -> float:
        """Sampling starts at the schedule's ``t_max``."""
        return self.schedule.t_max

    def values(self, t: torch.Tensor, ndim: int) -> ScheduleValues:
        """Schedule values at ``t`` (B,), broadcast to ``ndim`` axes."""
        v = self.schedule(t)
        return ScheduleValues(*(append_dims(a, ndim) for a in (v.alpha, v.sigma, v.d_alpha, v.d_sigma)))

    def sample_t(self, n, *, generator=None, device=None):
        """The schedule's training distribution of t."""
        return self.schedule.sample_t(n, generator=generator, device=device)

    def corrupt(self, x0, t, *, generator=None):
        """x_t = alpha(t) x0 + sigma(t) eps, eps ~ N(0, I)."""
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        v = self.values(t.to(x0.dtype), x0.ndim)
        return Corrupted(t=t, x_t=v.alpha * x0 + v.sigma * eps, noise=eps)

    def to_x0(self, raw: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Convert the network's raw output to x0_hat through (alpha, sigma)."""
        v = self.values(t.to(x_t.dtype), x_t.ndim)
        p = self.parametrization
        if p == "x0":
            return raw
        if p == "eps":
            return eps_to_x0(raw, x_t, v.alpha, v.sigma)
        if p == "v":
            return v_to_x0(raw, x_t, v.alpha, v.sigma)
        return flow_velocity_to_x0(raw, x_t, v.alpha, v.sigma, v.d_alpha, v.d_sigma)

    def predict(self, raw, x_t, t):
        """Prediction with x0_hat and the implied eps_hat."""
        x0 = self.to_x0(raw, x_t, t)
        v = self.values(t.to(x_t.dtype), x_t.ndim)
        return Prediction(raw=raw, x0=x0, eps=x0_to_eps(x0, x_t, v.alpha, v.sigma))

    def target(self, x0: torch.Tensor, corrupted: Corrupted) -> torch.Tensor:
        """The regression target of the parametrisation for this training example."""
        p = self.parametrization
        eps = corrupted.noise
        if p == "x0":
            return x0
        if p == "eps":
            return eps
        v = self.values(corrupted.t.to(x0.dtype), x0.ndim)
        if p == "v":
            return v.alpha * eps - v.sigma * x0
        return v.d_alpha * x0 + v.d_sigma * eps

    def loss(self, raw, x0, corrupted):
        """Mean over the field of w(t) * (raw - target)^2, shape ``(B,)``.

        ``"none"``: w = 1 (DDPM L_simple for eps, Ho et al. 2020 eq. 14; conditional flow
        matching for flow_velocity, Lipman et al. 2023). ``"edm"``: w = lambda(sigma/alpha),
        Karras et al. 2022 eq. 2 with Table 1. ``"snr"``: w = alpha^2 / sigma^2.
        """
        err = (raw.float() - self.target(x0, corrupted).float()) ** 2
        per_sample = err.flatten(1).mean(dim=1)
        if self.weighting == "none":
            return per_sample
        v = self.schedule(corrupted.t.float())
        if self.weighting == "edm":
            return edm_loss_weight(v.sigma / v.alpha, self.sigma_data) * per_sample
        return (v.alpha / v.sigma) ** 2 * per_sample

    def prior(self, n, *, generator=None, device=None, dtype=torch.float32):
        """N(0, sigma(t_max)^2 I): the marginal at t_max with the alpha x0 term dropped."""
        std = self.schedule.prior_std()
        return std * torch.randn((n, *self.space.shape), generator=generator, device=device, dtype=dtype)

    def reverse_step(self, x_t, t, s, prediction, *, generator=None, variance="small"):
        """Ancestral step from the Gaussian posterior q(x_s | x_t, x0_hat) (Kingma et al. 2021, eq. 33).

        alpha_ts = alpha_t / alpha_s, sigma_ts^2 = sigma_t^2 - alpha_ts^2 sigma_s^2,
        mean = alpha_ts sigma_s^2 / sigma_t^2 x_t + alpha_s sigma_ts^2 / sigma_t^2 x0_hat.
        ``variance`` is Ho et al.'s (2020, section 3.2) choice of the reverse variance:
        ``"small"``, the posterior's sigma_ts^2 sigma_s^2 / sigma_t^2 (DDPM's beta-tilde, exact
        when x0_hat is exact), or ``"large"``, the forward step's sigma_ts^2 (DDPM's beta,
        TabDDPM's sampler). At s = 0 both return x0_hat.
        """
        if variance not in REVERSE_VARIANCES:
            raise ValueError(f"variance {variance!r} is not one of {list(REVERSE_VARIANCES)}")
        vt, vs = self.values(t.to(x_t.dtype), x_t.ndim), self.values(s.to(x_t.dtype), x_t.ndim)
        alpha_ts = vt.alpha / vs.alpha
        sigma_ts2 = (vt.sigma**2 - alpha_ts**2 * vs.sigma**2).clamp(min=0)
        mean = (alpha_ts * vs.sigma**2 * x_t + vs.alpha * sigma_ts2 * prediction.x0) / vt.sigma**2
        if variance == "small":
            std = (sigma_ts2 * vs.sigma**2 / vt.sigma**2).sqrt()
        else:
            std = sigma_ts2.sqrt() * (vs.sigma > 0)
        noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        return mean + std * noise

