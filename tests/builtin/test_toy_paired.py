"""The paired toy modality: splits, pairs, laws, oracle, artefacts, the kit's modality checks and
the demo config wired through an experiment (registered as a temporary plugin: the lead adds it
to BUILTIN_PLUGINS)."""
from __future__ import annotations

import copy
import csv
import math

import matplotlib.image
import pytest
import torch

import polydiff
from polydiff.builtin.toy_paired import CONTRACTION, DATASETS, DEGRADATION_NOISE, DEMO_CONFIG, ToyPairedModality
from polydiff.errors import ConfigError
from polydiff.testing.oracles.bridge import PairedGaussianOracle

ALL_SPACES = {"x": polydiff.Continuous((2,)), "x1": polydiff.Continuous((2,))}


def _collate(dataset, n: int) -> dict[str, torch.Tensor]:
    return torch.utils.data.default_collate([dataset[i] for i in range(n)])


@pytest.mark.parametrize("dataset", DATASETS)
def test_splits_are_deterministic_disjoint_paired_and_declared(dataset):
    a, b = (ToyPairedModality(dataset, n_train=500, n_validation=200) for _ in range(2))
    train, val = a.dataset("train"), a.dataset("validation")
    assert len(train) == 500 and len(val) == 200
    assert torch.equal(train.fields["x"], b.dataset("train").fields["x"]) and torch.equal(train.fields["x1"], b.dataset("train").fields["x1"])
    assert not torch.equal(train.fields["x"], ToyPairedModality(dataset, n_train=500, seed=1).dataset("train").fields["x"])
    assert not (train.fields["x"][:, None, :] == val.fields["x"][None, :, :]).all(-1).any(), "splits share points"
    batch = _collate(train, 64)
    polydiff.validate_state(batch, ALL_SPACES, where=f"toy-paired {dataset}")
    assert batch["x"].dtype == batch["x1"].dtype == torch.float32
    assert a.pairs == {"x": "x1"} and a.spaces == {"x": ALL_SPACES["x"]} and a.cond_spaces == {"x1": ALL_SPACES["x1"]}


def test_gaussian_pairs_follow_the_oracle_law():
    """n = 100000: every entry of the joint (x0, x1) mean and covariance within 0.02 (SE < 0.006)."""
    ref = ToyPairedModality("gaussian").reference(100000, torch.Generator().manual_seed(1))
    joint = torch.cat([ref["x"], ref["x1"]], dim=1).double()
    oracle = ToyPairedModality("gaussian").oracle()
    assert isinstance(oracle, PairedGaussianOracle)
    mean = torch.cat([oracle.mean, oracle.A @ oracle.mean])
    cross = oracle.cov @ oracle.A.T
    cov = torch.cat([torch.cat([oracle.cov, cross], 1),
                     torch.cat([cross.T, oracle.A @ oracle.cov @ oracle.A.T + oracle.noise_cov], 1)])
    assert torch.allclose(joint.mean(0), mean, atol=0.02) and torch.allclose(torch.cov(joint.T), cov, atol=0.02)


def test_gmm8_degraded_is_a_contraction_plus_noise():
    """The residual x1 - 0.5 x0 has std 0.3 (within 2% at n = 50000) and is uncorrelated with x0."""
    ref = ToyPairedModality("gmm8-degraded").reference(50000, torch.Generator().manual_seed(2))
    resid = (ref["x1"] - CONTRACTION * ref["x"]).double()
    assert ((resid.std(0) / DEGRADATION_NOISE - 1).abs() < 0.02).all()
    corr = torch.corrcoef(torch.cat([resid, ref["x"].double()], 1).T)[:2, 2:]
    assert corr.abs().max() < 5 / math.sqrt(50000)
    radius = ref["x"].norm(dim=1)
    assert abs(float(radius.mean()) - 1.5) < 0.01


def test_clear_errors():
    with pytest.raises(ConfigError, match=r"'gaussian', 'gmm8-degraded'"):
        ToyPairedModality("gmm9")
    with pytest.raises(ValueError, match=r"'train', 'validation'"):
        ToyPairedModality(n_train=10, n_validation=10).dataset("test")
    with pytest.raises(ValueError, match="only the 'gaussian' data set has an exact oracle"):
        ToyPairedModality("gmm8-degraded").oracle()
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        ToyPairedModality().encode(torch.zeros(3, 3).numpy())


def test_encode_decode_roundtrip():
    modality = ToyPairedModality(n_train=100, n_validation=50)
    state = _collate(modality.dataset("train"), 100)
    assert torch.equal(modality.encode(modality.decode(state))["x"], state["x"])


@pytest.mark.parametrize("with_source", [True, False])
def test_artefacts_are_a_three_panel_png_and_a_csv(tmp_path, with_source):
    modality = ToyPairedModality("gmm8-degraded", n_train=300, n_validation=300)
    samples = modality.reference(150, torch.Generator().manual_seed(3))
    if not with_source:
        samples = {"x": samples["x"]}
    png, table = sorted(modality.write_artefacts(samples, tmp_path), key=lambda p: p.suffix != ".png")
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[1] >= 2.5 * image.shape[0] and image.std() > 0  # three panels side by side
    with table.open() as fh:
        rows = list(csv.DictReader(fh))
    columns = {"x_0", "x_1"} | ({"source_0", "source_1"} if with_source else set())
    assert len(rows) == 150 and set(rows[0]) == columns
    assert abs(float(rows[7]["x_1"]) - float(samples["x"][7, 1])) < 1e-4


def test_demo_config_builds_trains_and_samples_through_the_experiment():
    """The experiment pins the bridge at x1 from ``pairs``: a few training steps and a bridge_sde draw."""
    manager = polydiff.make_plugin_manager(autoload=False)
    raw = copy.deepcopy(dict(DEMO_CONFIG))
    raw["modality"] = {**raw["modality"], "n_train": 512, "n_validation": 64}
    raw["experiment"] = {**raw["experiment"], "device": "cpu"}
    raw["sampling"] = {**raw["sampling"], "steps": 8}
    config = polydiff.config_from_dict(raw, source="test")
    exp = polydiff.build_experiment(config, manager)
    batch = _collate(exp.modality.dataset("train"), 64)
    loss, parts = exp.loss(exp.denoiser, batch, generator=torch.Generator().manual_seed(4))
    assert torch.isfinite(loss) and set(parts) == {"loss/x"}
    cond = {"x1": _collate(exp.modality.dataset("validation"), 16)["x1"]}
    out = exp.sample(exp.denoiser, 16, generator=torch.Generator().manual_seed(5), cond=cond)
    assert out.state["x"].shape == (16, 2) and out.nfe == 8 and torch.isfinite(out.state["x"]).all()
