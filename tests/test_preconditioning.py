"""EDM preconditioning: Karras et al. (2022) Table 1 scalings, for any field rank and alpha."""
import math

import torch

from polydiff import Continuous, EDMPreconditioning, GaussianCorruption
from polydiff.schedules import EDM, VPLinear


class Constant(torch.nn.Module):
    """A fake raw network that returns ``value`` for every field."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x, t, cond=None):
        return {k: torch.full_like(v, self.value) for k, v in x.items()}


def test_edm_scalings_match_table_1_on_images():
    proc = GaussianCorruption(Continuous((3, 4, 4)), EDM(sigma_data=0.5))
    t = torch.tensor([0.3, 0.7], dtype=torch.float64)
    sigma = proc.schedule(t).sigma
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    out = EDMPreconditioning(Constant(1.0), {"img": proc})({"img": x}, t)["img"]
    sd2 = 0.25
    c_skip = sd2 / (sigma**2 + sd2)
    c_out = sigma * 0.5 / (sigma**2 + sd2).sqrt()
    expected = c_skip.view(-1, 1, 1, 1) * x + c_out.view(-1, 1, 1, 1)
    torch.testing.assert_close(out, expected)


def test_network_input_has_unit_scale_and_vp_fields_are_rescaled_by_alpha():
    seen = {}

    class Spy(Constant):
        def forward(self, x, t, cond=None):
            seen.update(x)
            return super().forward(x, t, cond)

    proc = GaussianCorruption(Continuous((2,)), VPLinear(), parametrization="x0", preconditioning="edm")
    t = torch.tensor([0.5], dtype=torch.float64)
    v = proc.schedule(t)
    x = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    out = EDMPreconditioning(Spy(0.0), {"x": proc})({"x": x}, t)["x"]
    sigma_e = v.sigma / v.alpha
    c_in = 1 / math.sqrt(float(sigma_e) ** 2 + 0.25)
    torch.testing.assert_close(seen["x"], c_in * x / v.alpha)
    torch.testing.assert_close(out, 0.25 / (sigma_e**2 + 0.25) * x / v.alpha)


def test_fields_without_edm_preconditioning_pass_through():
    proc = GaussianCorruption(Continuous((2,)), VPLinear())
    assert proc.preconditioning == "none"
    wrapped = EDMPreconditioning(Constant(3.0), {"x": proc})
    out = wrapped({"x": torch.zeros(1, 2)}, torch.tensor([0.5]))
    assert torch.equal(out["x"], torch.full((1, 2), 3.0))
