"""Paired two-dimensional toy data for diffusion bridges: restore x0 from a degraded x1.

Registered as ``"toy-paired"`` through ``polydiff_modalities``. Every item holds the clean
point ``x`` (the diffused field) and its degraded partner ``x1`` (a conditioning field);
``pairs = {"x": "x1"}`` tells the experiment that a bridge on ``x`` is pinned at ``x1``.

=================  ============================================================  ============
data set           law                                                            oracle
=================  ============================================================  ============
``gaussian``       x0 ~ N(mean, cov) (correlated), x1 = A x0 + e,                  exact
                   e ~ N(0, noise_cov) (``GAUSSIAN``)                              (PairedGaussian)
``gmm8-degraded``  x0 from the toy ``gmm8`` mixture (8 points on the circle of     none
                   radius 1.5, noise 0.1), x1 = 0.5 x0 + 0.3 N(0, I): a contraction
                   plus noise, so x0 | x1 is multimodal (an ill-posed restoration)
=================  ============================================================  ============

The training split uses seed ``2 * seed`` and the validation split ``2 * seed + 1``, as in
the ``toy`` modality.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.builtin.toy import AXIS_LIMIT, DEFAULT_NOISE, draw
from polydiff.data import FieldsDataset
from polydiff.errors import ConfigError
from polydiff.builtin.toy_points import Panel, decode_points, encode_points, scatter_panels
from polydiff.hookspecs import hookimpl
from polydiff.spaces import Continuous, Space, State
from polydiff.specs import ModalitySpec
from polydiff.testing.oracles.bridge import PairedGaussianOracle

DATASETS = ("gaussian", "gmm8-degraded")
SPLITS = ("train", "validation")
GAUSSIAN: Mapping[str, Any] = {
    "mean": [0.5, -0.3],
    "cov": [[1.0, 0.6], [0.6, 0.8]],
    "A": [[0.8, 0.3], [-0.2, 0.6]],
    "noise_cov": [[0.15, 0.05], [0.05, 0.2]],
}
"""Parameters of the ``gaussian`` data set (``PairedGaussianOracle`` arguments)."""
CONTRACTION, DEGRADATION_NOISE = 0.5, 0.3
"""``gmm8-degraded``: x1 = CONTRACTION x0 + DEGRADATION_NOISE N(0, I)."""


def draw_pairs(dataset: str, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` pairs of a data set: ``(x0, x1)``, each ``(n, 2)`` float64."""
    if dataset == "gaussian":
        return PairedGaussianOracle(**GAUSSIAN).sample_pairs(n, generator)
    x0, _ = draw("gmm8", n, DEFAULT_NOISE["gmm8"], generator)
    return x0, CONTRACTION * x0 + DEGRADATION_NOISE * torch.randn(n, 2, generator=generator, dtype=torch.float64)


class ToyPairedModality:
    """Paired 2-D toy data (clean x, degraded x1) for bridge corruptions.

    Args:
        dataset: one of ``DATASETS``.
        n_train: pairs in the training split.
        n_validation: pairs in the validation split.
        seed: the training split uses ``2 * seed``, the validation split ``2 * seed + 1``.

    Attributes:
        spaces: ``{"x": Continuous((2,))}``.
        cond_spaces: ``{"x1": Continuous((2,))}``.
        pairs: ``{"x": "x1"}``: the bridge on ``x`` is pinned at the conditioning field ``x1``.
    """

    name = "toy-paired"

    def __init__(self, dataset: str = "gaussian", n_train: int = 20000, n_validation: int = 4000,
                 seed: int = 0) -> None:
        if dataset not in DATASETS:
            raise ConfigError(f"modality 'toy-paired': dataset {dataset!r} is not one of {list(DATASETS)}")
        if n_train <= 0 or n_validation <= 0:
            raise ConfigError(f"modality 'toy-paired': n_train = {n_train} and n_validation = {n_validation} "
                              f"must be positive")
        self.dataset_name = dataset
        self.sizes = {"train": int(n_train), "validation": int(n_validation)}
        self.seed = int(seed)
        self.spaces: dict[str, Space] = {"x": Continuous((2,))}
        self.cond_spaces: dict[str, Space] = {"x1": Continuous((2,))}
        self.pairs: dict[str, str] = {"x": "x1"}
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in SPLITS:
            raise ValueError(f"modality 'toy-paired': unknown split {split!r}; allowed splits: {list(SPLITS)}")
        if split not in self._splits:
            g = torch.Generator().manual_seed(2 * self.seed + SPLITS.index(split))
            self._splits[split] = draw_pairs(self.dataset_name, self.sizes[split], g)
        return self._splits[split]

    def dataset(self, split: str) -> FieldsDataset:
        """The ``"train"`` or ``"validation"`` split, generated on first use and kept.

        Raises:
            ValueError: for any other split name, listing the allowed ones.
        """
        x0, x1 = self._split(split)
        return FieldsDataset({"x": x0.float(), "x1": x1.float()})

    def reference(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``n`` fresh pairs of the data law: ``{"x": (n, 2), "x1": (n, 2)}`` float32."""
        x0, x1 = draw_pairs(self.dataset_name, n, generator or torch.Generator().manual_seed(0))
        return {"x": x0.float(), "x1": x1.float()}

    def oracle(self) -> PairedGaussianOracle:
        """The exact law of the ``gaussian`` data set (its ``predict_fn`` is E[x0 | x_t, x1]).

        Raises:
            ValueError: for ``gmm8-degraded``, which has no oracle here.
        """
        if self.dataset_name != "gaussian":
            raise ValueError(f"modality 'toy-paired': only the 'gaussian' data set has an exact oracle, "
                             f"not {self.dataset_name!r}")
        return PairedGaussianOracle(**GAUSSIAN)

    def decode(self, state: State) -> np.ndarray:
        """The points of ``x`` as a float32 array of shape ``(N, 2)``."""
        return decode_points(state)

    def encode(self, decoded: Any) -> dict[str, torch.Tensor]:
        """Inverse of ``decode``: an ``(N, 2)`` array -> ``{"x": (N, 2) float32}``."""
        return encode_points(decoded, self.name)

    def write_artefacts(self, samples: State, out_dir: Path) -> list[Path]:
        """Write ``samples.png`` (source x1, restored x, clean validation x0) and ``samples.csv``.

        ``samples`` holds ``x`` and, when the experiment passes it, the ``x1`` each sample
        was restored from; without ``x1`` the panel shows the validation sources.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        restored = self.decode(samples)
        clean, sources = (v[:len(restored) or 1].numpy() for v in self._split("validation"))
        has_source = "x1" in samples
        if has_source:
            sources = samples["x1"].detach().cpu().float().numpy()
        csv = out_dir / "samples.csv"
        columns, header = [restored], "x_0,x_1"
        if has_source:
            columns.append(sources)
            header += ",source_0,source_1"
        np.savetxt(csv, np.concatenate(columns, axis=1), delimiter=",", header=header, comments="", fmt="%.6g")
        png = out_dir / "samples.png"
        panels = [Panel(sources, f"source x1 (n={len(sources)})"), Panel(restored, f"restored x (n={len(restored)})"),
                  Panel(clean, f"clean validation x0 (n={len(clean)})")]
        scatter_panels(panels, png, title=f"toy-paired {self.dataset_name}", limits=(-AXIS_LIMIT, AXIS_LIMIT))
        return [png, csv]




DEMO_CONFIG: Mapping[str, Any] = {
    "experiment": {"name": "toy-paired-gmm8", "seed": 0},
    "modality": {"name": "toy-paired", "dataset": "gmm8-degraded"},
    "corruption": {"name": "bridge", "bridge": "brownian", "sigma": 1.0, "parametrization": "ddbm", "weighting": "ddbm",
                   "sigma_data": 1.065, "sigma_source": 0.612, "data_source_cov": 0.568},
    "denoiser": {"name": "mlp", "width": 128, "depth": 3},
    "training": {"steps": 2000, "batch_size": 256, "lr": 3e-3, "warmup_steps": 100, "ema_decay": 0.99,
                 "log_every": 100, "checkpoint_every": 2000},
    "sampling": {"sampler": "bridge_sde", "steps": 50, "n": 2000},
    "evaluation": {"n_samples": 2000, "metrics": ["sliced_wasserstein", "mean_error"]},
}
"""Restores the contracted, noisy 8-Gaussian mixture with a Brownian bridge (I2SB) and its SDE sampler.

DDBM's preconditioning uses the data set's exact statistics per coordinate: Var x0 =
1.5^2 / 2 + 0.1^2, Var x1 = 0.5^2 Var x0 + 0.3^2, Cov(x0, x1) = 0.5 Var x0. Without it (the
plain x0 parametrization) the MLP learns the ring but not the eight clusters in 2000
steps. About 35 s on one CPU thread; sliced Wasserstein about 0.06 to the validation x0
(the exact denoiser reaches about 0.05 with the same sampler; x1 / 0.5 scores 0.28).
"""


@hookimpl
def polydiff_modalities():
    """The paired toy modality."""
    yield ModalitySpec(name="toy-paired", summary="paired 2-D toy data (clean x, degraded x1) for diffusion bridges",
                       factory=ToyPairedModality, demo_config=DEMO_CONFIG)
