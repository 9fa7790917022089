"""Contracts (``typing.Protocol``) that plugins implement and the conformance kit checks."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from polydiff.spaces import Space, State

if TYPE_CHECKING:
    from polydiff.corruptions.base import Corruption, Prediction
    from polydiff.samplers.common import SampleOutput


@runtime_checkable
class Modality(Protocol):
    """A data modality: fields and spaces, data sets, decoding, artefacts.

    Attributes:
        name: the registered modality name.
        spaces: diffused fields -> spaces.
        cond_spaces: conditioning fields -> spaces (empty if unconditional).
    """

    name: str
    spaces: Mapping[str, Space]
    cond_spaces: Mapping[str, Space]

    def dataset(self, split: str) -> torch.utils.data.Dataset:
        """The ``"train"`` or ``"validation"`` split; items are unbatched States holding every
        field of ``spaces`` and ``cond_spaces``. Raises ``DataMissingError`` naming what to install."""

    def decode(self, state: State) -> Any:
        """Turn a batch State into domain objects (arrays, texts, tables)."""

    def encode(self, decoded: Any) -> State:
        """Inverse of ``decode``: ``encode(decode(x))`` equals ``x`` up to quantisation."""

    def write_artefacts(self, samples: State, out_dir: Path) -> list[Path]:
        """Write files a person can open (PNG, WAV, CSV, ...) for a batch of samples; return their paths.

        ``samples`` holds the diffused fields, the conditioning fields the samples were drawn
        with, and, when they were inpainted, ``"<field>.mask"`` (1 where the value was given).

        Optional, not part of the protocol check: ``write_trajectory(frames, out_dir) ->
        list[Path]`` draws a denoising trajectory from a list of States (clean estimates per
        sampler step, the last the samples); see ``polydiff.training.periodic.write_trajectory``.
        """


PredictFn = Callable[[State, torch.Tensor], "Mapping[str, Prediction]"]
"""``model(x_t, t) -> {field: Prediction}``: the network plus each process's ``predict``."""


class Sampler(Protocol):
    """A sampler function (k-diffusion style): all state in local variables.

    Args:
        model: ``PredictFn``.
        processes: field -> Corruption (shared time).
        x: the prior State at ``grid[0]``, shape ``(B, *field_shape)`` per field.
        grid: descending times, shape ``(N + 1,)``, ``grid[-1] == 0``.
        generator: the only source of randomness.
        callback: called as ``callback(i, t, x, predictions)`` after each step.

    Returns:
        ``SampleOutput`` with the final State and the number of network evaluations.
    """

    def __call__(self, model: PredictFn, processes: Mapping[str, Corruption], x: State, grid: torch.Tensor, *,
                 generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                 **options: Any) -> SampleOutput: ...


class Metric(Protocol):
    """A metric function returning tidy rows ``{"metric": str, "value": float, ...}``."""

    def __call__(self, samples: State, reference: State, *, spaces: Mapping[str, Space],
                 generator: torch.Generator | None = None) -> list[dict[str, Any]]: ...
