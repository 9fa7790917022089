"""Conditional generation follows its condition, and guidance sharpens it (a small trained model)."""
from __future__ import annotations

import pytest
import torch

import polydiff


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("conditional")
    config = polydiff.config_from_dict({
        "experiment": {"name": "cond", "seed": 0, "run_root": str(root), "device": "cpu"},
        "modality": {"name": "tabular", "dataset": "penguins", "condition_on": ["species"], "target": "island"},
        "corruption": {"name": "masked",
                       "fields": {"num": {"name": "gaussian", "schedule": "vp-cosine", "parametrization": "v"}}},
        "denoiser": {"name": "tabular_mlp", "hidden": [128, 128]},
        "training": {"steps": 400, "batch_size": 128, "lr": 3e-3, "warmup_steps": 20, "ema_decay": 0.9,
                     "log_every": 400, "checkpoint_every": 400, "progress": False, "cond_dropout": 0.1},
        "sampling": {"sampler": "ancestral", "steps": 50},
    })
    polydiff.train(config, run_dir=root / "run")
    return polydiff.load_run(root / "run")


def _sample(run, species: str, n: int = 200, scale: float = 1.0):
    modality = run.experiment.modality
    rows = modality.frame("train")
    cond = modality.encode(rows[rows["species"] == species].head(1), conditions=True)
    labels = {"c_species": cond["c_species"].expand(n, -1)}
    out = run.experiment.sample(run.model, n, cond=labels, guidance_scale=scale,
                                generator=torch.Generator().manual_seed(0))
    return modality.decode({**out.state, **labels})


def test_samples_keep_their_condition_and_follow_its_distribution(run):
    gentoo, adelie = _sample(run, "Gentoo"), _sample(run, "Adelie")
    assert set(gentoo["species"].astype(str)) == {"Gentoo"} and set(adelie["species"].astype(str)) == {"Adelie"}
    real = run.experiment.modality.frame("train")
    gap = real[real["species"] == "Gentoo"]["body_mass_g"].mean() - real[real["species"] == "Adelie"]["body_mass_g"].mean()
    sampled_gap = gentoo["body_mass_g"].astype(float).mean() - adelie["body_mass_g"].astype(float).mean()
    assert sampled_gap > 0.5 * gap  # Gentoo penguins are about 1.4 kg heavier
    assert (adelie["island"].astype(str) != "Biscoe").mean() > 0.5 and (gentoo["island"].astype(str) == "Biscoe").mean() > 0.8


def test_guidance_scale_zero_is_the_unconditional_model(run):
    """CFG at scale w mixes w * conditional + (1 - w) * unconditional: at w = 0 the condition is
    ignored, so "Gentoo" samples are as light as the whole population, at w = 1 they are not."""
    real = run.experiment.modality.frame("train")["body_mass_g"].astype(float).mean()
    conditional = _sample(run, "Gentoo", scale=1.0)["body_mass_g"].astype(float).mean()
    unconditional = _sample(run, "Gentoo", scale=0.0)["body_mass_g"].astype(float).mean()
    assert conditional > unconditional + 400.0 and abs(unconditional - real) < 400.0
