"""Image metrics and their feature classifier, on scikit-learn digits (8x8, 10 classes) with known answers.

A tiny fake modality stands in for the image modality: pixels are stored in [-1, 1] (the
"continuous" representation) so that every metric's ``to_unit`` conversion is exercised.
The classifier is trained once per module into a temporary cache (``POLYDIFF_CACHE``).
"""
from __future__ import annotations

import json

import numpy as np
import polydiff
import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import load_digits

from polydiff_image import classifier as clf_module
from polydiff_image.classifier import TrainingSettings, feature_classifier
from polydiff_image.metrics import (
    class_accuracy, fd_classifier, frechet_distance, knn_precision_recall, memorisation, metric_specs,
    precision_recall, psnr, psnr_per_image, ssim, ssim_per_image,
)

N_VALIDATION = 500
N_REF = 300
TINY = TrainingSettings(steps=20, min_epochs=1, max_epochs=1)


class FakeDigits:
    """Digits split 1297 train / 500 validation by a fixed permutation; images in [-1, 1]."""

    def __init__(self, *, conditional: bool = False, pairs: dict | None = None, labelled: bool = True,
                 name: str = "digits-test") -> None:
        d = load_digits()
        order = np.random.default_rng(0).permutation(len(d.target))
        self.x = torch.tensor(d.images[order, None] / 16.0, dtype=torch.float32)
        self.y = torch.tensor(d.target[order], dtype=torch.int64)
        self.dataset_name, self.n_classes, self.image_shape = name, 10, (1, 8, 8)
        self.cond_spaces = {"label": polydiff.Discrete((1,), 10)} if conditional else {}
        self.pairs, self.labelled, self.seed = pairs, labelled, 0

    def labelled_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        sl = slice(N_VALIDATION, None) if split == "train" else slice(0, N_VALIDATION)
        return self.x[sl], (self.y[sl] if self.labelled else None)

    def to_unit(self, image: torch.Tensor) -> torch.Tensor:
        return (image + 1.0) / 2.0

    def state(self, split: str, start: int = 0, n: int = N_REF) -> dict[str, torch.Tensor]:
        return {"image": self.labelled_split(split)[0][start:start + n] * 2.0 - 1.0}


SPACES = {"image": polydiff.Continuous((1, 8, 8))}


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("polydiff-cache")
        mp.setenv("POLYDIFF_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def modality() -> FakeDigits:
    m = FakeDigits()
    feature_classifier(m)
    return m


def noised(state: dict[str, torch.Tensor], sigma: float, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = state["image"] + 2.0 * sigma * torch.randn(state["image"].shape, generator=g)
    return {"image": x.clamp(-1.0, 1.0)}


def value(rows: list[dict], name: str) -> float:
    (row,) = [r for r in rows if r["metric"] == name]
    return row["value"]


# --------------------------------------------------------------------------- classifier

def test_classifier_reaches_stated_accuracy_on_digits(modality):
    clf = feature_classifier(modality)
    assert clf.accuracy > 0.9, f"validation accuracy {clf.accuracy:.3f} on 500 digits"
    x, y = modality.labelled_split("validation")
    assert clf.features(x).shape == (N_VALIDATION, clf_module.FEATURE_DIM)
    assert (clf.predict(x) == y).double().mean().item() == pytest.approx(clf.accuracy, abs=1e-12)
    assert clf.metadata["dataset_name"] == "digits-test" and clf.metadata["image_shape"] == [1, 8, 8]


def test_cache_is_reused_and_loaded_with_safetensors(cache, monkeypatch):
    m = FakeDigits(name="digits-cache")
    first = feature_classifier(m, settings=TINY)
    (weights,) = cache.glob("classifiers/digits-cache-1x8x8-seed0-*.safetensors")
    meta_path = weights.with_suffix(".json")
    stamp = (weights.stat().st_mtime_ns, meta_path.stat().st_mtime_ns)

    def no_training(*args, **kwargs):
        raise AssertionError("re-trained although the cache matched")

    monkeypatch.setattr(clf_module, "_train", no_training)
    monkeypatch.setattr(torch, "load", no_training)
    second = feature_classifier(m, settings=TINY)
    assert (weights.stat().st_mtime_ns, meta_path.stat().st_mtime_ns) == stamp
    x = m.labelled_split("validation")[0][:50]
    assert torch.equal(first.features(x), second.features(x))
    assert set(load_file(str(weights))) == set(first.network.state_dict())
    meta = json.loads(meta_path.read_text())
    assert meta["seed"] == 0 and meta["settings"]["steps"] == TINY.steps and "validation_accuracy" in meta
    assert not list(cache.glob("classifiers/*.tmp"))


def test_cache_is_retrained_when_metadata_does_not_match(cache):
    m = FakeDigits(name="digits-stale")
    feature_classifier(m, settings=TINY)
    (meta_path,) = cache.glob("classifiers/digits-stale-1x8x8-seed0-*.json")
    meta = json.loads(meta_path.read_text())
    meta["data_sha1"] = "0" * 40
    meta_path.write_text(json.dumps(meta))
    feature_classifier(m, settings=TINY)
    assert json.loads(meta_path.read_text())["data_sha1"] != "0" * 40
    other = feature_classifier(m, settings=TrainingSettings(steps=10, min_epochs=1, max_epochs=1))
    assert other.metadata["settings"]["steps"] == 10
    assert json.loads(meta_path.read_text())["settings"]["steps"] == 10


def test_classifier_without_labels_is_a_clear_error():
    with pytest.raises(ValueError, match="has no labels"):
        feature_classifier(FakeDigits(labelled=False, name="digits-nolabels"), settings=TINY)


# --------------------------------------------------------------------------- Fréchet distance

def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.5, 2.0, 4), rng.uniform(0.5, 2.0, 4)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    diag = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert diag == pytest.approx(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2), rel=1e-10)
    m1, m2 = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(4), m2 @ m2.T + 0.1 * np.eye(4)
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T
    cross = np.sqrt(np.linalg.eigvalsh(r1 @ s2 @ r1)).sum()  # tr (S1^1/2 S2 S1^1/2)^1/2
    assert frechet_distance(mu1, s1, mu1, s2) == pytest.approx(np.trace(s1 + s2) - 2 * cross, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_fd_classifier_zero_on_itself_and_monotone_in_noise(modality):
    ref = modality.state("validation")
    same = fd_classifier(ref, ref, spaces=SPACES, modality=modality)
    assert same[0]["classifier_accuracy"] > 0.9 and same[0]["field"] == "image"
    scores = [value(fd_classifier(noised(ref, s), ref, spaces=SPACES, modality=modality), "fd_classifier")
              for s in (0.05, 0.1, 0.2, 0.4)]
    assert same[0]["value"] < 1e-6 * scores[0]
    assert all(lo < hi for lo, hi in zip(scores, scores[1:])), scores
    with pytest.raises(ValueError, match="at least 2 images"):
        fd_classifier({"image": ref["image"][:1]}, ref, spaces=SPACES, modality=modality)
    held_out = fd_classifier(modality.state("train"), ref, spaces=SPACES, modality=modality)[0]["value"]
    shifted = {"image": (ref["image"] + 0.6).clamp(-1, 1)}
    assert fd_classifier(shifted, ref, spaces=SPACES, modality=modality)[0]["value"] > 3 * held_out


# --------------------------------------------------------------------------- precision / recall

def test_knn_precision_recall_on_points():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0]])
    assert knn_precision_recall(real, real, k=1) == (1.0, 1.0)
    fake = torch.tensor([[0.5], [10.0], [11.0], [12.0]])  # one of four inside the unit balls
    precision, recall = knn_precision_recall(fake, real, k=1)
    assert precision == 0.25
    # fake radii (k = 1): 9.5, 1, 1, 1; the ball at 0.5 of radius 9.5 covers every real point.
    assert recall == 1.0


def test_precision_recall_self_off_manifold_and_mode_dropped(modality):
    ref = modality.state("validation")
    rows = precision_recall(ref, ref, spaces=SPACES, modality=modality)
    assert (value(rows, "precision"), value(rows, "recall")) == (1.0, 1.0)
    blank = {"image": -torch.ones(N_REF, 1, 8, 8)}
    assert value(precision_recall(blank, ref, spaces=SPACES, modality=modality), "precision") < 0.05
    # Uniform-noise images score about 0.5 here: a small CNN maps them near outlying digits.
    g = torch.Generator().manual_seed(3)
    junk = {"image": torch.rand(N_REF, 1, 8, 8, generator=g) * 2 - 1}
    assert value(precision_recall(junk, ref, spaces=SPACES, modality=modality), "precision") < 0.7
    noisy = [value(precision_recall(noised(ref, s), ref, spaces=SPACES, modality=modality), "precision")
             for s in (0.2, 0.4, 0.8)]
    assert 1.0 > noisy[0] > noisy[1] > noisy[2], noisy
    x, y = modality.labelled_split("train")
    full = {"image": x[:N_REF] * 2 - 1}
    dropped = {"image": x[y < 5][:N_REF] * 2 - 1}
    full_rows = precision_recall(full, ref, spaces=SPACES, modality=modality)
    drop_rows = precision_recall(dropped, ref, spaces=SPACES, modality=modality)
    assert value(drop_rows, "precision") > 0.8
    assert value(drop_rows, "recall") < value(full_rows, "recall") - 0.2, (full_rows, drop_rows)


# --------------------------------------------------------------------------- class accuracy

def test_class_accuracy_pairs_samples_with_validation_labels(modality):
    cond = FakeDigits(conditional=True)
    ref = cond.state("validation")
    rows = class_accuracy(ref, ref, spaces=SPACES, modality=cond)
    x, y = cond.labelled_split("validation")
    expected = (feature_classifier(cond).predict(x[:N_REF]) == y[:N_REF]).double().mean().item()
    assert rows[0]["value"] == pytest.approx(expected, abs=1e-12) and rows[0]["value"] > 0.9
    assert rows[0]["reference_accuracy"] == pytest.approx(expected, abs=1e-12)
    wrong = {"image": ref["image"][torch.argsort(y[:N_REF], stable=True)]}  # right images, wrong pairing
    assert class_accuracy(wrong, ref, spaces=SPACES, modality=cond)[0]["value"] < 0.3
    assert class_accuracy(ref, ref, spaces=SPACES, modality=modality) == []


# --------------------------------------------------------------------------- PSNR / SSIM

def test_psnr_by_hand_and_cap():
    a = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    b = torch.full((2, 1, 8, 8), 0.1, dtype=torch.float64)
    assert psnr_per_image(a, b).tolist() == pytest.approx([20.0, 20.0], abs=1e-9)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 1, 8, 8, generator=g), torch.rand(3, 1, 8, 8, generator=g)
    mse = ((x.double() - y.double()) ** 2).mean(dim=(1, 2, 3))
    assert psnr_per_image(x, y).tolist() == pytest.approx((10 * torch.log10(1 / mse)).tolist(), rel=1e-12)
    assert psnr_per_image(x, x).tolist() == [100.0, 100.0, 100.0]  # capped, not inf


def test_ssim_closed_forms():
    a = torch.full((1, 1, 12, 12), 0.3, dtype=torch.float64)
    b = torch.full((1, 1, 12, 12), 0.5, dtype=torch.float64)
    c1 = 0.01 ** 2
    assert ssim_per_image(a, b).item() == pytest.approx((2 * 0.15 + c1) / (0.09 + 0.25 + c1), rel=1e-10)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(1, 1, 11, 11, generator=g), torch.rand(1, 1, 11, 11, generator=g)
    t = np.arange(11) - 5.0
    w = np.exp(-t ** 2 / (2 * 1.5 ** 2))
    w = np.outer(w, w) / np.outer(w, w).sum()
    xn, yn = x[0, 0].double().numpy(), y[0, 0].double().numpy()
    mx, my = (w * xn).sum(), (w * yn).sum()
    vx, vy, cxy = (w * (xn - mx) ** 2).sum(), (w * (yn - my) ** 2).sum(), (w * (xn - mx) * (yn - my)).sum()
    c2 = 0.03 ** 2
    by_hand = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    assert ssim_per_image(x, y).item() == pytest.approx(by_hand, rel=1e-10)  # one 11x11 window
    assert ssim_per_image(x, x).item() == pytest.approx(1.0, abs=1e-12)


def test_psnr_ssim_rows_only_for_restoration(modality):
    task = FakeDigits(pairs={"image": "degraded"})
    ref = task.state("validation")
    assert value(ssim(ref, ref, spaces=SPACES, modality=task), "ssim") == pytest.approx(1.0, abs=1e-12)
    assert value(psnr(ref, ref, spaces=SPACES, modality=task), "psnr") == 100.0
    scores = [value(ssim(noised(ref, s), ref, spaces=SPACES, modality=task), "ssim") for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(hi > lo for hi, lo in zip(scores, scores[1:])), scores
    p = [value(psnr(noised(ref, s), ref, spaces=SPACES, modality=task), "psnr") for s in (0.02, 0.05, 0.1, 0.2)]
    assert all(hi > lo for hi, lo in zip(p, p[1:])), p
    assert ssim(ref, ref, spaces=SPACES, modality=modality) == []
    assert psnr(ref, ref, spaces=SPACES, modality=modality) == []


# --------------------------------------------------------------------------- memorisation

def test_memorisation_ratio_copies_vs_held_out(modality):
    ref = modality.state("validation", 0, 200)
    copies = {"image": modality.labelled_split("train")[0][:200] * 2 - 1}
    assert value(memorisation(copies, ref, spaces=SPACES, modality=modality), "nearest_train_ratio") == 0.0
    held_out = modality.state("validation", 200, 200)
    ratio = value(memorisation(held_out, ref, spaces=SPACES, modality=modality), "nearest_train_ratio")
    assert 0.85 < ratio < 1.15, ratio
    near_copies = noised(copies, 0.02)
    near = value(memorisation(near_copies, ref, spaces=SPACES, modality=modality), "nearest_train_ratio")
    assert 0.0 < near < 0.5


# --------------------------------------------------------------------------- registration

def test_metric_specs():
    specs = {s.name: s for s in metric_specs()}
    assert set(specs) == {"fd_classifier", "precision_recall", "class_accuracy", "psnr", "ssim", "memorisation"}
    assert all(s.modalities == frozenset({"image"}) and not s.problems() for s in specs.values())
    assert not specs["fd_classifier"].higher_is_better and specs["precision_recall"].higher_is_better
    assert fd_classifier({}, {}, spaces=SPACES, modality=None) == []
