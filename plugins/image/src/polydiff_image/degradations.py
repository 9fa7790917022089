"""Image degradations for restoration tasks: each a pure function of a clean image and a generator.

Every degradation takes ``clean`` of shape ``(C, H, W)`` (float, values in [0, 1]) and a
per-item ``torch.Generator``, and returns the degraded image of the same shape, dtype and
range (values are clipped to [0, 1] so the degraded image lies in the same space as the
clean one). The generator is the only randomness, so an item's degraded image is fixed by
the seed the caller gives its generator.

==========  ==========================================================  ============
task        degraded image y                                             randomness
==========  ==========================================================  ============
``sr2``     x average-pooled by 2 (2 x 2 blocks), upsampled back to       none
            (H, W) by ``upsample`` ("nearest" or "bilinear")
``denoise`` clip(x + ``noise_sigma`` * N(0, I), 0, 1)                      the noise
``deblur``  x convolved with a fixed, normalised Gaussian kernel of       none
            standard deviation ``blur_sigma`` pixels (side
            2 ceil(2 sigma) + 1, reflect padding), channel by channel
``inpaint`` x with a square of side ``box_size`` set to ``fill``; its     the box
            top-left corner uniform over the positions that fit           position
==========  ==========================================================  ============

These are the standard inverse-problem benchmarks of image restoration (e.g. I2SB, Liu et
al. 2023, section 5; DDRM, Kawar et al. 2022, section 5), in simplified form.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

import polydiff

TASKS = ("sr2", "denoise", "deblur", "inpaint")
UPSAMPLE_MODES = ("nearest", "bilinear")
Degradation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""``degrade(clean (C, H, W) in [0, 1], generator) -> degraded (C, H, W) in [0, 1]``."""


def super_resolution_x2(clean: torch.Tensor, generator: torch.Generator, upsample: str = "bilinear") -> torch.Tensor:
    """Average-pool by 2 then upsample back to full size (odd sides pool a partial last block).

    Args:
        clean: ``(C, H, W)`` in [0, 1].
        generator: unused (the degradation is deterministic); kept for the common signature.
        upsample: ``"nearest"`` or ``"bilinear"``.
    """
    low = F.avg_pool2d(clean[None], kernel_size=2, ceil_mode=True)
    options = {} if upsample == "nearest" else {"align_corners": False}
    return F.interpolate(low, size=clean.shape[-2:], mode=upsample, **options)[0].clamp(0.0, 1.0)


def add_gaussian_noise(clean: torch.Tensor, generator: torch.Generator, noise_sigma: float = 0.2) -> torch.Tensor:
    """``clip(clean + noise_sigma * eps, 0, 1)`` with ``eps ~ N(0, I)`` drawn from ``generator``; ``(C, H, W)``."""
    eps = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
    return (clean + noise_sigma * eps).clamp(0.0, 1.0)


def gaussian_kernel(blur_sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The normalised 1-D Gaussian kernel of standard deviation ``blur_sigma``, side ``2 ceil(2 sigma) + 1``."""
    radius = max(1, math.ceil(2.0 * blur_sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / blur_sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype)


def gaussian_blur(clean: torch.Tensor, generator: torch.Generator, blur_sigma: float = 1.0) -> torch.Tensor:
    """Separable Gaussian blur of each channel (reflect padding; zero padding if a side is too short).

    Args:
        clean: ``(C, H, W)`` in [0, 1].
        generator: unused (the kernel is fixed); kept for the common signature.
        blur_sigma: the kernel's standard deviation in pixels.
    """
    k = gaussian_kernel(blur_sigma, clean.dtype).to(clean.device)
    r = k.numel() // 2
    c, h, w = clean.shape
    mode = "reflect" if min(h, w) > r else "constant"
    x = F.pad(clean[:, None], (r, r, r, r), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return x[:, 0].clamp(0.0, 1.0)


def inpaint_box(clean: torch.Tensor, generator: torch.Generator, box_size: int | None = None,
                fill: float = 0.5) -> torch.Tensor:
    """Set a square of side ``box_size`` (default half the shorter side) to ``fill``; ``(C, H, W)``.

    The box's top-left corner is uniform over the positions where it fits, drawn from ``generator``.
    """
    h, w = clean.shape[-2:]
    side = min(box_size or max(1, min(h, w) // 2), h, w)
    top = int(torch.randint(h - side + 1, (1,), generator=generator))
    left = int(torch.randint(w - side + 1, (1,), generator=generator))
    out = clean.clone()
    out[:, top:top + side, left:left + side] = fill
    return out


def make_degradation(task: str, *, noise_sigma: float = 0.2, blur_sigma: float = 1.0, box_size: int | None = None,
                     fill: float = 0.5, upsample: str = "bilinear") -> Degradation:
    """The degradation of ``task`` with its option bound: ``degrade(clean (C, H, W), generator)``.

    Raises:
        polydiff.ConfigError: for an unknown task or an option outside its range, naming both.
    """
    if task not in TASKS:
        raise polydiff.ConfigError(f"modality 'image': task {task!r} is not one of {list(TASKS)} (or unset)")
    if upsample not in UPSAMPLE_MODES:
        raise polydiff.ConfigError(f"modality 'image': upsample {upsample!r} is not one of {list(UPSAMPLE_MODES)}")
    if not noise_sigma > 0 or not blur_sigma > 0:
        raise polydiff.ConfigError(f"modality 'image': noise_sigma = {noise_sigma} and blur_sigma = {blur_sigma} "
                                   f"must be > 0")
    if box_size is not None and box_size < 1:
        raise polydiff.ConfigError(f"modality 'image': box_size = {box_size} must be >= 1 (or unset for half the side)")
    if not 0.0 <= fill <= 1.0:
        raise polydiff.ConfigError(f"modality 'image': fill = {fill} must lie in [0, 1]")
    return {
        "sr2": partial(super_resolution_x2, upsample=upsample),
        "denoise": partial(add_gaussian_noise, noise_sigma=float(noise_sigma)),
        "deblur": partial(gaussian_blur, blur_sigma=float(blur_sigma)),
        "inpaint": partial(inpaint_box, box_size=box_size, fill=float(fill)),
    }[task]
