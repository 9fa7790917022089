"""The core's own modality: two-dimensional toy data whose law is known exactly.

Registered as ``"toy"`` through ``polydiff_modalities``, exactly like a plugin's modality.
Every data set is ``x = base + noise * N(0, I)`` in its final (scaled) coordinates, drawn
from a seeded ``torch.Generator``:

================  ======================================================  ========  ======
data set          base law                                                 noise     labels
================  ======================================================  ========  ======
``gmm8``          8 equal-weight points on the circle of radius 1.5         0.1      8
                  (so 8 isotropic Gaussians N(mu_k, noise^2 I))
``gmm-aniso``     3 anisotropic Gaussians, weights 0.5 / 0.3 / 0.2          0        3
                  (noise^2 I is added to each covariance)
``checkerboard``  uniform on the 8 black squares of a 4x4 board in          0        8
                  [-2, 2]^2 (square (i, j) is black when i + j is even)
``two_moons``     the two half circles of scikit-learn's ``make_moons``,    0.08     2
                  centred at (0.5, 0.25) and divided by 0.87
``swiss_roll``    (s cos s, s sin s) / 7 with s = 1.5 pi (1 + 2u),          0.05     4
                  u ~ U(0, 1); label = floor(4u)
================  ======================================================  ========  ======

The training split uses seed ``2 * seed`` and the validation split ``2 * seed + 1``, so the
splits of every seed are drawn from disjoint streams.

Oracles (``ToyModality.oracle``): for the mixtures, ``GaussianMixtureOracle`` is the exact
E[x0 | x_t] of the data law. For the other data sets it is a ``PointCloudOracle`` over the
training points: the exact denoiser of the *empirical* training distribution (sampling it
exactly reproduces training points, i.e. it memorises; its memory is ``B * n_train * 2``
float64 numbers per call).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.data import FieldsDataset
from polydiff.errors import ConfigError
from polydiff.builtin.toy_points import Panel, decode_points, encode_points, scatter_panels
from polydiff.hookspecs import hookimpl
from polydiff.spaces import Continuous, Discrete, Space, State
from polydiff.specs import ModalitySpec
from polydiff.testing.oracles import GaussianMixtureOracle, PointCloudOracle

DATASETS = ("gmm8", "gmm-aniso", "checkerboard", "two_moons", "swiss_roll")
DEFAULT_NOISE = {"gmm8": 0.1, "gmm-aniso": 0.0, "checkerboard": 0.0, "two_moons": 0.08, "swiss_roll": 0.05}
N_LABELS = {"gmm8": 8, "gmm-aniso": 3, "checkerboard": 8, "two_moons": 2, "swiss_roll": 4}
SPLITS = ("train", "validation")
AXIS_LIMIT = 2.5
"""Every data set lies (essentially) inside [-2.5, 2.5]^2; plots use these fixed axes."""

GMM8_RADIUS = 1.5
MOONS_CENTER, MOONS_SCALE = (0.5, 0.25), 0.87
SWISS_ROLL_SCALE = 7.0


def gmm_parameters(dataset: str, noise: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights ``(K,)``, means ``(K, 2)`` and covariances ``(K, 2, 2)`` (float64) of a mixture data set."""
    eye = torch.eye(2, dtype=torch.float64)
    if dataset == "gmm8":
        angle = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        means = GMM8_RADIUS * torch.stack([angle.cos(), angle.sin()], dim=1)
        return torch.full((8,), 1 / 8, dtype=torch.float64), means, (noise**2 * eye).expand(8, 2, 2).clone()
    if dataset == "gmm-aniso":
        means = torch.tensor([[-1.0, -0.5], [1.0, -0.5], [0.0, 1.2]], dtype=torch.float64)
        rot = [torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
               for a in (math.pi / 4, -math.pi / 4, 0.0)]
        scales = [torch.diag(torch.tensor(s, dtype=torch.float64)) for s in ([0.45, 0.08], [0.4, 0.12], [0.6, 0.15])]
        covs = torch.stack([r @ s**2 @ r.T + noise**2 * eye for r, s in zip(rot, scales)])
        return torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), means, covs
    raise ValueError(f"{dataset!r} is not a Gaussian-mixture data set; mixtures: ['gmm8', 'gmm-aniso']")


def _draw_gmm(dataset: str, n: int, noise: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    weights, means, covs = gmm_parameters(dataset, noise)
    label = torch.multinomial(weights, n, replacement=True, generator=g)
    z = torch.randn(n, 2, generator=g, dtype=torch.float64)
    chol = torch.linalg.cholesky(covs + 1e-300 * torch.eye(2, dtype=torch.float64))  # floor: noise may be 0
    return means[label] + torch.einsum("nij,nj->ni", chol[label], z), label


def _draw_checkerboard(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    black = torch.tensor([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0], dtype=torch.float64)
    label = torch.randint(len(black), (n,), generator=g)
    return black[label] - 2.0 + torch.rand(n, 2, generator=g, dtype=torch.float64), label


def _draw_two_moons(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    label = torch.randint(2, (n,), generator=g)
    angle = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    outer = torch.stack([angle.cos(), angle.sin()], dim=1)
    inner = torch.stack([1 - angle.cos(), 0.5 - angle.sin()], dim=1)
    x = torch.where(label[:, None] == 0, outer, inner)
    return (x - torch.tensor(MOONS_CENTER, dtype=torch.float64)) / MOONS_SCALE, label


def _draw_swiss_roll(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    u = torch.rand(n, generator=g, dtype=torch.float64)
    s = 1.5 * math.pi * (1 + 2 * u)
    return torch.stack([s * s.cos(), s * s.sin()], dim=1) / SWISS_ROLL_SCALE, (4 * u).long().clamp(max=3)


def draw(dataset: str, n: int, noise: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` points of a toy data set: ``(x (n, 2) float64, label (n,) int64)``."""
    if dataset in ("gmm8", "gmm-aniso"):
        return _draw_gmm(dataset, n, noise, generator)
    x, label = {"checkerboard": _draw_checkerboard, "two_moons": _draw_two_moons,
                "swiss_roll": _draw_swiss_roll}[dataset](n, generator)
    if noise > 0:
        x = x + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return x, label


class ToyModality:
    """Two-dimensional toy data with exact reference samples and oracle denoisers.

    Args:
        dataset: one of ``DATASETS``.
        n_train: points in the training split.
        n_validation: points in the validation split.
        seed: the training split uses ``2 * seed``, the validation split ``2 * seed + 1``.
        noise: standard deviation of the isotropic Gaussian noise added to the base law
            (see the module docstring); None uses the data set's default.
        conditional: add the conditioning field ``"label"`` (``Discrete((1,), K)``): the
            mixture component, checkerboard square, moon, or swiss-roll quarter.

    Attributes:
        spaces: ``{"x": Continuous((2,))}``.
        cond_spaces: ``{}``, or ``{"label": Discrete((1,), K)}`` when ``conditional``.
    """

    name = "toy"

    def __init__(self, dataset: str = "gmm8", n_train: int = 20000, n_validation: int = 4000, seed: int = 0,
                 noise: float | None = None, conditional: bool = False) -> None:
        if dataset not in DATASETS:
            raise ConfigError(f"modality 'toy': dataset {dataset!r} is not one of {list(DATASETS)}")
        if n_train <= 0 or n_validation <= 0:
            raise ConfigError(f"modality 'toy': n_train = {n_train} and n_validation = {n_validation} must be positive")
        if noise is not None and noise < 0:
            raise ConfigError(f"modality 'toy': noise = {noise} must be >= 0 (or unset for the default)")
        self.dataset_name = dataset
        self.sizes = {"train": int(n_train), "validation": int(n_validation)}
        self.seed = int(seed)
        self.noise = float(DEFAULT_NOISE[dataset] if noise is None else noise)
        self.conditional = bool(conditional)
        self.spaces: dict[str, Space] = {"x": Continuous((2,))}
        self.cond_spaces: dict[str, Space] = (
            {"label": Discrete((1,), N_LABELS[dataset])} if conditional else {})
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in SPLITS:
            raise ValueError(f"modality 'toy': unknown split {split!r}; allowed splits: {list(SPLITS)}")
        if split not in self._splits:
            g = torch.Generator().manual_seed(2 * self.seed + SPLITS.index(split))
            self._splits[split] = draw(self.dataset_name, self.sizes[split], self.noise, g)
        return self._splits[split]

    def dataset(self, split: str) -> FieldsDataset:
        """The ``"train"`` or ``"validation"`` split, generated on first use and kept.

        Raises:
            ValueError: for any other split name, listing the allowed ones.
        """
        x, label = self._split(split)
        return FieldsDataset({"x": x.float(), **({"label": label[:, None]} if self.conditional else {})})

    def reference(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``n`` fresh exact samples of the data law (every toy law is known), as a State."""
        x, label = draw(self.dataset_name, n, self.noise, generator or torch.Generator().manual_seed(0))
        out = {"x": x.float()}
        if self.conditional:
            out["label"] = label[:, None]
        return out

    def oracle(self, label: int | None = None) -> GaussianMixtureOracle | PointCloudOracle:
        """The exact denoiser E[x0 | x_t] (see the module docstring), of the class ``label`` if given.

        Returns:
            ``GaussianMixtureOracle`` of the data law for ``gmm8`` / ``gmm-aniso`` (a mixture
            with zero noise gets a 1e-12 variance floor); otherwise ``PointCloudOracle`` of
            the training points.
        """
        if self.dataset_name in ("gmm8", "gmm-aniso"):
            weights, means, covs = gmm_parameters(self.dataset_name, self.noise)
            covs = covs + 1e-12 * torch.eye(2, dtype=torch.float64)
            if label is not None:
                weights, means, covs = weights[label:label + 1], means[label:label + 1], covs[label:label + 1]
            return GaussianMixtureOracle(weights, means, covs)
        x, labels = self._split("train")
        return PointCloudOracle(x if label is None else x[labels == label])

    def decode(self, state: State) -> np.ndarray:
        """The points as a float32 array of shape ``(N, 2)``."""
        return decode_points(state)

    def encode(self, decoded: Any) -> dict[str, torch.Tensor]:
        """Inverse of ``decode``: an ``(N, 2)`` array -> ``{"x": (N, 2) float32}``."""
        return encode_points(decoded, self.name)

    def write_artefacts(self, samples: State, out_dir: Path) -> list[Path]:
        """Write ``samples.png`` (samples beside validation data, fixed axes) and ``samples.csv``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        points = self.decode(samples)
        csv = out_dir / "samples.csv"
        columns = [points]
        header = "x0,x1"
        if "label" in samples:
            columns.append(samples["label"].detach().cpu().reshape(len(points), -1)[:, :1].numpy())
            header += ",label"
        np.savetxt(csv, np.concatenate(columns, axis=1), delimiter=",", header=header, comments="", fmt="%.6g")
        png = out_dir / "samples.png"
        reference = self._split("validation")[0][:len(points) or 1].numpy()
        scatter_panels([Panel(points, f"samples (n={len(points)})"),
                        Panel(reference, f"validation data (n={len(reference)})")],
                       png, title=f"toy {self.dataset_name}", limits=(-AXIS_LIMIT, AXIS_LIMIT))
        return [png, csv]




DEMO_CONFIG: Mapping[str, Any] = {
    "experiment": {"name": "toy-gmm8", "seed": 0},
    "modality": {"name": "toy", "dataset": "gmm8"},
    "corruption": {"name": "gaussian", "schedule": "edm", "schedule_options": {"sigma_data": 1.0}},
    "denoiser": {"name": "mlp", "width": 128, "depth": 3},
    "training": {"steps": 2000, "batch_size": 256, "lr": 3e-3, "warmup_steps": 100, "ema_decay": 0.99,
                 "log_every": 100, "checkpoint_every": 2000},
    "sampling": {"sampler": "dpmpp_2m", "steps": 20, "n": 2000},
    "evaluation": {"n_samples": 2000, "metrics": ["sliced_wasserstein", "mmd"]},
}
"""Trains the 8-Gaussian mixture in about 16 s on 2 CPU cores (EDM, MLP, DPM-Solver++ 2M, 20 steps)."""


@hookimpl
def polydiff_modalities():
    """The toy modality."""
    yield ModalitySpec(name="toy", summary="2-D toy data (GMM, checkerboard, moons, swiss roll) with exact oracles",
                       factory=ToyModality, demo_config=DEMO_CONFIG)
