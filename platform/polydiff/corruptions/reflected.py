"""Reflected diffusion on a box: Brownian motion reflected at the walls (Lou & Ermon 2023).

Implements the forward process of "Reflected Diffusion Models" (A. Lou and S. Ermon, ICML
2023), Section 3: the reflected SDE ``dx = f dt + g(t) dB + dL`` (L the local time at the
boundary, which pushes the path back along the inward normal), here with ``f = 0`` and the
variance-exploding coefficient of Song et al. (2021, eq. 9, geometric sigma), on the box
of a ``Bounded`` field. Per dimension the box is mapped to the unit interval,

    u = (x - low) / (high - low)  in [0, 1],

and every noise level sigma is measured in units of the box width. In unit coordinates
the process started at u0 is ``u_t = reflect(u0 + sigma(t) z)``, z ~ N(0, 1): reflected
Brownian motion on [0, 1] at time sigma^2 is Brownian motion folded into [0, 1], and the
fold is exactly the reflection map ``reflect``.

Transition kernel (the Neumann heat kernel of [0, 1] at time sigma^2 / 2; Lou & Ermon,
Section 3, "sum of Gaussians" / "eigenfunction" forms):

    images  p(u | u0, sigma) = sum_k [N(u; u0 + 2k, sigma^2) + N(u; -u0 + 2k, sigma^2)]
    series  p(u | u0, sigma) = 1 + 2 sum_{n >= 1} exp(-n^2 pi^2 sigma^2 / 2) cos(n pi u) cos(n pi u0)

Both are exact as infinite sums. ``reflected_log_kernel`` and ``reflected_kernel_score``
use the images with ``IMAGES = 2`` (k = -2..2, 10 Gaussians) for sigma < ``SERIES_FROM =
0.5`` and the series with ``SERIES_TERMS = 10`` cosines for sigma >= 0.5, in float64:

* images, truncated at |k| <= K and evaluated at u <= 1/2 (the kernel is symmetric under
  (u, u0) -> (1 - u, 1 - u0), which flips the sign of the score): the nearest image lies
  within distance 1 of u, every dropped one at distance >= 2K + 1/2, so the relative error
  of p is below 4 exp(-((2K + 1/2)^2 - 1) / (2 sigma^2)) = 4 exp(-9.6 / sigma^2) < 1e-16 for
  sigma < 0.5;
* series, truncated at n <= N: the kernel is at least p(1 | 0, 0.5) = 0.43 for sigma >= 0.5,
  and the dropped terms sum to < 3 exp(-121 pi^2 sigma^2 / 2) < 1e-60 (times n pi for the
  derivative).

So both the log-density and the score are exact to float64 rounding: measured against
a 121-image reference, ``|log p - ref| < 1e-12`` and ``|score - ref| < 1e-11 (1 + |ref|)``
over sigma in [1e-3, 5] (``tests/corruptions/test_reflected.py``). The evaluation at
u <= 1/2 makes the score exactly zero at both walls (the Neumann condition).

Network parametrisation (Lou & Ermon, Section 3, "Score matching on bounded domains", in
the noise-conditional form of Song et al. 2021): the network output is

    raw ~= sigma(t) * d/du log p_t(u)     (unit-box coordinates),

trained by denoising score matching against the kernel's score with weight sigma^2
(Song et al. 2021, eq. 7 with lambda = sigma^2), i.e. ``mean (raw - sigma score_kernel)^2``.
A ``Prediction`` of this process carries ``score`` in the field's own coordinates,
``grad_x log p_t(x) = (d/du log p_t) / (high - low)``, and ``x0``, the Tweedie estimate
``reflect(u + sigma^2 score_u)`` mapped back to the box. Samplers of this family
(``polydiff.samplers.reflected``) read the score through ``unit_score``.

Notation:
    u, u0     positions in unit-box coordinates (x_t and x0)
    w         the box width ``high - low``
    sigma     noise level at time t, in box widths: sigma_min (sigma_max / sigma_min)^t
    g2        g(t)^2 = d sigma^2 / dt = 2 log(sigma_max / sigma_min) sigma^2
    K, N      the number of image pairs each side (``IMAGES``) and of cosines (``SERIES_TERMS``)
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from polydiff.corruptions.base import Corrupted, Corruption, Prediction, append_dims
from polydiff.spaces import Space

IMAGES = 2
"""Image pairs on each side (k = -2..2): relative error < 1e-16 below ``SERIES_FROM``."""
SERIES_TERMS = 10
"""Cosine terms of the eigenfunction series: error < 1e-60 from ``SERIES_FROM`` up."""
SERIES_FROM = 0.5
"""Noise level (box widths) from which the kernel is evaluated by its eigenfunction series."""
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

Tensorish = torch.Tensor | float


# ---------------------------------------------------------------- the reflection map

def reflect(x: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Fold any real into ``[low, high]`` by reflecting at the walls (period ``2 (high - low)``).

    The reflection map of Lou & Ermon (2023), Section 3: x -> low + w r((x - low) / w) with
    r(v) = v mod 2 for v mod 2 <= 1 and 2 - (v mod 2) otherwise. Points inside the box are
    returned unchanged (bit for bit); the others are folded in float64 and written back
    from the nearer wall, so that rounding never leaves the box (no clipping is used).

    Args:
        x: finite values of any shape and floating dtype.
        low, high: the box, ``low < high``.

    Returns:
        A tensor of the shape and dtype of ``x`` with every value in ``[low, high]``.
    """
    width = high - low
    v = torch.remainder((x.double() - low) / width, 2.0)
    folded = _from_unit(torch.where(v > 1, 2 - v, v), low, high).to(x.dtype)
    return torch.where((x >= low) & (x <= high), x, folded)


def _from_unit(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``low + w u``, written from the nearer wall so rounding stays inside the box."""
    width = high - low
    return torch.where(u <= 0.5, low + width * u, high - width * (1 - u))


# ---------------------------------------------------------------- the kernel, by images

def _f64(*values: Tensorish) -> list[torch.Tensor]:
    return list(torch.broadcast_tensors(*(torch.as_tensor(v, dtype=torch.float64) for v in values)))


def _lower_half(u: torch.Tensor, u0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Map (u, u0) to (1 - u, 1 - u0) where u > 1/2: p is invariant, the score changes sign."""
    upper = u > 0.5
    return torch.where(upper, 1 - u, u), torch.where(upper, 1 - u0, u0), upper


def _image_means(u0: torch.Tensor, images: int) -> torch.Tensor:
    """The image sources 2k + u0 and 2k - u0, k = -images..images: shape ``(2 (2 images + 1), *u0.shape)``."""
    shifts = 2.0 * torch.arange(-images, images + 1, dtype=torch.float64, device=u0.device)
    shifts = shifts.view(-1, *([1] * u0.ndim))
    return torch.cat([shifts + u0, shifts - u0])


def _image_exponents(u: torch.Tensor, u0: torch.Tensor, sigma: torch.Tensor,
                     images: int) -> tuple[torch.Tensor, torch.Tensor]:
    means = _image_means(u0, images)
    return means, -((u - means) ** 2) / (2 * sigma**2)


def reflected_log_kernel_images(u: Tensorish, u0: Tensorish, sigma: Tensorish, *, images: int = IMAGES) -> torch.Tensor:
    """log p(u | u0, sigma) on [0, 1] by the method of images, in float64.

    log sum_{|k| <= images} [N(u; u0 + 2k, sigma^2) + N(u; -u0 + 2k, sigma^2)] with logsumexp,
    evaluated at u <= 1/2 by the symmetry p(u | u0) = p(1 - u | 1 - u0). Relative error of
    p below 4 exp(-((2 images + 1/2)^2 - 1) / (2 sigma^2)) (module docstring).

    Args:
        u: positions in [0, 1]; u0: starting points in [0, 1]; sigma: noise levels > 0
            (box widths); all broadcast together.
        images: image pairs on each side.

    Returns:
        float64 tensor of the broadcast shape.
    """
    u, u0, sigma = _f64(u, u0, sigma)
    u, u0, _ = _lower_half(u, u0)
    _, exponents = _image_exponents(u, u0, sigma, images)
    return torch.logsumexp(exponents, dim=0) - torch.log(sigma) - _LOG_SQRT_2PI


def reflected_kernel_score_images(u: Tensorish, u0: Tensorish, sigma: Tensorish, *,
                                  images: int = IMAGES) -> torch.Tensor:
    """d/du log p(u | u0, sigma) by the method of images, in float64.

    sum_j r_j (m_j - u) / sigma^2 over the image sources m_j with softmax weights r_j
    (the score of a Gaussian mixture); exactly zero at u = 0 and u = 1.

    Args:
        u, u0, sigma: as ``reflected_log_kernel_images``.
        images: image pairs on each side.

    Returns:
        float64 tensor of the broadcast shape.
    """
    u, u0, sigma = _f64(u, u0, sigma)
    u, u0, upper = _lower_half(u, u0)
    means, exponents = _image_exponents(u, u0, sigma, images)
    score = (torch.softmax(exponents, dim=0) * (means - u)).sum(0) / sigma**2
    return torch.where(upper, -score, score)


# ---------------------------------------------------------------- the kernel, by eigenfunctions

def _series_terms(u: torch.Tensor, u0: torch.Tensor, sigma: torch.Tensor,
                  terms: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n pi, exp(-n^2 pi^2 sigma^2 / 2) cos(n pi u0), n pi u) for n = 1..terms, leading axis n."""
    n_pi = math.pi * torch.arange(1, terms + 1, dtype=torch.float64, device=u.device).view(-1, *([1] * u.ndim))
    weight = torch.exp(-0.5 * (n_pi * sigma) ** 2) * torch.cos(n_pi * u0)
    return n_pi, weight, n_pi * u


def reflected_log_kernel_series(u: Tensorish, u0: Tensorish, sigma: Tensorish, *,
                                terms: int = SERIES_TERMS) -> torch.Tensor:
    """log p(u | u0, sigma) on [0, 1] by the Neumann eigenfunction (cosine) series, in float64.

    log(1 + 2 sum_{n <= terms} exp(-n^2 pi^2 sigma^2 / 2) cos(n pi u) cos(n pi u0)). Accurate
    where sigma is large (error < 3 exp(-(terms + 1)^2 pi^2 sigma^2 / 2) / p); at small sigma
    the truncated series cancels badly and may even be negative: use the images there.

    Args:
        u, u0, sigma: as ``reflected_log_kernel_images``.
        terms: number of cosines.

    Returns:
        float64 tensor of the broadcast shape.
    """
    u, u0, sigma = _f64(u, u0, sigma)
    _, weight, phase = _series_terms(u, u0, sigma, terms)
    return torch.log1p(2 * (weight * torch.cos(phase)).sum(0))


def reflected_kernel_score_series(u: Tensorish, u0: Tensorish, sigma: Tensorish, *,
                                  terms: int = SERIES_TERMS) -> torch.Tensor:
    """d/du log p(u | u0, sigma) by the cosine series, in float64: p'(u) / p(u) with
    p' = -2 sum_n n pi exp(-n^2 pi^2 sigma^2 / 2) sin(n pi u) cos(n pi u0), zero at the walls.

    Args:
        u, u0, sigma: as ``reflected_log_kernel_images``.
        terms: number of cosines.

    Returns:
        float64 tensor of the broadcast shape.
    """
    u, u0, sigma = _f64(u, u0, sigma)
    n_pi, weight, phase = _series_terms(u, u0, sigma, terms)
    density = 1 + 2 * (weight * torch.cos(phase)).sum(0)
    return -2 * (n_pi * weight * torch.sin(phase)).sum(0) / density


# ---------------------------------------------------------------- the kernel, either way

def _by_sigma(images_fn: Callable[..., torch.Tensor], series_fn: Callable[..., torch.Tensor],
              u: Tensorish, u0: Tensorish, sigma: Tensorish) -> torch.Tensor:
    """Evaluate ``images_fn`` where sigma < SERIES_FROM and ``series_fn`` elsewhere (each only on its part)."""
    u, u0, sigma = _f64(u, u0, sigma)
    wide = sigma >= SERIES_FROM
    if bool(wide.all()) or not bool(wide.any()):  # one sigma per batch, the usual case: no gather
        return (series_fn if bool(wide.any()) else images_fn)(u, u0, sigma)
    narrow = ~wide
    out = torch.empty(u.shape, dtype=torch.float64, device=u.device)
    out[narrow] = images_fn(u[narrow], u0[narrow], sigma[narrow])
    out[wide] = series_fn(u[wide], u0[wide], sigma[wide])
    return out


def reflected_log_kernel(u: Tensorish, u0: Tensorish, sigma: Tensorish) -> torch.Tensor:
    """log p(u | u0, sigma): the transition density of Brownian motion on [0, 1] reflected at
    both walls, after noise level sigma (box widths), with respect to du.

    Lou & Ermon (2023), Section 3: images for sigma < ``SERIES_FROM``, cosine series above;
    accurate to float64 rounding (``|error| < 1e-12`` measured; see the module docstring).
    Differentiable in ``u`` (autograd gives ``reflected_kernel_score``).

    Args:
        u: positions in [0, 1]; u0: starting points in [0, 1]; sigma: noise levels > 0;
            tensors or floats that broadcast together.

    Returns:
        float64 tensor of the broadcast shape.
    """
    return _by_sigma(reflected_log_kernel_images, reflected_log_kernel_series, u, u0, sigma)


def reflected_kernel_score(u: Tensorish, u0: Tensorish, sigma: Tensorish) -> torch.Tensor:
    """d/du log p(u | u0, sigma), the denoising score-matching target of Lou & Ermon (2023),
    Section 3, in unit-box coordinates; zero at u = 0 and u = 1 (Neumann condition).

    Accurate to ``1e-11 (1 + |score|)`` (measured); images below ``SERIES_FROM``, series above.

    Args:
        u, u0, sigma: as ``reflected_log_kernel``.

    Returns:
        float64 tensor of the broadcast shape.
    """
    return _by_sigma(reflected_kernel_score_images, reflected_kernel_score_series, u, u0, sigma)


# ---------------------------------------------------------------- the process

class ReflectedCorruption(Corruption):
    """Reflected Brownian motion on the box of a ``Bounded`` field (Lou & Ermon 2023).

    Forward SDE per dimension in unit-box coordinates: ``du = g(t) dB + dL`` reflected at 0
    and 1, with the geometric noise level sigma(t) = sigma_min (sigma_max / sigma_min)^t in
    box widths (the VE SDE of Song et al. 2021, eq. 9, which Lou & Ermon reflect) and
    g^2 = d sigma^2 / dt. The marginal is ``q(u_t | u0) = prod_d p(u_t,d | u0,d, sigma(t))``
    (module docstring); the prior is uniform on the box.

    Defaults, and why:
        sigma_max = 2: the first eigenmode of the kernel decays as exp(-pi^2 sigma^2 / 2), so
            at t = 1 the kernel is uniform to within 2 exp(-2 pi^2) = 5.4e-9 for every x0:
            the prior is the t = 1 marginal to that precision. (sigma_max = 1 would leave a
            1.4% deviation.)
        sigma_min = 0.01: the noise left at t = 0, one hundredth of the box width, as in
            Lou & Ermon's released code for data in [0, 1] (2.5 levels of 8-bit data): small
            against the features of the data yet it keeps the score below 1 / sigma_min^2
            and the geometric grid coarse enough (ratio 200^(1/20) = 1.30 per step at 20
            steps) for few-step samplers.

    Args:
        space: a ``Bounded`` field space.
        sigma_min, sigma_max: noise levels at t = 0 and t = 1, in box widths.
        t_min: training times are uniform on ``(t_min, 1]``.
        name, field: registry name and field name (error messages).

    Raises:
        IncompatibleSpaceError: for a space that is not ``Bounded`` (named with the process).
        ValueError: unless ``0 < sigma_min < sigma_max`` and ``0 <= t_min < 1``.
    """

    family = "reflected"
    space_kinds = frozenset({"bounded"})

    def __init__(self, space: Space, *, sigma_min: float = 0.01, sigma_max: float = 2.0, t_min: float = 0.0,
                 name: str = "reflected", field: str = "") -> None:
        super().__init__(space, name=name, field=field)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"corruption {self.name!r}: need 0 < sigma_min < sigma_max, "
                             f"got sigma_min={sigma_min}, sigma_max={sigma_max}")
        if not 0 <= t_min < 1:
            raise ValueError(f"corruption {self.name!r}: need 0 <= t_min < 1, got t_min={t_min}")
        self.sigma_min, self.sigma_max, self.t_min = float(sigma_min), float(sigma_max), float(t_min)
        self.low, self.high = float(space.low), float(space.high)
        self.width = self.high - self.low

    # -- schedule and coordinates

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """sigma(t) = sigma_min (sigma_max / sigma_min)^t in box widths, float64, shape of ``t``."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return self.sigma_min * torch.exp(t * math.log(self.sigma_max / self.sigma_min))

    def g2(self, t: torch.Tensor | float) -> torch.Tensor:
        """g(t)^2 = d sigma^2 / dt = 2 log(sigma_max / sigma_min) sigma(t)^2, float64."""
        return 2 * math.log(self.sigma_max / self.sigma_min) * self.sigma(t) ** 2

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-box coordinates ``(x - low) / (high - low)``, float64, same shape."""
        return (x.double() - self.low) / self.width

    def from_unit(self, u: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Field coordinates ``low + (high - low) u`` of u in [0, 1], in ``dtype``, inside the box."""
        return _from_unit(u.double(), self.low, self.high).to(dtype)

    def reflect(self, x: torch.Tensor) -> torch.Tensor:
        """``reflect(x, low, high)``: fold field values into this field's box (same dtype)."""
        return reflect(x, self.low, self.high)

    def _sigma_like(self, t: torch.Tensor, ndim: int) -> torch.Tensor:
        return append_dims(self.sigma(t.detach()), ndim)

    # -- the kernel, for oracles and samplers that only hold the process

    @staticmethod
    def kernel_log_density(u: Tensorish, u0: Tensorish, sigma: Tensorish) -> torch.Tensor:
        """``reflected_log_kernel(u, u0, sigma)`` (unit coordinates, float64)."""
        return reflected_log_kernel(u, u0, sigma)

    @staticmethod
    def kernel_score(u: Tensorish, u0: Tensorish, sigma: Tensorish) -> torch.Tensor:
        """``reflected_kernel_score(u, u0, sigma)`` (unit coordinates, float64)."""
        return reflected_kernel_score(u, u0, sigma)

    # -- the Corruption contract

    def sample_t(self, n: int, *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """Training times uniform on ``(t_min, 1]``, shape ``(n,)``."""
        r = torch.rand(n, generator=generator, device=device)
        return self.t_min + (1 - self.t_min) * (1 - r)

    def corrupt(self, x0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None = None) -> Corrupted:
        """An exact draw of the reflected kernel: ``u_t = reflect(u0 + sigma(t) z)`` per dimension.

        Returns:
            ``Corrupted(t, x_t, noise=z)`` with x_t in the box, in the dtype of ``x0``.
        """
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        u = reflect(self.to_unit(x0) + self._sigma_like(t, x0.ndim) * z.double())
        return Corrupted(t=t, x_t=self.from_unit(u, x0.dtype), noise=z)

    def score_target(self, x0: torch.Tensor, corrupted: Corrupted) -> torch.Tensor:
        """The regression target ``sigma(t) d/du log p(u_t | u0, sigma(t))`` (unit coordinates).

        Not named ``target``: its Tweedie inverse ``reflect(u + sigma raw)`` is E[x0 | x_t]
        only away from the walls, so ``predict(target).x0 == x0`` (what the conformance kit
        checks of a ``target``) does not hold for a reflected process.

        Returns:
            Shape ``(B, *field_shape)``, in the dtype of ``x0``.
        """
        sigma = self._sigma_like(corrupted.t, x0.ndim)
        score = reflected_kernel_score(self.to_unit(corrupted.x_t), self.to_unit(x0), sigma)
        return (sigma * score).to(x0.dtype)

    def loss(self, raw: torch.Tensor, x0: torch.Tensor, corrupted: Corrupted) -> torch.Tensor:
        """Mean over the field of ``(raw - sigma score_kernel)^2``, shape ``(B,)``.

        Denoising score matching against the reflected kernel (Lou & Ermon 2023, Section 3)
        with weight lambda(t) = sigma^2 (Song et al. 2021, eq. 7), in unit-box coordinates.
        """
        err = (raw.float() - self.score_target(x0, corrupted).float()) ** 2
        return err.flatten(1).mean(dim=1)

    def predict(self, raw: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        """Read ``raw = sigma * score_u``: ``score`` in field coordinates and the Tweedie ``x0``.

        Returns:
            ``Prediction(raw, x0=from_unit(reflect(u + sigma raw)), score=raw / (sigma w))``,
            both in the dtype of ``x_t``; x0 is inside the box (exact E[x0 | x_t] for data
            farther than a few sigma from the walls, an estimate near them).
        """
        sigma = self._sigma_like(t, x_t.ndim)
        raw64 = raw.double()
        x0 = self.from_unit(reflect(self.to_unit(x_t) + sigma * raw64), x_t.dtype)
        return Prediction(raw=raw, x0=x0, score=(raw64 / (sigma * self.width)).to(x_t.dtype))

    def unit_score(self, prediction: Prediction, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """d/du log p_t at ``x_t`` in unit coordinates, float64, shape ``(B, *field_shape)``.

        ``prediction.score`` (field coordinates) times the box width; a prediction that
        carries only ``x0`` is read as a point mass at x0: the kernel score
        ``d/du log p(u_t | u0 = x0, sigma(t))``, exact when the data is that single point.
        """
        if prediction.score is not None:
            return prediction.score.double() * self.width
        sigma = self._sigma_like(t, x_t.ndim)
        return reflected_kernel_score(self.to_unit(x_t), self.to_unit(prediction.x0), sigma)

    def prior(self, n: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform on the box, shape ``(n, *field_shape)``: the t = 1 marginal to 5.4e-9 at sigma_max = 2."""
        u = torch.rand((n, *self.space.shape), generator=generator, device=device, dtype=torch.float64)
        return self.from_unit(u, dtype)

    def reverse_step(self, x_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor, prediction: Prediction, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """One reflected Euler-Maruyama step of the reverse SDE from t to s < t (s = 0 allowed).

        The reverse reflected SDE ``du = -g^2 score dt + g dB_bar + dL`` (Lou & Ermon 2023,
        Section 3, the reversal of Song et al. 2021, eq. 6, with reflection at the walls) with
        g^2 dt integrated exactly over the step (the reverse-diffusion predictor of Song et
        al. 2021, eq. 46, for the VE SDE): ``u_s = reflect(u_t + (sigma_t^2 - sigma_s^2) score_u +
        sqrt(sigma_t^2 - sigma_s^2) z)``. At s = 0 this is the step to sigma_min: the last
        state, a sample of the t = 0 marginal (data blurred by sigma_min), inside the box.
        """
        var = self._sigma_like(t, x_t.ndim) ** 2 - self._sigma_like(s, x_t.ndim) ** 2
        z = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype).double()
        u = self.to_unit(x_t) + var * self.unit_score(prediction, x_t, t) + var.sqrt() * z
        return self.from_unit(reflect(u), x_t.dtype)

    def __repr__(self) -> str:
        return (f"ReflectedCorruption(name={self.name!r}, field={self.field!r}, space={self.space}, "
                f"sigma_min={self.sigma_min}, sigma_max={self.sigma_max})")
