"""Comparison grids: expansion, validation before running, the tidy table, pivot and plots."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from polydiff.cli import main
from polydiff.compare import (combinations, load_grid, normalise_grid, pivot, preflight, run_grid,
                              split_keys)
from polydiff.errors import ConfigError
from polydiff.plugins import make_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("compare")   # one worker trains the shared module fixture
BASE_TOML = """
[modality]
name = "toy"
dataset = "gmm8"
[denoiser]
width = 32
depth = 2
[training]
steps = 30
log_every = 10
checkpoint_every = 1000
[sampling]
sampler = "euler"
n = 100
[evaluation]
n_samples = 150
metrics = ["sliced_wasserstein", "mmd"]
"""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def grid_result(tmp_path_factory):
    """A 2 x 2 grid (two schedules to train x two step counts to sample) run through the CLI."""
    folder = tmp_path_factory.mktemp("compare")
    (folder / "base.toml").write_text(BASE_TOML)
    (folder / "grid.toml").write_text('base = "base.toml"\n[grid]\n"corruption.schedule" = ["edm", "flow"]\n'
                                      '"sampling.steps" = [3, 6]\n')
    out = folder / "out"
    assert main(["compare", str(folder / "grid.toml"), "--out", str(out)]) == 0
    return out


def test_grid_writes_tidy_csv_with_expected_rows(grid_result):
    table = pd.read_csv(grid_result / "results.csv")
    assert len(table) == 2 * 2 * 2                    # schedules x step counts x metrics
    for column in ["run", "corruption.schedule", "sampling.sampler", "sampling.steps", "nfe", "metric", "value",
                   "seconds", "train_seconds"]:
        assert column in table.columns
    assert sorted(table["corruption.schedule"].unique()) == ["edm", "flow"]
    assert set(table["metric"]) == {"sliced_wasserstein", "mmd"}
    assert (table["nfe"] == table["sampling.steps"]).all()      # euler: one evaluation per step
    assert table["value"].map(math.isfinite).all()
    assert table.groupby(["corruption.schedule", "sampling.steps", "metric"]).size().eq(1).all()


def test_one_model_trained_per_training_configuration(grid_result):
    table = pd.read_csv(grid_result / "results.csv")
    runs = sorted(p.name for p in (grid_result / "runs").iterdir())
    assert len(runs) == 2 and sorted(table["run"].unique()) == runs
    assert table.groupby("run")["corruption.schedule"].nunique().eq(1).all()


def test_grid_writes_markdown_and_plots(grid_result):
    markdown = (grid_result / "results.md").read_text()
    assert "sliced_wasserstein" in markdown and "flow" in markdown and "edm" in markdown
    for name in ("loss_curves.png", "metric_vs_nfe.png"):
        data = (grid_result / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_pivot_reports_mean_and_std_over_seeds():
    rows = [{"run": f"r{seed}", "corruption.schedule": "edm", "experiment.seed": seed, "sampling.sampler": "euler",
             "sampling.steps": 5, "nfe": 5, "metric": "mmd", "value": value, "seconds": 0.1, "train_seconds": 1.0}
            for seed, value in ((0, 1.0), (1, 3.0))]
    wide = pivot(pd.DataFrame(rows), ["corruption.schedule", "experiment.seed"], ["sampling.sampler",
                                                                                  "sampling.steps"])
    assert len(wide) == 1 and "experiment.seed" not in wide.columns
    assert wide.loc[0, "mmd"] == "2 ± 1.4"
    assert wide.loc[0, "nfe"] == 5


def test_expansion_and_key_split():
    grid = {"corruption.schedule": ["edm", "flow"], "sampling.steps": [5, 10, 20], "experiment.seed": [0, 1]}
    training, sampling = split_keys(grid)
    assert training == ["corruption.schedule", "experiment.seed"] and sampling == ["sampling.steps"]
    assert len(combinations(grid, training)) == 4 and len(combinations(grid, list(grid))) == 12
    assert combinations(grid, training)[1] == {"corruption.schedule": "edm", "experiment.seed": 1}


def test_grid_file_tables_merge_into_base(tmp_path):
    (tmp_path / "base.toml").write_text(BASE_TOML)
    (tmp_path / "g.toml").write_text('base = "base.toml"\n[training]\nsteps = 7\n[grid]\n"sampling.steps" = [1]\n')
    grid = load_grid(tmp_path / "g.toml")
    assert grid["base"]["training"] == {"steps": 7, "log_every": 10, "checkpoint_every": 1000}
    assert grid["base"]["modality"]["name"] == "toy"


@pytest.mark.parametrize("raw, needle", [
    ({"modality": {"name": "toy"}}, "needs a non-empty [grid] table"),
    ({"modality": {"name": "toy"}, "grid": {"steps": [1]}}, "must be a dotted config key"),
    ({"modality": {"name": "toy"}, "grid": {"sampling.steps": 5}}, "must be a non-empty list"),
    ({"base": "missing.toml", "grid": {"sampling.steps": [5]}}, "does not exist"),
])
def test_malformed_grids(raw, needle, tmp_path):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        normalise_grid(raw, root=tmp_path)


def test_uninstalled_plugin_fails_before_anything_runs(tmp_path):
    base = {"modality": {"name": "toy"}, "training": {"steps": 30}}
    grid = {"base": base, "grid": {"modality.name": ["toy", "imagez"], "sampling.sampler": ["euler", "eulr"]}}
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as info:
        run_grid(grid, out)
    message = str(info.value)
    assert "unknown modality 'imagez'" in message and "polydiff plugins install" in message
    assert "Did you mean 'euler'" in message
    assert not out.exists()


def test_bad_value_in_grid_names_the_combination(tmp_path):
    grid = normalise_grid({"modality": {"name": "toy"}, "grid": {"training.steps": [10, -1]}})
    with pytest.raises(ConfigError, match=r"training.steps=-1.*must be positive"):
        preflight(grid, make_plugin_manager())


def test_example_grid_is_valid():
    grid = load_grid(ROOT / "examples" / "compare_toy.toml")
    preflight(grid, make_plugin_manager())
    training, sampling = split_keys(grid["grid"])
    assert len(combinations(grid["grid"], training)) == 4 and len(combinations(grid["grid"], sampling)) == 6
