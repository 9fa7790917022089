"""The built-in toy modality: determinism, spaces, artefacts, reference laws and exact oracles."""
from __future__ import annotations

import csv

import matplotlib.image
import pytest
import torch

import polydiff
from polydiff.builtin.toy import DATASETS, DEMO_CONFIG, N_LABELS, ToyModality
from polydiff.config import config_from_dict
from polydiff.errors import ConfigError
from polydiff.evaluation.distances import sliced_wasserstein
from polydiff.runs import check_components
from polydiff.schedules import VPLinear
from polydiff.testing.oracles import GaussianMixtureOracle, PointCloudOracle


def _collate(dataset, n: int) -> dict[str, torch.Tensor]:
    return torch.utils.data.default_collate([dataset[i] for i in range(n)])


@pytest.mark.parametrize("dataset", DATASETS)
def test_splits_are_deterministic_disjoint_and_match_spaces(dataset):
    a, b = ToyModality(dataset, n_train=500, n_validation=200), ToyModality(dataset, n_train=500, n_validation=200)
    train, val = a.dataset("train"), a.dataset("validation")
    assert len(train) == 500 and len(val) == 200
    assert torch.equal(train.fields["x"], b.dataset("train").fields["x"])
    assert not torch.equal(train.fields["x"], ToyModality(dataset, n_train=500, seed=1).dataset("train").fields["x"])
    shared = (train.fields["x"][:, None, :] == val.fields["x"][None, :, :]).all(-1)
    assert not shared.any(), "train and validation splits share points"
    batch = _collate(train, 64)
    polydiff.validate_state(batch, a.spaces, where=f"toy {dataset}")
    assert batch["x"].dtype == torch.float32


@pytest.mark.parametrize("dataset", DATASETS)
def test_conditional_labels_are_declared_discrete(dataset):
    modality = ToyModality(dataset, n_train=300, n_validation=100, conditional=True)
    assert modality.cond_spaces["label"].vocab_size == N_LABELS[dataset]
    batch = _collate(modality.dataset("validation"), 100)
    polydiff.validate_state({"label": batch["label"]}, modality.cond_spaces)
    assert batch["label"].shape == (100, 1) and batch["label"].dtype == torch.int64
    assert len(batch["label"].unique()) > 1


def test_unknown_split_and_dataset_are_clear_errors():
    with pytest.raises(ValueError, match="'train', 'validation'"):
        ToyModality(n_train=10, n_validation=10).dataset("test")
    with pytest.raises(ConfigError, match="gmm8"):
        ToyModality("gmm9")


def test_encode_decode_roundtrip():
    modality = ToyModality("two_moons", n_train=100, n_validation=50)
    state = _collate(modality.dataset("train"), 100)
    decoded = modality.decode(state)
    assert decoded.shape == (100, 2)
    assert torch.equal(modality.encode(decoded)["x"], state["x"])


def test_artefacts_are_readable_png_and_csv(tmp_path):
    modality = ToyModality("checkerboard", n_train=400, n_validation=300, conditional=True)
    samples = modality.reference(150, torch.Generator().manual_seed(3))
    paths = modality.write_artefacts(samples, tmp_path)
    png, table = sorted(paths, key=lambda p: p.suffix != ".png")
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0
    with table.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 150 and set(rows[0]) == {"x0", "x1", "label"}
    assert abs(float(rows[7]["x1"]) - float(samples["x"][7, 1])) < 1e-4


@pytest.mark.parametrize("dataset", DATASETS)
def test_reference_draws_the_data_law(dataset):
    modality = ToyModality(dataset, n_train=3000, n_validation=100)
    fresh = modality.reference(3000, torch.Generator().manual_seed(7))["x"]
    train = modality.dataset("train").fields["x"]
    g = torch.Generator().manual_seed(0)
    same = sliced_wasserstein(fresh, train, generator=g)
    shifted = sliced_wasserstein(fresh + 0.3, train, generator=g)
    assert same < 0.06 < shifted


def _monte_carlo_denoiser(x0: torch.Tensor, x_t: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """Self-normalised importance estimate of E[x0 | x_t] from exact data samples x0 (N, 2)."""
    log_w = -((x_t[:, None, :] - alpha * x0[None]) ** 2).sum(-1) / (2 * sigma**2)
    return torch.softmax(log_w, dim=1) @ x0


@pytest.mark.parametrize("dataset", ["gmm8", "gmm-aniso"])
def test_mixture_oracle_is_the_exact_denoiser(dataset):
    modality = ToyModality(dataset, n_train=10, n_validation=10)
    oracle = modality.oracle()
    assert isinstance(oracle, GaussianMixtureOracle)
    g = torch.Generator().manual_seed(1)
    x0 = modality.reference(200_000, g)["x"].double()
    values = VPLinear()(torch.tensor(0.25, dtype=torch.float64))
    alpha, sigma = float(values.alpha), float(values.sigma)
    x_t = alpha * x0[:16] + sigma * torch.randn(16, 2, generator=g, dtype=torch.float64)
    exact = oracle.denoise(x_t, torch.full((16, 1), alpha, dtype=torch.float64), torch.full((16, 1), sigma,
                                                                                           dtype=torch.float64))
    estimate = _monte_carlo_denoiser(x0, x_t, alpha, sigma)
    assert (exact - estimate).norm(dim=1).max() < 0.03


def test_conditional_oracle_restricts_to_one_component():
    modality = ToyModality("gmm8", n_train=10, n_validation=10)
    oracle = modality.oracle(label=2)
    assert oracle.weights.shape == (1,)
    assert torch.allclose(oracle.mean(), torch.tensor([0.0, 1.5], dtype=torch.float64), atol=1e-12)


def test_point_cloud_oracle_denoises_to_training_points():
    modality = ToyModality("swiss_roll", n_train=500, n_validation=10)
    oracle = modality.oracle()
    assert isinstance(oracle, PointCloudOracle)
    train = modality.dataset("train").fields["x"].double()
    one, tiny = torch.ones(5, 1, dtype=torch.float64), torch.full((5, 1), 1e-4, dtype=torch.float64)
    assert torch.allclose(oracle.denoise(train[:5] + 1e-5, one, tiny), train[:5], atol=1e-9)


def test_registered_through_hooks_with_a_valid_demo_config():
    manager = polydiff.make_plugin_manager(autoload=False)
    spec = manager.registry.get("modality", "toy")
    assert spec.factory is ToyModality and spec.demo_config is DEMO_CONFIG
    config = config_from_dict(DEMO_CONFIG, source="toy demo config")
    check_components(config, manager)
    experiment = polydiff.build_experiment(config, manager)
    assert set(experiment.processes) == {"x"}
