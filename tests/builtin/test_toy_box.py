"""The toy-box modality: data in the unit square touching the walls, its oracle and demo config.

It is a built-in plugin (``builtin.toy_box``); ``tests/test_builtin_conformance.py`` runs
the conformance kit on it.
"""
from __future__ import annotations

import csv
import math

import matplotlib.image
import pytest
import torch

import polydiff
from polydiff.builtin.toy_box import CORNER_WEIGHTS, DATASETS, DEMO_CONFIG, RING_RADII, ToyBoxModality
from polydiff.config import config_from_dict
from polydiff.corruptions.reflected import ReflectedCorruption
from polydiff.errors import ConfigError
from polydiff.evaluation.distances import sliced_wasserstein
from polydiff.runs import check_components
from polydiff.testing.oracles.reflected import ReflectedPointOracle


def _collate(dataset, n: int) -> dict[str, torch.Tensor]:
    return torch.utils.data.default_collate([dataset[i] for i in range(n)])


def _manager() -> polydiff.PluginManager:
    return polydiff.make_plugin_manager(autoload=False)


@pytest.mark.parametrize("dataset", DATASETS)
def test_splits_are_deterministic_inside_the_box_and_touch_the_walls(dataset):
    a, b = ToyBoxModality(dataset, n_train=5000, n_validation=500), ToyBoxModality(dataset, n_train=5000)
    train = a.dataset("train").fields["x"]
    assert train.dtype == torch.float32 and train.shape == (5000, 2)
    assert torch.equal(train, b.dataset("train").fields["x"])
    assert not torch.equal(train, ToyBoxModality(dataset, n_train=5000, seed=1).dataset("train").fields["x"])
    polydiff.validate_state(_collate(a.dataset("validation"), 500), a.spaces, where=f"toy-box {dataset}")
    gap = torch.minimum(train, 1 - train).min(1).values  # distance of each point to the nearest wall
    assert float(gap.min()) >= 0 and float(gap.min()) < 1e-3
    assert float((gap < 0.01).double().mean()) > 0.02, "mass must reach the walls"


def test_corners_have_their_weights_and_squares():
    x = ToyBoxModality("corners").reference(20000, torch.Generator().manual_seed(1))["x"].double()
    high = x > 0.5
    assert bool(((x <= 0.2) | (x >= 0.8)).all())
    corner = torch.tensor([[False, False], [True, False], [True, True], [False, True]])
    fractions = [float((high == c).all(1).double().mean()) for c in corner]
    for got, want in zip(fractions, CORNER_WEIGHTS):
        assert abs(got - want) < 4 * math.sqrt(want * (1 - want) / 20000)


def test_ring_is_uniform_on_the_annulus():
    x = ToyBoxModality("ring").reference(20000, torch.Generator().manual_seed(2))["x"].double()
    radius = (x - 0.5).norm(dim=1)
    r1, r2 = RING_RADII
    assert float(radius.min()) >= r1 - 1e-6 and float(radius.max()) <= r2 + 1e-6
    inner_half = (radius**2 < (r1**2 + r2**2) / 2).double().mean()  # half the area lies inside this radius
    assert abs(float(inner_half) - 0.5) < 4 * math.sqrt(0.25 / 20000)


@pytest.mark.parametrize("dataset", DATASETS)
def test_reference_draws_the_data_law(dataset):
    modality = ToyBoxModality(dataset, n_train=3000)
    fresh = modality.reference(3000, torch.Generator().manual_seed(3))["x"]
    g = torch.Generator().manual_seed(0)
    same = sliced_wasserstein(fresh, modality.dataset("train").fields["x"], generator=g)
    shifted = sliced_wasserstein(fresh + 0.1, modality.dataset("train").fields["x"], generator=g)
    assert same < 0.035 < shifted


def test_unknown_split_and_dataset_are_clear_errors():
    with pytest.raises(ValueError, match="'train', 'validation'"):
        ToyBoxModality(n_train=10, n_validation=10).dataset("test")
    with pytest.raises(ConfigError, match="corners"):
        ToyBoxModality("square")


def test_encode_decode_roundtrip():
    modality = ToyBoxModality("ring", n_train=100, n_validation=50)
    state = _collate(modality.dataset("train"), 100)
    decoded = modality.decode(state)
    assert decoded.shape == (100, 2)
    assert torch.equal(modality.encode(decoded)["x"], state["x"])


def test_artefacts_are_readable_png_and_csv(tmp_path):
    modality = ToyBoxModality("corners", n_train=400, n_validation=300)
    samples = modality.reference(150, torch.Generator().manual_seed(4))
    png, table = sorted(modality.write_artefacts(samples, tmp_path), key=lambda p: p.suffix != ".png")
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0
    with table.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 150 and set(rows[0]) == {"x0", "x1"}
    assert abs(float(rows[7]["x1"]) - float(samples["x"][7, 1])) < 1e-5


def test_oracle_is_the_reflected_denoiser_of_the_training_points():
    modality = ToyBoxModality("corners", n_train=300, n_validation=10)
    oracle = modality.oracle()
    assert isinstance(oracle, ReflectedPointOracle) and oracle.points.shape == (300, 2)
    # sigma(0) = 1e-4: far below the ~0.01 spacing of 300 points, so E[x0 | x_t] is the point itself
    processes = {"x": ReflectedCorruption(modality.spaces["x"], sigma_min=1e-4, field="x")}
    train = modality.dataset("train").fields["x"].double()[:8]
    pred = oracle.predict_fn(processes)({"x": train + 1e-5}, torch.zeros(8, dtype=torch.float64))["x"]
    assert torch.allclose(pred.x0, train, atol=1e-9)


def test_registered_through_hooks_with_a_valid_demo_config():
    manager = _manager()
    spec = manager.registry.get("modality", "toy-box")
    assert spec.factory is ToyBoxModality and spec.demo_config is DEMO_CONFIG
    config = config_from_dict(DEMO_CONFIG, source="toy-box demo config")
    check_components(config, manager)
    experiment = polydiff.build_experiment(config, manager)
    assert isinstance(experiment.processes["x"], ReflectedCorruption)
    batch = _collate(experiment.modality.dataset("train"), 64)
    loss, _ = experiment.loss(experiment.denoiser, batch, generator=torch.Generator().manual_seed(5))
    assert torch.isfinite(loss)
    out = experiment.sample(experiment.denoiser, 64, steps=4, generator=torch.Generator().manual_seed(6))
    assert out.nfe == 8
    polydiff.validate_state(out.state, experiment.spaces, where="untrained toy-box samples")


def test_short_training_lowers_the_reflected_loss(tmp_path):
    from polydiff.training.trainer import train

    raw = {**DEMO_CONFIG, "experiment": {"name": "toy-box-test", "seed": 0, "device": "cpu"},
           "denoiser": {"name": "mlp", "width": 64, "depth": 2},
           "training": {"steps": 300, "batch_size": 128, "lr": 3e-3, "warmup_steps": 0, "ema_decay": 0.5,
                        "log_every": 300, "checkpoint_every": 300, "progress": False}}
    manager = _manager()
    config = config_from_dict(raw, source="toy-box training test")
    fresh = polydiff.build_experiment(config, manager)
    result = train(config, run_dir=tmp_path / "run", manager=manager)
    from polydiff.training.checkpoint import load_run

    trained = load_run(result.run_dir, manager=manager, use_ema=False)

    def held_out(model) -> float:
        g = torch.Generator().manual_seed(7)
        batch = _collate(fresh.modality.dataset("validation"), 1024)
        with torch.no_grad():
            return float(fresh.loss(model, batch, generator=g)[0])

    before, after = held_out(fresh.denoiser), held_out(trained.model)
    assert after < 0.8 * before, (before, after)
