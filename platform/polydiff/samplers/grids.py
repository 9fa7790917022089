"""Time grids for samplers: descending times in [0, 1] ending with exactly t = 0.

Every grid has ``steps + 1`` points: ``steps`` times from ``t_max`` down to ``t_min`` and a
final 0 (the jump to the data, where samplers return x0_hat, as k-diffusion appends
sigma = 0). Grids are built from the first Gaussian field's schedule; processes without
a Gaussian field get a uniform grid from ``process.t_start`` to 0.

Implemented (k-diffusion ``get_sigmas_*`` in continuous time):
    uniform  uniform in t.
    karras   uniform in sigma_e^(1/rho), sigma_e = sigma/alpha (Karras et al. 2022, eq. 5).
    logsnr   uniform in lambda = log(alpha^2 / sigma^2) (Lu et al. 2022, DPM-Solver).
    trailing uniform in t from t_max down to 0, so the last positive time is t_max / steps
             (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are
             Flawed", Table 2: "trailing" spacing; diffusers' DDIM ``timestep_spacing=
             "trailing"`` and DPM-Solver's "linspace"). It ignores the schedule's t_min.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from polydiff.samplers.common import first_gaussian

GRIDS = ("uniform", "karras", "logsnr", "trailing")


def _with_zero(t: torch.Tensor) -> torch.Tensor:
    return torch.cat([t, t.new_zeros(1)])


def _uniform(schedule: Any, steps: int, t_max: float, t_min: float, rho: float) -> torch.Tensor:
    return torch.linspace(t_max, t_min, steps, dtype=torch.float64)


def _trailing(schedule: Any, steps: int, t_max: float, t_min: float, rho: float) -> torch.Tensor:
    """``t_max (1 - i / steps)`` for i < steps; at T = 1000 training steps and t = (k + 1) / T
    these are Lin et al.'s trailing timesteps k = round(T - i T / steps) - 1."""
    return torch.linspace(t_max, 0.0, steps + 1, dtype=torch.float64)[:-1]


def _logsnr_ends(schedule: Any, t_max: float, t_min: float) -> tuple[float, float]:
    ends = schedule(torch.tensor([t_max, t_min], dtype=torch.float64)).log_snr
    return float(ends[0]), float(ends[1])


def _karras(schedule: Any, steps: int, t_max: float, t_min: float, rho: float) -> torch.Tensor:
    lam_hi, lam_lo = _logsnr_ends(schedule, t_max, t_min)
    s_max, s_min = (torch.tensor(-0.5 * lam, dtype=torch.float64).exp() for lam in (lam_hi, lam_lo))
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    sigma = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    return _pinned(schedule.t_from_log_snr(-2 * sigma.log()), t_max, t_min)


def _logsnr(schedule: Any, steps: int, t_max: float, t_min: float, rho: float) -> torch.Tensor:
    lam_hi, lam_lo = _logsnr_ends(schedule, t_max, t_min)
    lam = torch.linspace(lam_hi, lam_lo, steps, dtype=torch.float64)
    return _pinned(schedule.t_from_log_snr(lam), t_max, t_min)


def _pinned(t: torch.Tensor, t_max: float, t_min: float) -> torch.Tensor:
    """Put the exact endpoints back (the inverse map rounds them)."""
    t = t.clone()
    t[0] = t_max
    if t.numel() > 1:
        t[-1] = t_min
    return t


_BUILDERS = {"uniform": _uniform, "karras": _karras, "logsnr": _logsnr, "trailing": _trailing}


def make_grid(name: str, processes: Mapping[str, Any], steps: int, *, rho: float = 7.0,
              t_max: float | None = None, t_min: float | None = None) -> torch.Tensor:
    """Build the time grid ``name`` for ``steps`` sampler steps.

    Args:
        name: one of ``GRIDS``.
        processes: field -> Corruption; the first Gaussian field's schedule sets the grid.
        steps: number of intervals (network evaluations of a one-call-per-step sampler).
        rho: the Karras exponent (7 in EDM).
        t_max: first time (default: the schedule's ``t_max``).
        t_min: last positive time before 0 (default: the schedule's ``t_min``); not accepted
            by ``"trailing"``, whose last positive time is ``t_max / steps``.

    Returns:
        float64 tensor of shape ``(steps + 1,)``, strictly decreasing, last entry 0.

    Raises:
        ValueError: unknown ``name``, ``steps < 1``, ``t_min >= t_max``, or ``t_min`` given
            to ``"trailing"``.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown grid {name!r}; grids: {list(GRIDS)}")
    if steps < 1:
        raise ValueError(f"grid {name!r}: steps must be >= 1, got {steps}")
    if name == "trailing" and t_min is not None:
        raise ValueError(f"grid 'trailing' ends at t_max / steps and takes no t_min (got t_min={t_min}); "
                         "use grid 'uniform' to choose the last positive time")
    proc = first_gaussian(processes)
    if proc is None:
        start = max(p.t_start for p in processes.values()) if t_max is None else t_max
        return torch.linspace(start, 0.0, steps + 1, dtype=torch.float64)
    schedule = proc.schedule
    t_max = schedule.t_max if t_max is None else float(t_max)
    t_min = schedule.t_min if t_min is None else float(t_min)
    if not 0 < t_min < t_max:
        raise ValueError(f"grid {name!r}: need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
    return _with_zero(_BUILDERS[name](schedule, steps, t_max, t_min, rho))
