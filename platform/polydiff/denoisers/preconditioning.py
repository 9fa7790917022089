"""EDM preconditioning as a wrapper module, rank-agnostic (Karras et al. 2022, section 5, Table 1).

For a Gaussian field with x_t = alpha x0 + sigma eps the wrapper works on the scaled
input x_t / alpha = x0 + sigma_e eps with sigma_e = sigma / alpha, and returns

    D(x_t, t) = c_skip(sigma_e) x_t / alpha + c_out(sigma_e) F(c_in(sigma_e) x_t / alpha, t)

with c_skip = sd^2 / (sigma_e^2 + sd^2), c_out = sigma_e sd / sqrt(sigma_e^2 + sd^2),
c_in = 1 / sqrt(sigma_e^2 + sd^2) and sd = sigma_data. The raw network receives t (not
EDM's c_noise = ln(sigma)/4, a monotone function of t). Fields whose process does not
use EDM preconditioning pass through unchanged. Scales broadcast over any field rank
(k-diffusion ``append_dims``), unlike EDM's ``reshape(-1, 1, 1, 1)``.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from polydiff.corruptions.base import Corruption, append_dims
from polydiff.spaces import State


class EDMPreconditioning(nn.Module):
    """Wrap ``net`` so that fields with ``preconditioning == "edm"`` output x0_hat = D(x_t, t).

    Args:
        net: the raw denoiser ``net(x_t, t, cond) -> {field: raw}``.
        processes: field -> Corruption; only Gaussian processes with EDM preconditioning
            are wrapped.
    """

    def __init__(self, net: nn.Module, processes: Mapping[str, Corruption]) -> None:
        super().__init__()
        self.net = net
        self.processes = {f: p for f, p in processes.items()
                          if getattr(p, "preconditioning", "none") == "edm"}

    def _scales(self, field: str, t: torch.Tensor, ndim: int):
        proc = self.processes[field]
        v = proc.schedule(t.float())
        sigma_e, sd = v.sigma / v.alpha, proc.sigma_data
        denom = sigma_e**2 + sd**2
        c_skip, c_out, c_in = sd**2 / denom, sigma_e * sd / denom.sqrt(), 1 / denom.sqrt()
        return tuple(append_dims(c, ndim) for c in (1 / v.alpha, c_skip, c_out, c_in))

    def forward(self, x_t: State, t: torch.Tensor, cond: State | None = None) -> dict[str, torch.Tensor]:
        """Raw outputs for unwrapped fields, x0_hat for wrapped ones."""
        inputs, scales = dict(x_t), {}
        for field in self.processes:
            x = x_t[field]
            inv_alpha, c_skip, c_out, c_in = self._scales(field, t, x.ndim)
            scales[field] = (inv_alpha * x, c_skip, c_out)
            inputs[field] = (c_in * inv_alpha * x).to(x.dtype)
        raw = self.net(inputs, t, cond)
        out = dict(raw)
        for field, (x_scaled, c_skip, c_out) in scales.items():
            out[field] = c_skip * x_scaled + c_out * raw[field].float()
        return out
