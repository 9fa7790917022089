"""Toy data in the unit square whose mass touches the walls: the test bed of the reflected process.

Registered as ``"toy-box"`` through ``polydiff_modalities``, like ``polydiff.builtin.toy``.
The field is ``{"x": Bounded((2,), 0, 1)}``; every point lies in the closed box by
construction (drawn from the walls inward, never clipped), from a seeded ``torch.Generator``:

============  ==========================================================================
data set      law
============  ==========================================================================
``corners``   uniform on four squares of side 0.2 in the corners of the box, each
              touching two walls, with weights 0.4 (lower left), 0.3 (lower right),
              0.2 (upper right) and 0.1 (upper left)
``ring``      uniform on the annulus 0.4 <= |x - (0.5, 0.5)| <= 0.5, which touches all
              four walls at their midpoints
============  ==========================================================================

The training split uses seed ``2 * seed`` and the validation split ``2 * seed + 1``.
``oracle()`` is the ``ReflectedPointOracle`` of the training points: the exact score of the
*empirical* training distribution under the reflected process (it memorises; its cost is
``B * n_train * 2`` kernel evaluations per call).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.data import FieldsDataset
from polydiff.errors import ConfigError
from polydiff.builtin.toy_points import Panel, decode_points, encode_points, scatter_panels
from polydiff.hookspecs import hookimpl
from polydiff.spaces import Bounded, Space, State
from polydiff.specs import ModalitySpec
from polydiff.testing.oracles.reflected import ReflectedPointOracle

DATASETS = ("corners", "ring")
SPLITS = ("train", "validation")
CORNER_SIDE = 0.2
CORNER_WEIGHTS = (0.4, 0.3, 0.2, 0.1)
"""Lower left, lower right, upper right, upper left."""
RING_RADII = (0.4, 0.5)


def _draw_corners(n: int, g: torch.Generator) -> torch.Tensor:
    """Each coordinate ``side * U`` from the low wall or ``1 - side * U`` from the high wall, U ~ U[0, 1)."""
    corner = torch.multinomial(torch.tensor(CORNER_WEIGHTS, dtype=torch.float64), n, replacement=True, generator=g)
    offset = CORNER_SIDE * torch.rand(n, 2, generator=g, dtype=torch.float64)
    high = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=torch.bool)[corner]
    return torch.where(high, 1 - offset, offset)


def _draw_ring(n: int, g: torch.Generator) -> torch.Tensor:
    """Uniform on the annulus: radius sqrt(U(r1^2, r2^2)), angle U(0, 2 pi)."""
    r1, r2 = RING_RADII
    radius = torch.sqrt(r1**2 + (r2**2 - r1**2) * torch.rand(n, generator=g, dtype=torch.float64))
    angle = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    return 0.5 + radius[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)


def draw(dataset: str, n: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``n`` points of a toy-box data set, shape ``(n, 2)``, float64, inside [0, 1]^2."""
    if dataset not in DATASETS:
        raise ConfigError(f"modality 'toy-box': dataset {dataset!r} is not one of {list(DATASETS)}")
    return (_draw_corners if dataset == "corners" else _draw_ring)(n, generator)


class ToyBoxModality:
    """Two-dimensional data in the unit square with mass on the walls (see the module docstring).

    Args:
        dataset: one of ``DATASETS``.
        n_train, n_validation: points per split.
        seed: the training split uses ``2 * seed``, the validation split ``2 * seed + 1``.

    Attributes:
        spaces: ``{"x": Bounded((2,), 0.0, 1.0)}``.
        cond_spaces: ``{}``.
    """

    name = "toy-box"

    def __init__(self, dataset: str = "corners", n_train: int = 5000, n_validation: int = 2000, seed: int = 0) -> None:
        if dataset not in DATASETS:
            raise ConfigError(f"modality 'toy-box': dataset {dataset!r} is not one of {list(DATASETS)}")
        if n_train <= 0 or n_validation <= 0:
            raise ConfigError(f"modality 'toy-box': n_train = {n_train} and n_validation = {n_validation} "
                              "must be positive")
        self.dataset_name = dataset
        self.sizes = {"train": int(n_train), "validation": int(n_validation)}
        self.seed = int(seed)
        self.spaces: dict[str, Space] = {"x": Bounded((2,), 0.0, 1.0)}
        self.cond_spaces: dict[str, Space] = {}
        self._splits: dict[str, torch.Tensor] = {}

    def _split(self, split: str) -> torch.Tensor:
        if split not in SPLITS:
            raise ValueError(f"modality 'toy-box': unknown split {split!r}; allowed splits: {list(SPLITS)}")
        if split not in self._splits:
            g = torch.Generator().manual_seed(2 * self.seed + SPLITS.index(split))
            self._splits[split] = draw(self.dataset_name, self.sizes[split], g)
        return self._splits[split]

    def dataset(self, split: str) -> FieldsDataset:
        """The ``"train"`` or ``"validation"`` split, generated on first use and kept.

        Raises:
            ValueError: for any other split name, listing the allowed ones.
        """
        return FieldsDataset({"x": self._split(split).float()})

    def reference(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``n`` fresh exact samples of the data law, ``{"x": (n, 2) float32}``."""
        return {"x": draw(self.dataset_name, n, generator or torch.Generator().manual_seed(0)).float()}

    def oracle(self) -> ReflectedPointOracle:
        """The exact reflected-process denoiser of the training points (equal weights, box [0, 1])."""
        return ReflectedPointOracle(self._split("train"), None, 0.0, 1.0)

    def decode(self, state: State) -> np.ndarray:
        """The points as a float32 array of shape ``(N, 2)``."""
        return decode_points(state)

    def encode(self, decoded: Any) -> dict[str, torch.Tensor]:
        """Inverse of ``decode``: an ``(N, 2)`` array -> ``{"x": (N, 2) float32}``."""
        return encode_points(decoded, self.name)

    def write_artefacts(self, samples: State, out_dir: Path) -> list[Path]:
        """Write ``samples.png`` (samples beside validation data, box drawn) and ``samples.csv``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        points = self.decode(samples)
        csv = out_dir / "samples.csv"
        np.savetxt(csv, points, delimiter=",", header="x0,x1", comments="", fmt="%.6g")
        png = out_dir / "samples.png"
        reference = self._split("validation")[:len(points) or 1].numpy()
        scatter_panels([Panel(points, f"samples (n={len(points)})"),
                        Panel(reference, f"validation data (n={len(reference)})")],
                       png, title=f"toy-box {self.dataset_name}", limits=(-0.05, 1.05), box=(0.0, 1.0))
        return [png, csv]




DEMO_CONFIG: Mapping[str, Any] = {
    "experiment": {"name": "toy-box-corners", "seed": 0},
    "modality": {"name": "toy-box", "dataset": "corners"},
    "corruption": {"name": "reflected"},
    "denoiser": {"name": "mlp", "width": 128, "depth": 3},
    "training": {"steps": 2000, "batch_size": 256, "lr": 3e-3, "warmup_steps": 100, "ema_decay": 0.99,
                 "log_every": 100, "checkpoint_every": 2000},
    "sampling": {"sampler": "reflected_ode", "steps": 20, "n": 2000},
    "evaluation": {"n_samples": 2000, "metrics": ["sliced_wasserstein", "mmd"]},
}
"""Corner squares, reflected process (sigma 0.01 .. 2), MLP, Heun on the reflected ODE (20 steps, NFE 40)."""


@hookimpl
def polydiff_modalities() -> Iterator[ModalitySpec]:
    """The toy-box modality."""
    yield ModalitySpec(name="toy-box", summary="2-D data in the unit square with mass on the walls "
                       "(corner squares, ring), for the reflected process", factory=ToyBoxModality,
                       demo_config=DEMO_CONFIG)
