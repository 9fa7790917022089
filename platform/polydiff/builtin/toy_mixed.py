"""``toy-mixed``: a continuous point and its discrete label, diffused together.

The smallest mixed-type State (TabDDPM's numbers + categories, a molecule's positions +
atom types): ``{"x": Continuous((2,)), "label": Discrete((1,), K)}`` where the label k is
drawn with weight w_k and the point from the k-th Gaussian of the toy mixture data sets
(``gmm8``: 8 equal Gaussians on a circle; ``gmm-aniso``: 3 anisotropic ones). Both fields
are diffused, with one process each and one shared time (``polydiff.corruptions.composite``),
e.g. Gaussian for ``x`` and masked for ``label``::

    [corruption]
    name = "gaussian"
    schedule = "vp-cosine"
    [corruption.fields.label]
    name = "masked"

The joint law is known, so ``oracle()`` is the exact joint denoiser
(``polydiff.testing.oracles.composite.LabelledMixtureOracle``) and ``reference(n)`` draws
fresh exact samples. Train split seed ``2 * seed``, validation ``2 * seed + 1``.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.builtin.toy import AXIS_LIMIT, DEFAULT_NOISE, gmm_parameters
from polydiff.builtin.toy_points import Panel, scatter_panels
from polydiff.data import FieldsDataset
from polydiff.errors import ConfigError
from polydiff.hookspecs import hookimpl
from polydiff.spaces import Continuous, Discrete, Space, State
from polydiff.specs import ModalitySpec
from polydiff.testing.oracles.composite import LabelledMixtureOracle

DATASETS = ("gmm8", "gmm-aniso")
SPLITS = ("train", "validation")


class ToyMixedModality:
    """A labelled Gaussian mixture with both the point and the label diffused.

    Args:
        dataset: ``"gmm8"`` or ``"gmm-aniso"``.
        n_train, n_validation: split sizes.
        seed: split seeds ``2 * seed`` (train) and ``2 * seed + 1`` (validation).
        noise: extra isotropic standard deviation of each component (None: the toy default).

    Attributes:
        spaces: ``{"x": Continuous((2,)), "label": Discrete((1,), K)}``.
        cond_spaces: ``{}``.
    """

    name = "toy-mixed"

    def __init__(self, dataset: str = "gmm8", n_train: int = 20000, n_validation: int = 4000, seed: int = 0,
                 noise: float | None = None) -> None:
        if dataset not in DATASETS:
            raise ConfigError(f"modality 'toy-mixed': dataset {dataset!r} is not one of {list(DATASETS)}")
        if n_train <= 0 or n_validation <= 0:
            raise ConfigError(f"modality 'toy-mixed': n_train = {n_train} and n_validation = {n_validation} "
                              "must be positive")
        if noise is not None and noise < 0:
            raise ConfigError(f"modality 'toy-mixed': noise = {noise} must be >= 0 (or unset for the default)")
        self.dataset_name = dataset
        self.noise = float(DEFAULT_NOISE[dataset] if noise is None else noise)
        weights, means, covs = gmm_parameters(dataset, self.noise)
        self._oracle = LabelledMixtureOracle(weights, means, covs + 1e-12 * torch.eye(2, dtype=torch.float64))
        self.sizes = {"train": int(n_train), "validation": int(n_validation)}
        self.seed = int(seed)
        self.spaces: dict[str, Space] = {"x": Continuous((2,)), "label": Discrete((1,), len(weights))}
        self.cond_spaces: dict[str, Space] = {}
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self._oracle.sample(n, generator=generator)

    def dataset(self, split: str) -> FieldsDataset:
        """The ``"train"`` or ``"validation"`` split (ValueError naming the allowed splits otherwise)."""
        if split not in SPLITS:
            raise ValueError(f"modality 'toy-mixed': unknown split {split!r}; allowed splits: {list(SPLITS)}")
        if split not in self._splits:
            g = torch.Generator().manual_seed(2 * self.seed + SPLITS.index(split))
            self._splits[split] = self._draw(self.sizes[split], g)
        x, label = self._splits[split]
        return FieldsDataset({"x": x.float(), "label": label[:, None]})

    def reference(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``n`` fresh exact samples of the joint law, as a State."""
        x, label = self._draw(n, generator or torch.Generator().manual_seed(0))
        return {"x": x.float(), "label": label[:, None]}

    def oracle(self) -> LabelledMixtureOracle:
        """The exact joint denoiser of the data law (see the module docstring)."""
        return self._oracle

    def decode(self, state: State) -> np.ndarray:
        """``(N, 3)`` float array: the point's two coordinates and the label."""
        x = state["x"].detach().cpu().double().numpy()
        label = state["label"].detach().cpu().reshape(len(x), -1)[:, :1].double().numpy()
        return np.concatenate([x, label], axis=1)

    def encode(self, decoded: Any) -> dict[str, torch.Tensor]:
        """Inverse of ``decode``: an ``(N, 3)`` array -> ``{"x": (N, 2), "label": (N, 1)}``."""
        a = np.asarray(decoded, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != 3:
            raise ValueError(f"modality 'toy-mixed': expected an array of shape (N, 3), got {a.shape}")
        return {"x": torch.as_tensor(a[:, :2], dtype=torch.float32),
                "label": torch.as_tensor(np.rint(a[:, 2:]), dtype=torch.int64)}

    def write_artefacts(self, samples: State, out_dir: Path) -> list[Path]:
        """``samples.png`` (points coloured by label, beside validation data) and ``samples.csv``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        table = self.decode(samples)
        csv = out_dir / "samples.csv"
        np.savetxt(csv, table, delimiter=",", header="x0,x1,label", comments="", fmt=["%.6g", "%.6g", "%d"])
        x, label = self._splits.get("validation") or self._draw(len(table) or 1, torch.Generator().manual_seed(1))
        reference = np.concatenate([x.numpy(), label.numpy()[:, None]], axis=1)[:max(len(table), 1)]
        png = out_dir / "samples.png"
        scatter_panels([Panel(table[:, :2], f"samples (n={len(table)})", colour_by=table[:, 2]),
                        Panel(reference[:, :2], f"validation data (n={len(reference)})", colour_by=reference[:, 2])],
                       png, title=f"toy-mixed {self.dataset_name} (colour = label)", limits=(-AXIS_LIMIT, AXIS_LIMIT))
        return [png, csv]




DEMO_CONFIG: Mapping[str, Any] = {
    "experiment": {"name": "toy-mixed", "seed": 0},
    "modality": {"name": "toy-mixed", "dataset": "gmm8"},
    "corruption": {"name": "gaussian", "schedule": "vp-cosine", "parametrization": "v",
                   "fields": {"label": {"name": "masked"}}},
    "denoiser": {"name": "transformer", "width": 64, "depth": 2, "heads": 4},
    "training": {"steps": 1500, "batch_size": 256, "lr": 2e-3, "warmup_steps": 100, "ema_decay": 0.99,
                 "log_every": 100, "checkpoint_every": 1500},
    "sampling": {"sampler": "ancestral", "steps": 50, "n": 2000},
    "evaluation": {"n_samples": 2000, "metrics": ["sliced_wasserstein", "mmd", "sequence_tv"]},
}
"""Gaussian points and masked labels, one transformer over both, ancestral sampling.

The points use the v parametrisation (Salimans & Ho 2022): under the cosine schedule alpha(1)
is 5e-4, and an eps-predicting network's x0 = (x_t - sigma eps) / alpha amplified its error
by 1 / alpha in the first steps, throwing about 1 sample in 150 hundreds of units away."""


@hookimpl
def polydiff_modalities():
    """The toy-mixed modality."""
    yield ModalitySpec(name="toy-mixed", summary="2-D mixture point + its diffused label (composite processes)",
                       factory=ToyMixedModality, demo_config=DEMO_CONFIG)
