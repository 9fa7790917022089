"""Time grids: shape, order, endpoints, and the Karras formula."""
from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff.samplers import GRIDS, make_grid
from polydiff.schedules import EDM, VE, Flow, VPCosine, VPLinear


def procs(schedule):
    return {"x": polydiff.GaussianCorruption(polydiff.Continuous((2,)), schedule)}


@pytest.mark.parametrize("schedule", [VPLinear(), VPCosine(), VE(), EDM(), Flow()], ids=lambda s: s.name)
@pytest.mark.parametrize("name", GRIDS)
@pytest.mark.parametrize("steps", [1, 2, 10, 100])
def test_grid_shape_order_endpoints(name, schedule, steps):
    grid = make_grid(name, procs(schedule), steps)
    assert grid.dtype == torch.float64 and grid.shape == (steps + 1,)
    assert (grid[1:] < grid[:-1]).all()
    assert grid[0] == schedule.t_max and grid[-1] == 0
    if steps > 1 and name != "trailing":
        assert grid[-2] == schedule.t_min


def test_karras_is_edm_formula_for_edm_schedule():
    """For the EDM schedule, the Karras grid is uniform in t and matches EDM eq. 5 in sigma."""
    sched, n, rho = EDM(), 18, 7.0
    grid = make_grid("karras", procs(sched), n, rho=rho)
    i = torch.arange(n, dtype=torch.float64)
    s_max = sched(torch.tensor(1.0, dtype=torch.float64)).sigma
    s_min = sched(torch.tensor(sched.t_min, dtype=torch.float64)).sigma
    eq5 = (s_max ** (1 / rho) + i / (n - 1) * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    assert torch.allclose(sched(grid[:-1]).sigma, eq5, rtol=1e-10)
    assert torch.allclose(grid[:-1], torch.linspace(1.0, sched.t_min, n, dtype=torch.float64), atol=1e-10)


def test_logsnr_grid_is_uniform_in_logsnr():
    sched = VPLinear()
    grid = make_grid("logsnr", procs(sched), 12)
    lam = sched(grid[:-1]).log_snr
    assert torch.allclose(lam.diff(), lam.diff().mean().expand(11), rtol=1e-8)


@pytest.mark.parametrize("schedule", [VPLinear(), EDM(), Flow()], ids=lambda s: s.name)
@pytest.mark.parametrize("steps", [2, 5, 10, 50])
def test_trailing_is_uniform_to_zero(schedule, steps):
    """Uniform in t from t_max, last positive time t_max / steps, then exactly 0."""
    grid = make_grid("trailing", procs(schedule), steps)
    assert grid.shape == (steps + 1,) and grid[0] == schedule.t_max and grid[-1] == 0
    assert torch.isclose(grid[-2], torch.tensor(schedule.t_max / steps, dtype=torch.float64), rtol=1e-14, atol=0)
    step = torch.full((steps,), -schedule.t_max / steps, dtype=torch.float64)
    assert torch.allclose(grid.diff(), step, rtol=1e-12, atol=0)


def test_trailing_matches_lin_et_al_table_2():
    """T = 1000, 10 steps: trailing timesteps 999, 899, ..., 99 (Lin et al. 2024, Table 2), t = (k + 1) / T."""
    grid = make_grid("trailing", procs(VPLinear()), 10)
    k = torch.arange(999, 0, -100, dtype=torch.float64)
    assert torch.allclose(grid[:-1], (k + 1) / 1000, rtol=0, atol=1e-15)
    assert torch.allclose(make_grid("trailing", procs(VPLinear()), 4, t_max=0.8)[:-1],
                          torch.tensor([0.8, 0.6, 0.4, 0.2], dtype=torch.float64), rtol=0, atol=1e-15)


def test_trailing_rejects_t_min():
    with pytest.raises(ValueError, match="trailing.*t_min"):
        make_grid("trailing", procs(VPLinear()), 10, t_min=0.01)


def test_explicit_t_range_and_rho():
    grid = make_grid("uniform", procs(VPLinear()), 4, t_max=0.8, t_min=0.1)
    assert torch.allclose(grid, torch.tensor([0.8, 0.5667, 0.3333, 0.1, 0.0], dtype=torch.float64), atol=1e-4)
    a, b = make_grid("karras", procs(VPLinear()), 10, rho=3.0), make_grid("karras", procs(VPLinear()), 10)
    assert not torch.allclose(a, b)


def test_unknown_grid_lists_names():
    with pytest.raises(ValueError, match="uniform.*karras.*logsnr.*trailing"):
        make_grid("cosine", procs(VPLinear()), 10)


def test_bad_range_and_steps():
    with pytest.raises(ValueError, match="t_min"):
        make_grid("uniform", procs(VPLinear()), 4, t_max=0.1, t_min=0.5)
    with pytest.raises(ValueError, match="steps"):
        make_grid("uniform", procs(VPLinear()), 0)


def test_non_gaussian_processes_get_uniform_grid_from_t_start():
    class P:
        family, t_start = "masked", 1.0

    assert torch.equal(make_grid("karras", {"tok": P()}, 4), torch.linspace(1, 0, 5, dtype=torch.float64))
