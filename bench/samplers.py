"""Samplers benchmark: polydiff's samplers vs diffusers' schedulers on an exact oracle.

Both libraries sample the same process -- DDPM's discrete linear betas (1e-4..0.02, 1000
steps) -- driven by the same exact denoiser (the closed-form E[x0 | x_t] of a 2-D Gaussian
mixture), from the same initial noise. diffusers gets x0 directly
(``prediction_type="sample"``) computed at the (alpha, sigma) of its own timesteps; polydiff
runs on ``DiscreteVP``, a schedule that interpolates diffusers' ``alphas_cumprod`` exactly
(log alpha^2 piecewise linear in t, t = (k + 1) / 1000 for timestep k).

Errors, per NFE:
  * ODE error (deterministic samplers): mean squared distance of the samples to a reference
    solution of the same probability-flow ODE from the same noise (polydiff DPM-Solver++ 3M,
    2000 log-SNR steps). The PF-ODE in (x / alpha, sigma / alpha) does not depend on the time
    parametrisation, so both libraries solve the same ODE.
  * SW: sliced Wasserstein to fresh exact samples (its noise floor is printed).
Overhead: wall time of the sampling loop per network evaluation (NFE) with a free denoiser
that returns a precomputed zeros tensor (polydiff: ``Prediction(x0=zeros)``, no eps;
diffusers: the zeros as its ``sample`` prediction). Same batch (4096 x 2), float32 on both
sides, 2 threads; timed: grid / ``set_timesteps`` plus the loop (process and scheduler
construction and the initial noise are outside), 2 warm-up runs, median of 21.

Run: ``.venv/bin/python bench/samplers.py`` (writes bench/results/samplers.md and .csv).
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler,
                       UniPCMultistepScheduler)

import polydiff
from polydiff.corruptions.base import Prediction
from polydiff.evaluation.distances import sliced_wasserstein
from polydiff.samplers import make_grid
from polydiff.schedules import Schedule
from polydiff.testing.oracles import GaussianMixtureOracle

NFES = (5, 10, 20, 50)
N_SAMPLES = 4096
BETAS = dict(beta_start=1e-4, beta_end=0.02, beta_schedule="linear", num_train_timesteps=1000)
OUT = Path(__file__).parent / "results"


class DiscreteVP(Schedule):
    """VP schedule through diffusers' DDPM ``alphas_cumprod``: log alpha^2 piecewise linear in t."""

    name = "discrete-vp"

    def __init__(self) -> None:
        betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
        self.knots_t = torch.arange(0, 1001, dtype=torch.float64) / 1000
        self.knots_la = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.log1p(-betas), 0)])
        self.t_min, self.t_max = 1e-3, 1.0

    def _log_alpha2(self, t):
        i = (t * 1000).floor().clamp(0, 999).long()
        w = t * 1000 - i
        slope = self.knots_la[i + 1] - self.knots_la[i]
        return self.knots_la[i] + w * slope, slope * 1000

    def values(self, t):
        la, d_la = self._log_alpha2(t.double())
        alpha, sigma = torch.exp(0.5 * la), torch.sqrt(-torch.expm1(la))
        d_alpha = 0.5 * alpha * d_la
        return alpha, sigma, d_alpha, -alpha * d_alpha / sigma

    def t_from_log_snr(self, log_snr):
        la = -torch.nn.functional.softplus(-log_snr.double())  # log alpha^2 = log sigmoid(lambda)
        j = torch.searchsorted(-self.knots_la, -la).clamp(1, 1000)
        lo, hi = self.knots_la[j - 1], self.knots_la[j]
        return (self.knots_t[j - 1] + (la - lo) / (hi - lo) / 1000).clamp(0, 1)


def mixture() -> GaussianMixtureOracle:
    covs = torch.stack([torch.eye(2) * 0.09, torch.tensor([[0.2, 0.05], [0.05, 0.1]]), torch.eye(2) * 0.0625])
    return GaussianMixtureOracle([0.5, 0.3, 0.2], [[-2.0, -1.0], [2.0, 0.5], [0.0, 2.5]], covs.double())


NO_LOF = {"lower_order_final": False}
POLYDIFF = [("dpmpp_2m", "trailing", {}), ("dpmpp_3m", "trailing", {}), ("unipc", "trailing", {}),
            ("dpmpp_2m", "trailing", NO_LOF), ("dpmpp_3m", "trailing", NO_LOF), ("unipc", "trailing", NO_LOF),
            ("ddim", "trailing", {}), ("euler", "trailing", {}), ("heun", "trailing", {}),
            ("ddim", "uniform", {}), ("ddim", "logsnr", {}), ("euler", "karras", {}), ("heun", "karras", {}),
            ("dpmpp_2m", "logsnr", {}), ("dpmpp_2m", "karras", {}), ("dpmpp_3m", "logsnr", {}),
            ("unipc", "logsnr", {}), ("unipc", "karras", {})]
DIFFUSERS = [
    ("DDIM", "trailing", lambda: DDIMScheduler(**BETAS, prediction_type="sample", clip_sample=False,
                                               set_alpha_to_one=True, timestep_spacing="trailing")),
    ("Euler", "default", lambda: EulerDiscreteScheduler(**BETAS, prediction_type="sample")),
    ("Euler", "karras", lambda: EulerDiscreteScheduler(**BETAS, prediction_type="sample", use_karras_sigmas=True)),
    ("Heun", "default", lambda: HeunDiscreteScheduler(**BETAS, prediction_type="sample")),
    ("DPM++2M", "default", lambda: DPMSolverMultistepScheduler(**BETAS, prediction_type="sample", solver_order=2,
                                                               algorithm_type="dpmsolver++")),
    ("DPM++2M", "karras", lambda: DPMSolverMultistepScheduler(**BETAS, prediction_type="sample", solver_order=2,
                                                              algorithm_type="dpmsolver++", use_karras_sigmas=True)),
    ("UniPC", "default", lambda: UniPCMultistepScheduler(**BETAS, prediction_type="sample")),
]
DETERMINISTIC_NOTE = "all rows are deterministic ODE samplers"
LIKE_FOR_LIKE = [("DDIM", "trailing", "ddim", "trailing"), ("Euler", "default", "euler", "trailing"),
                 ("Heun", "default", "heun", "karras"), ("DPM++2M", "default", "dpmpp_2m", "trailing"),
                 ("UniPC", "default", "unipc", "trailing")]
"""(diffusers sampler, its grid, polydiff sampler, its grid) compared for overhead."""
OVERHEAD_STEPS, WARMUP, REPEATS = 50, 2, 21


def steps_for(name: str, nfe: int) -> int:
    return (nfe + 1) // 2 if name.lower().startswith("heun") else nfe


# ------------------------------------------------------------------ polydiff

def run_polydiff(name, grid_name, options, procs, predict, z, nfe):
    spec = polydiff.make_plugin_manager().registry.get("sampler", name)
    x = {"x": procs["x"].schedule.prior_std() * z}
    grid = make_grid(grid_name, procs, steps_for(name, nfe))
    out = spec.function(predict, procs, x, grid, **options)
    return out.state["x"], out.nfe


# ------------------------------------------------------------------ diffusers

def _alpha_sigma_of(sch, t):
    if hasattr(sch, "sigmas") and isinstance(sch, (EulerDiscreteScheduler, HeunDiscreteScheduler)):
        sigma_e = sch.sigmas[sch.step_index].double()
        alpha = 1 / torch.sqrt(1 + sigma_e**2)
        return alpha, alpha * sigma_e
    ac = sch.alphas_cumprod[int(t)].double()
    return ac.sqrt(), (1 - ac).sqrt()


def run_diffusers(make, denoise, z, nfe, name):
    sch = make()
    sch.set_timesteps(steps_for(name, nfe))
    x, calls = z * sch.init_noise_sigma, 0
    for t in sch.timesteps:
        inp = sch.scale_model_input(x, t)
        alpha, sigma = _alpha_sigma_of(sch, t)
        x0 = denoise(inp, alpha, sigma)
        calls += 1
        x = sch.step(x0, t, x).prev_sample
    return x, calls


# ------------------------------------------------------------------ measurement

def overhead_polydiff(name, grid_name, options, procs):
    """Median seconds per NFE of make_grid + the sampler with a free denoiser."""
    z = torch.zeros(N_SAMPLES, 2)
    free = {"x": Prediction(raw=z, x0=z)}
    predict = lambda x, t: free  # noqa: E731
    fn = polydiff.make_plugin_manager().registry.get("sampler", name).function
    x = {"x": torch.randn(N_SAMPLES, 2)}

    def loop():
        return fn(predict, procs, x, make_grid(grid_name, procs, steps_for(name, OVERHEAD_STEPS)), **options).nfe

    return _median_per_call(loop)


def overhead_diffusers(make, name):
    """Median seconds per NFE of set_timesteps + the step loop with a free denoiser."""
    sch, zeros, x0 = make(), torch.zeros(N_SAMPLES, 2), torch.randn(N_SAMPLES, 2)

    def loop():
        sch.set_timesteps(steps_for(name, OVERHEAD_STEPS))
        x = x0 * sch.init_noise_sigma
        for t in sch.timesteps:
            sch.scale_model_input(x, t)
            x = sch.step(zeros, t, x).prev_sample
        return len(sch.timesteps)

    return _median_per_call(loop)


def _median_per_call(loop) -> float:
    """Microseconds per model call: ``loop()`` runs once and returns its number of calls."""
    for _ in range(WARMUP):
        loop()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        calls = loop()
        times.append((time.perf_counter() - start) / calls)
    return 1e6 * statistics.median(times)


def main() -> pd.DataFrame:
    torch.set_num_threads(2)
    oracle, schedule = mixture(), DiscreteVP()
    procs = {"x": polydiff.GaussianCorruption(polydiff.Continuous((2,)), schedule)}
    predict = oracle.predict_fn(procs)
    z = torch.randn(N_SAMPLES, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = run_polydiff("dpmpp_3m", "logsnr", {}, procs, predict, z, 2000)[0]
    gen = torch.Generator().manual_seed(1)
    exact, exact2 = oracle.sample(N_SAMPLES, generator=gen), oracle.sample(N_SAMPLES, generator=gen)
    sw_gen = lambda: torch.Generator().manual_seed(2)  # noqa: E731
    floor = sliced_wasserstein(exact, exact2, generator=sw_gen())
    denoise = lambda x, a, s: oracle.denoise(x.double(), a.reshape(1, 1).expand(len(x), 1),  # noqa: E731
                                             s.reshape(1, 1).expand(len(x), 1))
    rows = []
    for name, grid_name, options in POLYDIFF:
        label = name + ("" if options.get("lower_order_final", True) else " (lower_order_final=False)")
        row = {"library": "polydiff", "sampler": label, "grid": grid_name}
        for nfe in NFES:
            x, used = run_polydiff(name, grid_name, options, procs, predict, z, nfe)
            row[f"ode_mse@{nfe}"] = float(((x - ref) ** 2).sum(1).mean())
            row[f"sw@{nfe}"] = sliced_wasserstein(x, exact, generator=sw_gen())
            row[f"nfe@{nfe}"] = used
        row["overhead_us_per_nfe"] = overhead_polydiff(name, grid_name, options, procs)
        rows.append(row)
    for name, grid_name, make in DIFFUSERS:
        row = {"library": "diffusers", "sampler": name, "grid": grid_name}
        for nfe in NFES:
            x, used = run_diffusers(make, denoise, z, nfe, name)
            row[f"ode_mse@{nfe}"] = float(((x.double() - ref) ** 2).sum(1).mean())
            row[f"sw@{nfe}"] = sliced_wasserstein(x.double(), exact, generator=sw_gen())
            row[f"nfe@{nfe}"] = used
        row["overhead_us_per_nfe"] = overhead_diffusers(make, name)
        rows.append(row)
    table = pd.DataFrame(rows)
    write(table, floor)
    return table


def header(floor: float) -> str:
    cpu = platform.processor() or platform.machine()
    return (f"Machine: {cpu}, {os.cpu_count()} CPU cores, torch {torch.__version__}, no GPU. "
            f"Date: {datetime.date.today().isoformat()}. SW noise floor (two exact sets of {N_SAMPLES}): "
            f"{floor:.4f}. {DETERMINISTIC_NOTE}; ode_mse = mean squared distance to the reference ODE "
            f"solution from the same noise; overhead = grid + sampling loop with a free denoiser, float32, "
            f"batch {N_SAMPLES}x2, median of {REPEATS}, per network evaluation.")


def overhead_lines(table: pd.DataFrame) -> list[str]:
    """Like-for-like overhead, polydiff vs diffusers, in microseconds per NFE."""
    def cell(library, sampler, grid):
        rows = table[(table.library == library) & (table.sampler == sampler) & (table.grid == grid)]
        return float(rows["overhead_us_per_nfe"].iloc[0])

    lines = []
    for d_name, d_grid, p_name, p_grid in LIKE_FOR_LIKE:
        d, p = cell("diffusers", d_name, d_grid), cell("polydiff", p_name, p_grid)
        lines.append(f"overhead {p_name} ({p_grid}) {p:.0f} us/NFE vs diffusers {d_name} ({d_grid}) {d:.0f} us/NFE "
                     f"({'lower' if p < d else 'NOT lower'})")
    return lines


def write(table: pd.DataFrame, floor: float) -> None:
    cols = ["library", "sampler", "grid"] + [f"ode_mse@{k}" for k in NFES] + [f"sw@{k}" for k in NFES] + [
        "overhead_us_per_nfe"]
    shown = table[cols].copy()
    for c in cols[3:]:
        shown[c] = shown[c].map(lambda v: f"{v:.2e}" if "mse" in c else f"{v:.3f}" if "sw" in c else f"{v:.0f}")
    best = []
    for k in NFES:
        by_lib = table.groupby("library")[f"ode_mse@{k}"].min()
        best.append(f"NFE {k}: best polydiff {by_lib['polydiff']:.2e} vs best diffusers {by_lib['diffusers']:.2e}")
    md = "# Samplers: polydiff vs diffusers\n\n" + header(floor) + "\n\n" + shown.to_markdown(index=False)
    md += "\n\n" + "\n".join(f"- {b}" for b in best + overhead_lines(table)) + "\n"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "samplers.md").write_text(md)
    (OUT / "samplers.csv").write_text(f"# {header(floor)}\n" + table.to_csv(index=False))
    print(md)


if __name__ == "__main__":
    main()
