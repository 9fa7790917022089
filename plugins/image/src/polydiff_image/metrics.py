"""Image sample-quality metrics: FD and precision / recall in a classifier's feature space,
class accuracy of conditional samples, PSNR and SSIM for restoration, and memorisation.

Every metric has the core signature ``fn(samples, reference, *, spaces, generator=None,
modality=None) -> list[row]`` with tidy rows ``{"metric": name, "field": "image", "value":
float, ...}``, converts both States with ``modality.to_unit(state["image"])`` to ``[0, 1]``
first, and returns no rows when the ``"image"`` field or the modality is missing.

Notation:
    ======== ==================================================================
    x_i      sample i, ``(C, H, W)`` in [0, 1]
    y_i      reference item i (validation item i of the modality)
    phi      penultimate-layer features of :mod:`polydiff_image.classifier`
    mu, S    mean and covariance of a set of features
    k        neighbourhood size of the k-NN manifold estimate
    ======== ==================================================================
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import polydiff
import scipy.linalg
import torch

from polydiff_image.classifier import feature_classifier

FIELD = "image"
PSNR_CAP_DB = 100.0
"""PSNR of one image pair is capped here (MSE <= 1e-10): identical images give 100 dB, not inf."""


def _unit_pair(samples: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor],
               modality: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    if modality is None or FIELD not in samples or FIELD not in reference:
        return None
    a = modality.to_unit(samples[FIELD].detach().cpu()).float()
    b = modality.to_unit(reference[FIELD].detach().cpu()).float()
    return a, b


def _row(metric: str, value: float, **extra: Any) -> dict[str, Any]:
    return {"metric": metric, "field": FIELD, "value": float(value), **extra}


# ---------------------------------------------------------------------------
# Fréchet distance in classifier features
# ---------------------------------------------------------------------------

def gaussian_fit(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(F,)`` and unbiased covariance ``(F, F)``, float64, of features ``(N, F)``, N >= 2."""
    x = np.asarray(features, dtype=np.float64)
    if len(x) < 2:
        raise ValueError(f"fd_classifier: a Gaussian fit needs at least 2 images, got {len(x)}; "
                         "raise [evaluation] n_samples")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein squared) distance between two Gaussians (Heusel et al. 2017, eq. 6;
    Dowson and Landau 1982).

    ``d^2 = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})``, with the matrix square root of
    ``scipy.linalg.sqrtm`` in float64. When it is not finite (singular product) ``1e-6 I`` is
    added to both covariances; the imaginary part that round-off leaves in the square root is
    discarded.

    Args:
        mu1, mu2: means ``(F,)``.
        s1, s2: covariances ``(F, F)``.

    Returns:
        The distance, clipped at 0 against round-off.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(s1, np.float64)), np.atleast_2d(np.asarray(s2, np.float64))
    with warnings.catch_warnings():
        # Dead ReLU features make the covariances singular: expected, and sqrtm stays accurate.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(s1 @ s2)
        if not np.all(np.isfinite(root)):
            eye = 1e-6 * np.eye(len(s1))
            root = scipy.linalg.sqrtm((s1 + eye) @ (s2 + eye))
    root = np.real(root)
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(root)), 0.0)


def fd_classifier(samples: polydiff.State, reference: polydiff.State, *, spaces: Mapping[str, polydiff.Space],
                  generator: torch.Generator | None = None, modality: Any = None) -> list[dict[str, Any]]:
    """The "FD-classifier": Fréchet distance between Gaussian fits of the penultimate-layer
    features phi of :func:`polydiff_image.classifier.feature_classifier` for samples and
    reference. It is the formula of the FID (Heusel et al. 2017) in a small CNN trained on the
    modality's own training split, NOT the FID (no Inception network): values are comparable
    only between runs on the same data set, image shape and classifier seed.

    Args:
        samples, reference: States with ``"image"`` ``(N, C, H, W)`` in the modality's representation.
        spaces: the diffused fields' spaces (unused beyond the contract).
        generator: unused (deterministic).
        modality: the image modality (required; no rows without it).

    Returns:
        One row ``fd_classifier`` with extra key ``classifier_accuracy`` (validation accuracy).
    """
    pair = _unit_pair(samples, reference, modality)
    if pair is None:
        return []
    clf = feature_classifier(modality)
    fa, fb = clf.features(pair[0]), clf.features(pair[1])
    value = frechet_distance(*gaussian_fit(fa), *gaussian_fit(fb))
    return [_row("fd_classifier", value, classifier_accuracy=clf.accuracy, n=len(fa))]


# ---------------------------------------------------------------------------
# k-NN precision and recall
# ---------------------------------------------------------------------------

def _knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    # Column 0 of the sorted self-distances is the point itself (distance 0).
    d = torch.cdist(x, x)
    return d.kthvalue(min(k + 1, len(x)), dim=1).values


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    inside = torch.cdist(points, centres) <= radii[None, :]
    return float(inside.any(dim=1).double().mean())


def knn_precision_recall(fake: torch.Tensor, real: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall of Kynkäänniemi et al. 2019 (eqs. 1-3).

    The manifold of a set is the union of balls around its points of radius the distance to
    the k-th nearest neighbour within the set. Precision = fraction of fake points inside the
    real manifold; recall = fraction of real points inside the fake manifold.

    Args:
        fake: ``(N, F)`` sample features.
        real: ``(M, F)`` reference features.
        k: neighbourhood size (the paper uses 3).

    Returns:
        ``(precision, recall)``, each in [0, 1].
    """
    fake, real = fake.double(), real.double()
    precision = _coverage(fake, real, _knn_radii(real, k))
    recall = _coverage(real, fake, _knn_radii(fake, k))
    return precision, recall


def precision_recall(samples: polydiff.State, reference: polydiff.State, *, spaces: Mapping[str, polydiff.Space],
                     generator: torch.Generator | None = None, modality: Any = None,
                     k: int = 3) -> list[dict[str, Any]]:
    """k-NN manifold precision and recall (Kynkäänniemi et al. 2019, k = 3) in the feature
    space of the FD-classifier (see :func:`fd_classifier`).

    Args:
        samples, reference: States with ``"image"`` ``(N, C, H, W)``.
        spaces: the diffused fields' spaces.
        generator: unused (deterministic).
        modality: the image modality.
        k: neighbourhood size.

    Returns:
        Two rows, ``precision`` and ``recall`` (higher is better), with extra key ``k``.
    """
    pair = _unit_pair(samples, reference, modality)
    if pair is None:
        return []
    clf = feature_classifier(modality)
    p, r = knn_precision_recall(clf.features(pair[0]), clf.features(pair[1]), k)
    return [_row("precision", p, k=k), _row("recall", r, k=k)]


# ---------------------------------------------------------------------------
# Class accuracy of conditional samples
# ---------------------------------------------------------------------------

def _is_conditional(modality: Any) -> bool:
    return "label" in (getattr(modality, "cond_spaces", None) or {}) or bool(getattr(modality, "conditional", False))


def class_accuracy(samples: polydiff.State, reference: polydiff.State, *, spaces: Mapping[str, polydiff.Space],
                   generator: torch.Generator | None = None, modality: Any = None) -> list[dict[str, Any]]:
    """Accuracy of the FD-classifier on class-conditional samples against the labels they
    were conditioned on (the "classification accuracy" of conditional generators).

    Pairing: the core passes only diffused fields, so the conditions are recovered by index:
    sample i was drawn with the ``"label"`` of validation item i, and the reference batch is
    the first n validation items. The labels are therefore ``labelled_split("validation")[1][:n]``,
    and ``accuracy = mean_i [pred(x_i) == label_i]``.

    Args:
        samples, reference: States with ``"image"`` ``(N, C, H, W)``, paired by index.
        spaces: the diffused fields' spaces.
        generator: unused.
        modality: the image modality; no rows unless it is class-conditional (a ``"label"``
            conditioning field) and its validation split has labels.

    Returns:
        One row ``class_accuracy`` with extra keys ``reference_accuracy`` (the classifier on
        the reference images, the attainable ceiling) and ``classifier_accuracy``.
    """
    pair = _unit_pair(samples, reference, modality)
    if pair is None or not _is_conditional(modality):
        return []
    labels = modality.labelled_split("validation")[1]
    n, m = len(pair[0]), len(pair[1])
    if labels is None or len(labels) < max(n, m):
        return []
    labels = torch.as_tensor(labels)
    clf = feature_classifier(modality)
    acc = (clf.predict(pair[0]) == labels[:n]).double().mean()
    ref = (clf.predict(pair[1]) == labels[:m]).double().mean()
    return [_row("class_accuracy", acc, reference_accuracy=float(ref), classifier_accuracy=clf.accuracy)]


# ---------------------------------------------------------------------------
# Restoration: PSNR and SSIM, paired by index
# ---------------------------------------------------------------------------

def psnr_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio ``10 log10(1 / MSE)`` (peak 1) per image pair.

    Args:
        a, b: ``(N, C, H, W)`` in [0, 1].

    Returns:
        ``(N,)`` float64 decibels, capped at :data:`PSNR_CAP_DB` (identical images).
    """
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(1)
    return (10.0 * torch.log10(1.0 / mse.clamp_min(10.0 ** (-PSNR_CAP_DB / 10.0)))).clamp_max(PSNR_CAP_DB)


def _gaussian_window(size: int, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x.pow(2) / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_per_image(a: torch.Tensor, b: torch.Tensor, *, window: int = 11, sigma: float = 1.5,
                   k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004, eq. 13; mean SSIM, eq. 17) per image pair.

    Local weighted means, variances and covariance under a Gaussian window (11 x 11,
    sigma 1.5, "valid" positions only), ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with L = 1, averaged
    over positions and channels. Images smaller than the window use the largest odd window
    that fits (7 x 7 on 8 x 8 digits).

    Args:
        a, b: ``(N, C, H, W)`` in [0, 1].

    Returns:
        ``(N,)`` float64; 1 for identical images.
    """
    a, b = a.double(), b.double()
    c = a.shape[1]
    size = min(window, *(s - (1 - s % 2) for s in a.shape[-2:]))
    w = _gaussian_window(size, sigma).expand(c, 1, size, size)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x, w, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = k1 ** 2, k2 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def _restoration_pair(samples: polydiff.State, reference: polydiff.State,
                      modality: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    if not getattr(modality, "pairs", None):
        return None
    pair = _unit_pair(samples, reference, modality)
    if pair is None or len(pair[0]) != len(pair[1]):
        return None
    return pair


def psnr(samples: polydiff.State, reference: polydiff.State, *, spaces: Mapping[str, polydiff.Space],
         generator: torch.Generator | None = None, modality: Any = None) -> list[dict[str, Any]]:
    """Mean PSNR (dB, peak 1, capped at 100 dB per image) of restored samples against the clean
    reference images, paired by index (sample i restores reference item i's degraded image).

    Args:
        samples, reference: States with ``"image"`` ``(N, C, H, W)``, paired by index.
        spaces: the diffused fields' spaces.
        generator: unused (deterministic).
        modality: the image modality.

    Returns:
        One row ``psnr`` (higher is better) when the modality has a restoration task
        (``modality.pairs``), else no rows.
    """
    pair = _restoration_pair(samples, reference, modality)
    return [] if pair is None else [_row("psnr", psnr_per_image(*pair).mean())]


def ssim(samples: polydiff.State, reference: polydiff.State, *, spaces: Mapping[str, polydiff.Space],
         generator: torch.Generator | None = None, modality: Any = None) -> list[dict[str, Any]]:
    """Mean SSIM (Wang et al. 2004; Gaussian window 11, sigma 1.5, K1 = 0.01, K2 = 0.03) of
    restored samples against the clean reference images, paired by index.

    Args:
        samples, reference: States with ``"image"`` ``(N, C, H, W)``, paired by index.
        spaces: the diffused fields' spaces.
        generator: unused (deterministic).
        modality: the image modality.

    Returns:
        One row ``ssim`` (higher is better) when the modality has a restoration task, else no rows.
    """
    pair = _restoration_pair(samples, reference, modality)
    return [] if pair is None else [_row("ssim", ssim_per_image(*pair).mean())]


# ---------------------------------------------------------------------------
# Memorisation
# ---------------------------------------------------------------------------

def nearest_distances(queries: torch.Tensor, bank: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Euclidean distance ``(N,)`` of each flattened query ``(N, ...)`` to its nearest row of ``bank`` ``(M, ...)``."""
    q, m = queries.flatten(1).double(), bank.flatten(1).double()
    return torch.cat([torch.cdist(q[i:i + chunk], m).min(dim=1).values for i in range(0, len(q), chunk)])


def memorisation(samples: polydiff.State, reference: polydiff.State, *, spaces: Mapping[str, polydiff.Space],
                 generator: torch.Generator | None = None, modality: Any = None) -> list[dict[str, Any]]:
    """Nearest-training-image distance ratio, a copy detector in the spirit of the
    nearest-neighbour checks of Carlini et al. 2023 and Somepalli et al. 2023.

    ``ratio = median_i min_t ||x_i - t|| / median_j min_t ||y_j - t||`` in pixel space ([0, 1]),
    t over the training images, y over the reference (held-out validation) images. A ratio
    well below 1 means the samples sit closer to training images than fresh data does: they
    copy the training set. About 1 for a model that generalises. Registered with
    ``higher_is_better=True`` because it scores copying (lower = more copying); a ratio
    above 1 (samples far from any data) is a quality problem the other metrics see.

    Args:
        samples, reference: States with ``"image"`` ``(N, C, H, W)``.
        spaces: the diffused fields' spaces.
        generator: unused (deterministic).
        modality: the image modality.

    Returns:
        One row ``nearest_train_ratio`` with extra keys ``median_sample_distance`` and
        ``median_reference_distance``; no rows without a modality.
    """
    pair = _unit_pair(samples, reference, modality)
    if pair is None:
        return []
    train = torch.as_tensor(modality.labelled_split("train")[0], dtype=torch.float32)
    ds = nearest_distances(pair[0], train).median()
    dr = nearest_distances(pair[1], train).median()
    ratio = float(ds / dr) if dr > 0 else math.inf
    return [_row("nearest_train_ratio", ratio, median_sample_distance=float(ds),
                 median_reference_distance=float(dr))]


def metric_specs() -> Iterator[polydiff.MetricSpec]:
    """The image metrics, each restricted to the ``image`` modality."""
    image = frozenset({"image"})
    yield polydiff.MetricSpec(name="fd_classifier", summary="Fréchet distance in a small CNN's features trained "
                              "on the data set (Heusel et al. 2017 formula; not FID)", function=fd_classifier,
                              modalities=image)
    yield polydiff.MetricSpec(name="precision_recall", summary="k-NN manifold precision and recall, k = 3, in "
                              "the classifier's features (Kynkäänniemi et al. 2019)", function=precision_recall,
                              modalities=image, higher_is_better=True)
    yield polydiff.MetricSpec(name="class_accuracy", summary="classifier accuracy of class-conditional samples "
                              "against their conditioning labels", function=class_accuracy, modalities=image,
                              higher_is_better=True, kit_options={"conditional": True})
    yield polydiff.MetricSpec(name="psnr", summary="PSNR of restored images against the clean reference, "
                              "paired by index", function=psnr, modalities=image, higher_is_better=True,
                              kit_options={"task": "denoise"})
    yield polydiff.MetricSpec(name="ssim", summary="SSIM (Wang et al. 2004; Gaussian window 11, sigma 1.5) of "
                              "restored images against the clean reference", function=ssim, modalities=image,
                              higher_is_better=True, kit_options={"task": "denoise"})
    yield polydiff.MetricSpec(name="memorisation", summary="median nearest-training-image distance of samples "
                              "over that of held-out images", function=memorisation, modalities=image,
                              higher_is_better=True)
