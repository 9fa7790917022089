"""Diffusion bridges for paired data: x_t = a(t) x0 + b(t) x1 + c(t) z, pinned at x1.

A bridge carries a clean sample x0 (t = 0) to its paired degraded or source sample x1
(t = 1). Every bridge here is built on a linear Gaussian *base process* whose transition
from x0 is ``N(alpha(t) x0, alpha(t)^2 E(t) I)``; ``E(t) = sigma(t)^2 / alpha(t)^2`` is the
variance in the EDM-style scaled variable x / alpha (E(0) = 0, increasing). Conditioning
the base process on its value at t = 1 (Doob's h-transform) gives the bridge marginal

    q(x_t | x0, x1) = N(a x0 + b x1, c^2 I),   r = E(t) / E(1) = SNR(1) / SNR(t),
    a = alpha_t (1 - r),   b = (alpha_t / alpha_1) r,   c^2 = alpha_t^2 E(t) (1 - r),

which is DDBM's bridge marginal q(x_t | x0, x_T) (Zhou et al. 2023, with Table 1's VP and
VE schedules) and, for the Brownian base process, I2SB's analytic posterior (Liu et al.
2023, eq. 11). Because the base process is Markov, x1 carries no further information
about x_s once x_t is known:

    q(x_s | x_t, x0, x1) = q_base(x_s | x_t, x0) = N(P x_t + Q x0, V I),   s < t,
    P = (alpha_s / alpha_t) E_s / E_t,   Q = alpha_s (E_t - E_s) / E_t,
    V = alpha_s^2 E_s (E_t - E_s) / E_t,

the DDPM posterior of the base process (the posterior of I2SB's generation, Algorithm 2).
Consistency, ``P^2 c_t^2 + V = c_s^2``, ``P a_t + Q = a_s``, ``P b_t = b_s``, is checked in
the tests.

Bounded fields are bridged as continuous ones (no reflection): x0 and x1 lie in the box,
an intermediate x_t may leave it.

The mean-reverting Ornstein-Uhlenbeck process of SGMSE (``"ou"``) is the same algebra
in the variable u = x - x1 without the h-transform: it is not pinned (see ``OUBridge``).

Bridges (``BRIDGES``):

==========  =====================================================  =====================
name        base process                                           paper
==========  =====================================================  =====================
brownian    dx = sqrt(beta(t)) dW: alpha = 1, E = int_0^t beta;    I2SB, Liu et al. 2023,
            constant rate (a, b, c) = (1 - t, t, sigma sqrt(t(1-t)))   eq. 11
            or I2SB's symmetric beta profile
vp          VP-linear, beta(t) = beta_min + t (beta_max - beta_min)  DDBM, Zhou et al. 2023,
                                                                   Table 1 (VP)
ve          VE with sigma(t) = sigma_max t: (a, b, c) =            DDBM, Table 1 (VE)
            (1 - t^2, t^2, sigma_max t sqrt(1 - t^2))
ou          dx = gamma (x1 - x) dt + g(t) dW, g geometric           SGMSE+, Richter et al.
                                                                   2023 (OUVE SDE);
                                                                   Welker et al. 2022
==========  =====================================================  =====================

Notation: a, b, c = the marginal's coefficients of x0, x1 and z ~ N(0, I); P, Q, R, V =
the posterior's coefficients of x_t, x0, x1 and its variance; alpha, E = the base process.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from polydiff.corruptions.base import Corrupted, Corruption, Prediction, append_dims
from polydiff.spaces import Space

WEIGHTINGS = ("none", "snr", "i2sb", "ddbm")
PARAMETRIZATIONS = ("x0", "ddbm")
PROFILES = ("constant", "symmetric")
Tensor = torch.Tensor


def _f64(t: Tensor | float) -> Tensor:
    if isinstance(t, torch.Tensor):
        return t.to(torch.float64)
    return torch.as_tensor(t, dtype=torch.float64)  # not via float32, which rounds Python floats


@dataclass(frozen=True)
class BridgeCoefficients:
    """The marginal ``q(x_t | x0, x1) = N(a x0 + b x1, c^2 I)``; each float64, shaped like t."""

    a: Tensor
    b: Tensor
    c: Tensor


@dataclass(frozen=True)
class BridgePosterior:
    """The Markov posterior ``q(x_s | x_t, x0, x1) = N(x_t * x_t + x0 * x0 + x1 * x1, std^2 I)``.

    Attributes:
        x_t, x0, x1: coefficients P, Q, R of the three conditioning values (float64).
        std: the posterior standard deviation sqrt(V) (float64).
    """

    x_t: Tensor
    x0: Tensor
    x1: Tensor
    std: Tensor


class Bridge(ABC):
    """A bridge between x0 (t = 0) and x1 (t = 1) over a linear Gaussian base process.

    Subclasses implement ``base(t) -> (alpha(t), E(t))`` (float64, valid on [0, 1], E(0) = 0
    and E increasing). ``pinned`` bridges reach x1 exactly at t = 1 (c(1) = 0).
    """

    name: ClassVar[str] = ""
    pinned: ClassVar[bool] = True

    @abstractmethod
    def base(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha(t), E(t))`` of the base process for float64 times ``t``."""

    def coefficients(self, t: Tensor | float) -> BridgeCoefficients:
        """(a, b, c) of the h-transformed marginal (module docstring; DDBM's bridge marginal), float64."""
        t = _f64(t)
        alpha, e = self.base(t)
        alpha_1, e_1 = self.base(torch.ones((), dtype=torch.float64))
        r = e / e_1
        c2 = (alpha**2 * e * (1 - r)).clamp(min=0)
        return BridgeCoefficients(a=alpha * (1 - r), b=alpha / alpha_1 * r, c=c2.sqrt())

    def posterior(self, t: Tensor | float, s: Tensor | float) -> BridgePosterior:
        """The base process's DDPM posterior q(x_s | x_t, x0) for 0 <= s < t (I2SB, Algorithm 2), float64."""
        t, s = _f64(t), _f64(s)
        alpha_t, e_t = self.base(t)
        alpha_s, e_s = self.base(s)
        gap = (e_t - e_s) / e_t
        p = alpha_s / alpha_t * e_s / e_t
        q = alpha_s * gap
        std = alpha_s * (e_s * gap).clamp(min=0).sqrt()
        return BridgePosterior(x_t=p, x0=q, x1=torch.zeros_like(p), std=std)

    def options(self) -> dict[str, float | str]:
        """The bridge's configuration as plain values."""
        return dict(vars(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options().items())})"


def _positive(bridge: str, **values: float) -> None:
    for key, value in values.items():
        if not value > 0:
            raise ValueError(f"bridge {bridge!r}: {key} must be > 0, got {value}")


class BrownianBridge(Bridge):
    """Brownian bridge of I2SB (Liu et al. 2023, eq. 11): base dx = sqrt(beta(t)) dW.

    With ``S(t) = int_0^t beta``: alpha = 1, E = S, so ``a = 1 - S(t)/S(1)``, ``b = S(t)/S(1)``,
    ``c^2 = S(t) (S(1) - S(t)) / S(1)`` (I2SB's sigma_t^2 = S(t), bar-sigma_t^2 = S(1) - S(t)).

    Args:
        sigma: ``profile="constant"``: beta = sigma^2, so x_t = (1 - t) x0 + t x1 +
            sigma sqrt(t (1 - t)) z.
        profile: ``"constant"`` or ``"symmetric"``: I2SB's symmetric beta, small at both
            ends (I2SB's symmetric schedule): sqrt(beta) rises linearly from sqrt(beta_min) at t = 0 to
            sqrt(beta_max) at t = 1/2 and mirrors back, S(t) in closed form (a cubic).
        beta_min, beta_max: the symmetric profile's end and peak values of beta.
    """

    name = "brownian"

    def __init__(self, sigma: float = 1.0, profile: str = "constant", beta_min: float = 0.1,
                 beta_max: float = 0.3) -> None:
        if profile not in PROFILES:
            raise ValueError(f"bridge 'brownian': profile {profile!r} is not one of {list(PROFILES)}")
        _positive("brownian", sigma=sigma, beta_min=beta_min, beta_max=beta_max)
        self.sigma, self.profile = float(sigma), profile
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def _ramp(self, t: Tensor) -> Tensor:
        """int_0^t (p + q u)^2 du with p = sqrt(beta_min), q = 2 (sqrt(beta_max) - sqrt(beta_min))."""
        p, q = math.sqrt(self.beta_min), 2 * (math.sqrt(self.beta_max) - math.sqrt(self.beta_min))
        return p * p * t + p * q * t**2 + q * q * t**3 / 3

    def base(self, t):
        if self.profile == "constant":
            return torch.ones_like(t), self.sigma**2 * t
        half = self._ramp(torch.full_like(t, 0.5))
        return torch.ones_like(t), torch.where(t <= 0.5, self._ramp(t), 2 * half - self._ramp(1 - t))


class VPBridge(Bridge):
    """VP bridge of DDBM (Zhou et al. 2023, Table 1): the VP-linear base process of Song et al. 2021.

    log alpha = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2 and
    E = 1 / SNR = expm1(t^2 (beta_max - beta_min) / 2 + t beta_min); DDBM's defaults
    beta_min = 0.1, beta_d = beta_max - beta_min = 2.
    """

    name = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 2.1) -> None:
        if not 0 < beta_min < beta_max:
            raise ValueError(f"bridge 'vp' needs 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def base(self, t):
        integral = 0.5 * t**2 * (self.beta_max - self.beta_min) + t * self.beta_min
        return torch.exp(-0.5 * integral), torch.expm1(integral)


class VEBridge(Bridge):
    """VE bridge of DDBM (Zhou et al. 2023, Table 1): alpha = 1, sigma(t) = sigma_max t.

    DDBM's VE time runs over [0, T] with sigma_t = t and T = sigma_max = 80; with t = T * t'
    the marginal is ``a = 1 - t^2``, ``b = t^2``, ``c = sigma_max t sqrt(1 - t^2)``.
    """

    name = "ve"

    def __init__(self, sigma_max: float = 80.0) -> None:
        _positive("ve", sigma_max=sigma_max)
        self.sigma_max = float(sigma_max)

    def base(self, t):
        return torch.ones_like(t), (self.sigma_max * t) ** 2


class OUBridge(Bridge):
    """The mean-reverting OU process of SGMSE (Welker et al. 2022; Richter et al. 2023).

    ``dx = gamma (x1 - x) dt + g(t) dW`` with ``g(t) = sigma_min k^t sqrt(2 log k)``,
    ``k = sigma_max / sigma_min``. In u = x - x1 this is the linear process with alpha =
    e^{-gamma t} and E(t) = sigma_min^2 log k / (gamma + log k) expm1(2 (gamma + log k) t), so

        mean = e^{-gamma t} x0 + (1 - e^{-gamma t}) x1
        var  = sigma_min^2 ((sigma_max/sigma_min)^{2t} - e^{-2 gamma t}) log k / (gamma + log k)

    (the OUVE SDE's closed-form mean and variance, Richter et al. 2023),

    i.e. (a, b, c) = (e^{-gamma t}, 1 - e^{-gamma t}, sqrt(var)). It is **not pinned**: at
    t = 1 the mean still holds e^{-gamma} (x0 - x1), which the prior N(x1, var(1) I) drops
    (SGMSE's mismatch; small for large gamma). The posterior is the base posterior in u:
    ``x_s = P x_t + Q x0 + (1 - P - Q) x1 + sqrt(V) z``. Defaults are SGMSE+'s
    (gamma = 1.5, sigma_min = 0.05, sigma_max = 0.5).
    """

    name = "ou"
    pinned = False

    def __init__(self, gamma: float = 1.5, sigma_min: float = 0.05, sigma_max: float = 0.5) -> None:
        _positive("ou", gamma=gamma, sigma_min=sigma_min)
        if not sigma_max > sigma_min:
            raise ValueError(f"bridge 'ou' needs sigma_max > sigma_min, got {sigma_max}, {sigma_min}")
        self.gamma, self.sigma_min, self.sigma_max = float(gamma), float(sigma_min), float(sigma_max)

    def base(self, t):
        log_k = math.log(self.sigma_max / self.sigma_min)
        rate = self.gamma + log_k
        return torch.exp(-self.gamma * t), self.sigma_min**2 * log_k / rate * torch.expm1(2 * rate * t)

    def coefficients(self, t):
        """(e^{-gamma t}, 1 - e^{-gamma t}, sqrt(var(t))): the OUVE mean and variance (Richter et al. 2023)."""
        alpha, e = self.base(_f64(t))
        return BridgeCoefficients(a=alpha, b=1 - alpha, c=alpha * e.sqrt())

    def posterior(self, t, s):
        """The base posterior in u = x - x1, so the x1 coefficient is 1 - P - Q."""
        post = super().posterior(t, s)
        return BridgePosterior(x_t=post.x_t, x0=post.x0, x1=1 - post.x_t - post.x0, std=post.std)


BRIDGES: dict[str, type[Bridge]] = {"brownian": BrownianBridge, "vp": VPBridge, "ve": VEBridge, "ou": OUBridge}
BRIDGE_OPTIONS: dict[str, tuple[str, ...]] = {
    "brownian": ("sigma", "profile", "beta_min", "beta_max"),
    "vp": ("beta_min", "beta_max"),
    "ve": ("sigma_max",),
    "ou": ("gamma", "sigma_min", "sigma_max"),
}
"""Bridge name -> the options its class takes (every other bridge option must stay unset)."""


def make_bridge(name: str, **options: float | str | None) -> Bridge:
    """Build the bridge ``name`` from plain options; options left as None take the paper defaults.

    Raises:
        ValueError: an unknown name (listing ``BRIDGES``) or an option that the bridge
            does not take (listing the ones it does).
    """
    if name not in BRIDGES:
        raise ValueError(f"unknown bridge {name!r}; bridges: {sorted(BRIDGES)}")
    given = {k: v for k, v in options.items() if v is not None}
    foreign = sorted(set(given) - set(BRIDGE_OPTIONS[name]))
    if foreign:
        raise ValueError(f"bridge {name!r} does not take options {foreign}; its options are "
                         f"{list(BRIDGE_OPTIONS[name])}")
    return BRIDGES[name](**given)


@dataclass(frozen=True)
class DDBMPreconditioning:
    """DDBM's skip and output scales (Zhou et al. 2023, Table 1), float64, shaped like t.

    ``x0_hat = c_skip x_t + c_out F`` where ``c_skip x_t`` is the best linear estimate of x0
    from x_t and ``c_out^2`` its error variance; the loss weight lambda = 1 / c_out^2
    makes the network's target F = (x0 - c_skip x_t) / c_out of unit variance.
    """

    c_skip: Tensor
    c_out: Tensor


def ddbm_preconditioning(coef: BridgeCoefficients, sigma_data: float, sigma_source: float,
                         cov: float) -> DDBMPreconditioning:
    """c_skip and c_out of DDBM (Zhou et al. 2023, Table 1) for x_t = a x0 + b x1 + c z.

    With Var x0 = sigma_data^2, Var x1 = sigma_source^2, Cov(x0, x1) = cov per dimension
    and ``V = Var(x_t) = a^2 sigma_data^2 + b^2 sigma_source^2 + 2 a b cov + c^2``:
    ``c_skip = (a sigma_data^2 + b cov) / V``,
    ``c_out^2 = (b^2 (sigma_data^2 sigma_source^2 - cov^2) + sigma_data^2 c^2) / V``.
    """
    a, b, c = coef.a, coef.b, coef.c
    var_t = a**2 * sigma_data**2 + b**2 * sigma_source**2 + 2 * a * b * cov + c**2
    c_out2 = (b**2 * (sigma_data**2 * sigma_source**2 - cov**2) + sigma_data**2 * c**2) / var_t
    return DDBMPreconditioning(c_skip=(a * sigma_data**2 + b * cov) / var_t, c_out=c_out2.clamp(min=0).sqrt())


def _resolve_bridge(bridge: str | Bridge, **options: float | str | None) -> Bridge:
    """A ``Bridge`` instance as given (then no options may be set), or ``make_bridge(bridge, **options)``."""
    if not isinstance(bridge, Bridge):
        return make_bridge(bridge, **options)
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
        raise ValueError(f"bridge corruption: options {given} apply to a bridge name; configure the {bridge!r} "
                         f"instance instead")
    return bridge


class BridgeCorruption(Corruption):
    """A diffusion bridge bound to one field: x_t = a(t) x0 + b(t) x1 + c(t) z.

    The network receives x1 through ``cond`` (the modality's ``pairs`` names the
    conditioning field) and its output gives x0_hat = E[x0 | x_t, x1].

    Args:
        space: a Continuous or Bounded field space.
        bridge: a name in ``BRIDGES`` or a ``Bridge`` instance.
        sigma, profile, beta_min, beta_max, sigma_min, sigma_max, gamma: the bridge's
            options (``BRIDGE_OPTIONS``); None keeps the paper's default.
        parametrization: ``"x0"``: the network outputs x0_hat itself (``predict`` is the
            identity); ``"ddbm"``: it outputs F with x0_hat = c_skip x_t + c_out F (DDBM's
            preconditioning without the input scaling, ``ddbm_preconditioning``).
        weighting: w(t) of the x0 regression loss (see ``loss``): ``"none"``, ``"snr"``,
            ``"i2sb"`` or ``"ddbm"``.
        sigma_data, sigma_source, data_source_cov: std of x0, std of x1 and their
            covariance per dimension, used by ``"ddbm"`` parametrization and weighting
            (DDBM's defaults 0.5, 0.5, 0).
        t_min, t_max: training times are uniform on [t_min, t_max].
        name, field: the process name and the field it is bound to.

    Sampling starts at ``t_start = 1``: for pinned bridges the prior x1 *is* the marginal
    at t = 1 (c(1) = 0); for ``"ou"`` it is N(x1, c(1)^2 I), see ``OUBridge``.
    """

    family = "bridge"
    space_kinds = frozenset({"continuous", "bounded"})

    def __init__(self, space: Space, *, bridge: str | Bridge = "brownian", sigma: float | None = None,
                 profile: str | None = None, beta_min: float | None = None, beta_max: float | None = None,
                 sigma_min: float | None = None, sigma_max: float | None = None, gamma: float | None = None,
                 parametrization: str = "x0", weighting: str = "none", sigma_data: float = 0.5,
                 sigma_source: float = 0.5, data_source_cov: float = 0.0, t_min: float = 1e-3, t_max: float = 1.0,
                 name: str = "bridge", field: str = "") -> None:
        super().__init__(space, name=name, field=field)
        self.bridge = _resolve_bridge(bridge, sigma=sigma, profile=profile, beta_min=beta_min, beta_max=beta_max,
                                      sigma_min=sigma_min, sigma_max=sigma_max, gamma=gamma)
        for key, value, allowed in (("parametrization", parametrization, PARAMETRIZATIONS),
                                    ("weighting", weighting, WEIGHTINGS)):
            if value not in allowed:
                raise ValueError(f"bridge corruption: {key} {value!r} is not one of {list(allowed)}")
        if not 0 <= t_min < t_max <= 1:
            raise ValueError(f"bridge corruption: need 0 <= t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}")
        self.parametrization, self.weighting = parametrization, weighting
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.sigma_data, self.sigma_source = float(sigma_data), float(sigma_source)
        self.data_source_cov = float(data_source_cov)

    def coefficients(self, t: Tensor | float) -> BridgeCoefficients:
        """(a, b, c) of the marginal at times ``t`` (any shape), float64."""
        return self.bridge.coefficients(t)

    def posterior(self, t: Tensor | float, s: Tensor | float) -> BridgePosterior:
        """Coefficients of the Markov posterior q(x_s | x_t, x0, x1) for s < t, float64."""
        return self.bridge.posterior(t, s)

    def preconditioning(self, t: Tensor | float) -> DDBMPreconditioning:
        """DDBM's (c_skip, c_out) at ``t`` for this process's data statistics, float64."""
        return ddbm_preconditioning(self.coefficients(t), self.sigma_data, self.sigma_source, self.data_source_cov)

    def _where(self) -> str:
        return f"bridge corruption {self.name!r} ({self.bridge.name}) on field {self.field or '<unnamed>'!r}"

    def _source(self, source: Tensor | None, like: tuple[int, ...], method: str) -> Tensor:
        """The paired x1, checked to be present and of shape ``like``."""
        if source is None:
            raise ValueError(f"{self._where()}: {method} needs the paired source sample x1; pass source=x1 "
                             f"(shape (B, {', '.join(map(str, self.space.shape))})), which the experiment fills "
                             f"from the modality's pairs")
        if tuple(source.shape) != tuple(like):
            raise ValueError(f"{self._where()}: {method} got source of shape {tuple(source.shape)}, "
                             f"expected {tuple(like)} (one x1 per sample)")
        return source

    def _coef(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        coef = self.coefficients(t)
        return tuple(append_dims(v.to(like.dtype), like.ndim) for v in (coef.a, coef.b, coef.c))

    def _skip_out(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        pre = self.preconditioning(t)
        return tuple(append_dims(v.to(like.dtype), like.ndim) for v in (pre.c_skip, pre.c_out))

    def sample_t(self, n, *, generator=None, device=None):
        """Uniform on [t_min, t_max], shape ``(n,)``."""
        u = torch.rand(n, generator=generator, device=device)
        return self.t_min + (self.t_max - self.t_min) * u

    def corrupt(self, x0, t, *, generator=None, source=None):
        """x_t = a(t) x0 + b(t) x1 + c(t) z with z ~ N(0, I); ``source`` is x1, shape ``(B, *field_shape)``."""
        x1 = self._source(source, tuple(x0.shape), "corrupt").to(x0.dtype)
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        a, b, c = self._coef(t, x0)
        return Corrupted(t=t, x_t=a * x0 + b * x1 + c * z, noise=z)

    def predict(self, raw, x_t, t):
        """x0_hat = raw (``"x0"``) or c_skip x_t + c_out raw (``"ddbm"``)."""
        if self.parametrization == "x0":
            return Prediction(raw=raw, x0=raw)
        c_skip, c_out = self._skip_out(t, x_t)
        return Prediction(raw=raw, x0=c_skip * x_t + c_out * raw)

    def target(self, x0: Tensor, corrupted: Corrupted) -> Tensor:
        """The network's regression target: x0 (``"x0"``) or (x0 - c_skip x_t) / c_out (``"ddbm"``)."""
        if self.parametrization == "x0":
            return x0
        c_skip, c_out = self._skip_out(corrupted.t, x0)
        return (x0 - c_skip * corrupted.x_t.to(x0.dtype)) / c_out

    def loss_weight(self, t: Tensor) -> Tensor:
        """w(t) of ``loss``, float64, shape like ``t``."""
        t = _f64(t)
        if self.weighting == "none":
            return torch.ones_like(t)
        coef = self.coefficients(t)
        if self.weighting == "snr":
            return coef.a**2 / (coef.c**2).clamp(min=1e-12)
        if self.weighting == "i2sb":
            alpha, e = self.bridge.base(t)
            return 1 / (alpha**2 * e).clamp(min=1e-12)
        return 1 / (self.preconditioning(t).c_out ** 2).clamp(min=1e-12)

    def loss(self, raw, x0, corrupted):
        """Mean over the field of w(t) (x0_hat - x0)^2, shape ``(B,)``; x0_hat = raw for ``"x0"``.

        ``"none"``: w = 1, plain regression of E[x0 | x_t, x1]. ``"snr"``: w = a^2 / c^2,
        the error in the implied noise z_hat = (x_t - a x0_hat - b x1) / c (0 at t = 1 for
        pinned bridges). ``"i2sb"``: w = 1 / (alpha^2 E), I2SB's training loss (Liu et al.
        2023, Algorithm 1) on (x_t - x0_hat) / sigma_t, sigma_t the base process's std from x0.
        ``"ddbm"``: w = 1 / c_out^2, DDBM's weight (Zhou et al. 2023, Table 1), which with
        the ``"ddbm"`` parametrization is the unit-weight error of F.
        """
        x0_hat = self.predict(raw, corrupted.x_t, corrupted.t).x0
        per_sample = ((x0_hat.float() - x0.float()) ** 2).flatten(1).mean(dim=1)
        if self.weighting == "none":
            return per_sample
        return self.loss_weight(corrupted.t).to(per_sample) * per_sample

    def prior(self, n, *, generator=None, device=None, dtype=torch.float32, source=None):
        """x1 itself for pinned bridges; ``x1 + c(1) z`` for ``"ou"``.

        For ``"ou"`` this is the t = 1 marginal without its e^{-gamma} (x0 - x1) term (``OUBridge``).
        """
        x1 = self._source(source, (n, *self.space.shape), "prior").to(device=device, dtype=dtype)
        if self.bridge.pinned:
            return x1.clone()
        c1 = float(self.coefficients(1.0).c)
        return x1 + c1 * torch.randn(x1.shape, generator=generator, device=x1.device, dtype=dtype)

    def reverse_step(self, x_t, t, s, prediction, *, generator=None, source=None):
        """Draw x_s ~ q(x_s | x_t, x0 = x0_hat, x1), I2SB's DDPM-posterior sampler (Liu et al. 2023, Alg. 2).

        ``P x_t + Q x0_hat + R x1 + sqrt(V) z`` (module docstring); at s = 0 it returns x0_hat.
        """
        x1 = self._source(source, tuple(x_t.shape), "reverse_step").to(x_t.dtype)
        post = self.posterior(t, s)
        p, q, r, std = (append_dims(v.to(x_t.dtype), x_t.ndim) for v in (post.x_t, post.x0, post.x1, post.std))
        z = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        x_s = p * x_t + q * prediction.x0 + r * x1 + std * z
        return torch.where(append_dims(s == 0, x_t.ndim), prediction.x0.to(x_t.dtype), x_s)
