"""A small CNN classifier trained on the modality's own training split: the feature space of the image metrics.

No pretrained Inception weights are available offline, so the Fréchet distance and the
precision / recall of :mod:`polydiff_image.metrics` are computed in the penultimate layer of
this classifier instead ("FD-classifier", in the spirit of the FID of Heusel et al. 2017 and
of the classifier-based "FD" used on MNIST-like data sets). It is trained once per data set,
image shape, seed and training data (SHA-1 of the images and labels), and cached as
safetensors weights plus a JSON metadata sidecar under ``$POLYDIFF_CACHE`` (default
``~/.cache/polydiff``) in ``classifiers/<dataset>-<C>x<H>x<W>-seed<seed>-<sha1[:10]>.*``.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

import polydiff

ARCHITECTURE = "cnn-16-32-64-pool2-fc128-v1"
FEATURE_DIM = 128


@dataclass(frozen=True)
class TrainingSettings:
    """Optimiser settings of the classifier (part of the cache key: a change re-trains).

    Attributes:
        steps: target number of optimiser steps; the epoch count is ``ceil(steps * batch / N)``
            clipped to ``[min_epochs, max_epochs]``.
        batch_size: minibatch size.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        min_epochs, max_epochs: bounds on the number of epochs.
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    min_epochs: int = 3
    max_epochs: int = 30

    def epochs(self, n: int) -> int:
        """The number of epochs over ``n`` training images."""
        wanted = math.ceil(self.steps * self.batch_size / max(n, 1))
        return int(min(self.max_epochs, max(self.min_epochs, wanted)))


class SmallCNN(nn.Module):
    """Three 3x3 convolutions (16, 32, 64 channels; the last two with stride 2), a 2x2 adaptive
    average pool, a 128-unit hidden layer (the features) and a linear head.

    Works for any side length >= 4 (8x8 digits, 28x28 MNIST, 32x32 photo crops).
    """

    def __init__(self, channels: int, n_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(64 * 4, FEATURE_DIM), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_classes)`` of images ``(B, C, H, W)`` in ``[0, 1]``."""
        return self.head(self.body(x))


class FeatureClassifier:
    """A trained :class:`SmallCNN` in evaluation mode, with its metadata.

    Attributes:
        network: the CNN.
        metadata: data set name, image shape, seed, training settings, validation accuracy.
    """

    def __init__(self, network: SmallCNN, metadata: dict[str, Any]) -> None:
        self.network = network.eval()
        self.metadata = metadata

    @property
    def accuracy(self) -> float:
        """Validation accuracy measured on ``labelled_split("validation")`` after training."""
        return float(self.metadata["validation_accuracy"])

    @torch.no_grad()
    def _batched(self, images_unit: torch.Tensor, fn: Any, batch: int = 512) -> torch.Tensor:
        x = torch.as_tensor(images_unit, dtype=torch.float32).cpu()
        return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)])

    def features(self, images_unit: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features.

        Args:
            images_unit: ``(N, C, H, W)`` images in ``[0, 1]``.

        Returns:
            ``(N, 128)`` float32 features (after the ReLU of the hidden layer).
        """
        return self._batched(images_unit, self.network.body)

    def predict(self, images_unit: torch.Tensor) -> torch.Tensor:
        """Predicted labels ``(N,)`` int64 of images ``(N, C, H, W)`` in ``[0, 1]``."""
        return self._batched(images_unit, lambda x: self.network(x).argmax(-1))


def cache_dir() -> Path:
    """``$POLYDIFF_CACHE/classifiers`` (default ``~/.cache/polydiff/classifiers``)."""
    return polydiff.cache_dir("classifiers")


def _fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    # Two "folder" data sets share a name; the hash of the training data tells them apart.
    h = hashlib.sha1(images.contiguous().numpy().tobytes())
    h.update(labels.contiguous().numpy().tobytes())
    return h.hexdigest()


def _training_data(modality: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
    images, labels = modality.labelled_split("train")
    name = getattr(modality, "dataset_name", "?")
    if labels is None:
        raise ValueError(f"image metrics: data set {name!r} has no labels, so the feature classifier "
                         "cannot be trained; use a labelled data set (mnist, digits, or a folder / npz "
                         "with labels) or drop the classifier metrics (fd_classifier, precision_recall, "
                         "class_accuracy) from [evaluation]")
    images = torch.as_tensor(images, dtype=torch.float32).cpu()
    labels = torch.as_tensor(labels, dtype=torch.int64).cpu()
    n_classes = getattr(modality, "n_classes", None) or int(labels.max()) + 1
    return images, labels, int(n_classes)


def _expected_metadata(modality: Any, images: torch.Tensor, labels: torch.Tensor, n_classes: int,
                       seed: int, settings: TrainingSettings) -> dict[str, Any]:
    return {"dataset_name": str(getattr(modality, "dataset_name", "?")),
            "image_shape": list(images.shape[1:]), "n_classes": n_classes, "seed": seed,
            "architecture": ARCHITECTURE, "settings": asdict(settings),
            "n_train": len(images), "data_sha1": _fingerprint(images, labels)}


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _train(images: torch.Tensor, labels: torch.Tensor, n_classes: int, seed: int,
           settings: TrainingSettings) -> SmallCNN:
    # fork_rng keeps the initialisation seeded without touching the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallCNN(images.shape[1], n_classes)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    epochs = settings.epochs(len(images))
    total = epochs * math.ceil(len(images) / settings.batch_size)
    step = 0
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for i in range(0, len(images), settings.batch_size):
            idx = order[i:i + settings.batch_size]
            loss = nn.functional.cross_entropy(net(images[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            _set_lr(opt, settings.lr * 0.5 * (1.0 + math.cos(math.pi * step / total)))
            opt.step()
            step += 1
    return net.eval()


def _validation_accuracy(model: FeatureClassifier, modality: Any) -> float:
    images, labels = modality.labelled_split("validation")
    if labels is None or len(labels) == 0:
        return float("nan")
    return float((model.predict(images) == torch.as_tensor(labels)).double().mean())



def _paths(meta: dict[str, Any]) -> tuple[Path, Path]:
    shape = "x".join(str(s) for s in meta["image_shape"])
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in meta["dataset_name"])
    # The data hash in the name keeps variants of one data set (e.g. quantised grey levels) apart.
    stem = cache_dir() / f"{safe}-{shape}-seed{meta['seed']}-{meta['data_sha1'][:10]}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def _load_cached(weights: Path, meta_path: Path, expected: dict[str, Any]) -> FeatureClassifier | None:
    if not (weights.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        state = load_file(str(weights))
    except (OSError, ValueError, RuntimeError):
        return None
    if {k: meta.get(k) for k in expected} != expected or "validation_accuracy" not in meta:
        return None
    net = SmallCNN(expected["image_shape"][0], expected["n_classes"])
    try:
        net.load_state_dict(state)
    except RuntimeError:
        return None
    return FeatureClassifier(net, meta)


def feature_classifier(modality: Any, *, seed: int | None = None,
                       settings: TrainingSettings | None = None) -> FeatureClassifier:
    """The cached feature classifier of a modality's data set, trained first if needed.

    Trains :class:`SmallCNN` with Adam and a cosine-decayed learning rate on
    ``modality.labelled_split("train")``, measures its accuracy on
    ``labelled_split("validation")`` and caches weights (safetensors) and metadata (JSON),
    both written atomically. A cached classifier is reused only when its metadata (data set
    name, image shape, number of classes, seed, architecture, training settings, size and
    SHA-1 of the training data) matches; otherwise it is re-trained and overwritten.

    Args:
        modality: provides ``labelled_split(split) -> (images (N, C, H, W) float in [0, 1],
            labels (N,) int64 or None)``, ``dataset_name`` and ``n_classes``.
        seed: seeds initialisation and shuffling; default ``modality.seed`` (the split seed,
            so that the classifier never trains on that split's validation items) or 0.
        settings: optimiser settings; default :class:`TrainingSettings()`.

    Returns:
        The trained classifier in evaluation mode.

    Raises:
        ValueError: the training split has no labels.
    """
    settings = settings or TrainingSettings()
    seed = int(getattr(modality, "seed", 0) or 0) if seed is None else int(seed)
    images, labels, n_classes = _training_data(modality)
    expected = _expected_metadata(modality, images, labels, n_classes, seed, settings)
    weights, meta_path = _paths(expected)
    cached = _load_cached(weights, meta_path, expected)
    if cached is not None:
        return cached
    model = FeatureClassifier(_train(images, labels, n_classes, seed, settings), dict(expected))
    model.metadata["validation_accuracy"] = _validation_accuracy(model, modality)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.network.state_dict().items()}
    polydiff.write_atomic(weights, lambda p: save_file(state, str(p)))
    polydiff.write_atomic(meta_path, lambda p: p.write_text(json.dumps(model.metadata, indent=2)))
    return model
