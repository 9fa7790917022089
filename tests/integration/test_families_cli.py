"""Every corruption family runs from the command line: train, sample, evaluate and compare.

Each example config is trained for a few steps (the point is the wiring, not quality) and
sampled with a sampler of its family; evaluation writes the sample metrics and, for the
discrete processes, the NELBO in bits per token.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file

from polydiff.cli import main

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.xdist_group("families-cli")
TINY = ["training.steps=20", "training.log_every=10", "training.checkpoint_every=1000", "training.warmup_steps=0",
        "evaluation.n_samples=100", "sampling.steps=6", "training.batch_size=64"]

CASES = {
    # example: (sampler for `polydiff sample`, fields written, metrics expected from `evaluate`)
    "toy_masked.toml": ("masked_confidence", {"tokens"}, {"sequence_tv", "token_tv", "nelbo_bits_per_token"}),
    "toy_uniform.toml": ("ancestral", {"tokens"}, {"sequence_tv", "nelbo_bits_per_token"}),
    "toy_reflected.toml": ("reflected_sde", {"x"}, {"sliced_wasserstein", "mmd"}),
    "toy_bridge.toml": ("bridge_ode", {"x"}, {"sliced_wasserstein", "mean_error"}),
    "toy_mixed.toml": ("ancestral", {"x", "label"}, {"sliced_wasserstein", "mmd"}),
}


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.mark.parametrize("example", sorted(CASES))
def test_train_sample_evaluate(example, tmp_path, capsys):
    sampler, fields, metrics = CASES[example]
    run = tmp_path / "run"
    assert main(["train", str(ROOT / "examples" / example), *_sets(TINY), "--run-dir", str(run)]) == 0
    out = tmp_path / "samples"
    assert main(["sample", str(run), "--n", "40", "--sampler", sampler, "--steps", "5", "--out", str(out)]) == 0
    samples = load_file(str(out / "samples.safetensors"))
    assert set(samples) == fields and all(v.shape[0] == 40 for v in samples.values())
    info = json.loads((out / "info.json").read_text())
    assert info["sampler"] == sampler and info["nfe"] > 0
    assert list(out.glob("*.png")) and list(out.glob("*.csv"))
    assert main(["evaluate", str(run), "--n", "100", "--steps", "5"]) == 0
    folder, = (run / "evaluation").iterdir()
    table = pd.read_csv(folder / "metrics.csv")
    assert metrics <= set(table["metric"]), set(table["metric"])
    assert table["value"].map(math.isfinite).all()


def test_a_sampler_of_another_family_fails_before_training(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", str(ROOT / "examples" / "toy_reflected.toml"), *_sets([*TINY, "sampling.sampler=dpmpp_2m"]),
            "--run-dir", str(run)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "dpmpp_2m" in err and "'x'" in err and "reflected" in err and "Samplers that fit" in err
    assert not (run / "checkpoints").exists()


def test_compare_masked_against_uniform(tmp_path):
    out = tmp_path / "compare"
    grid = tmp_path / "grid.toml"
    grid.write_text((ROOT / "examples" / "compare_discrete.toml").read_text()
                    .replace('base = "toy_masked.toml"', f'base = "{(ROOT / "examples" / "toy_masked.toml").as_posix()}"')
                    .replace("steps = 800", "steps = 20\nbatch_size = 64")
                    .replace('"sampling.steps" = [8, 32, 128]', '"sampling.steps" = [4, 8]')
                    .replace('"experiment.seed" = [0, 1]', '"experiment.seed" = [0]')
                    .replace("n_samples = 2000", "n_samples = 100"))
    assert main(["compare", str(grid), "--out", str(out)]) == 0
    table = pd.read_csv(out / "results.csv")
    assert set(table["corruption.name"]) == {"masked", "uniform"}
    assert {"sequence_tv", "token_tv"} <= set(table["metric"])
    assert (out / "results.md").is_file()
