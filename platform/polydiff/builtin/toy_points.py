"""What the 2-D toy modalities share: decoding points and drawing scatter panels.

``toy``, ``toy-box``, ``toy-paired`` and ``toy-mixed`` all diffuse a field ``"x"`` of 2-D
points; they decode it to an ``(N, 2)`` array, encode it back, and write side-by-side
scatter panels (samples beside data) on fixed axes without pyplot, so artefact writing is
safe in threads and leaves matplotlib's global backend alone.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polydiff.spaces import State


def decode_points(state: State, field: str = "x") -> np.ndarray:
    """The points of ``field`` as a float32 array of shape ``(N, 2)``."""
    return state[field].detach().cpu().float().numpy()


def encode_points(decoded: Any, modality: str, field: str = "x") -> dict[str, torch.Tensor]:
    """Inverse of ``decode_points``: an ``(N, 2)`` array -> ``{field: (N, 2) float32}``.

    Raises:
        ValueError: naming the modality and the shape it got.
    """
    x = torch.as_tensor(np.asarray(decoded), dtype=torch.float32)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"modality {modality!r}: expected an array of shape (N, 2), got {tuple(x.shape)}")
    return {field: x}


@dataclass(frozen=True)
class Panel:
    """One scatter panel: points ``(N, 2)``, a title, and optional per-point colour values ``(N,)``."""

    points: np.ndarray
    title: str
    colour_by: np.ndarray | None = None


def scatter_panels(panels: Sequence[Panel], path: Path, *, title: str, limits: tuple[float, float],
                   box: tuple[float, float] | None = None) -> Path:
    """Draw ``panels`` side by side on the square axes ``limits`` and save a PNG at ``path``.

    Args:
        panels: what to draw, left to right; a panel with ``colour_by`` is coloured with the
            ten-colour map over 0..9 (labels), the others each in one colour.
        path: the PNG to write.
        title: the figure title.
        limits: ``(low, high)`` of both axes.
        box: ``(low, high)`` of a square to outline (the box of a bounded space).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(4 * len(panels), 4), dpi=100)
    FigureCanvasAgg(fig)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        if box is not None:
            ax.add_patch(Rectangle((box[0], box[0]), box[1] - box[0], box[1] - box[0], fill=False, edgecolor="k"))
        x, y = panel.points[:, 0], panel.points[:, 1]
        if panel.colour_by is not None:
            ax.scatter(x, y, c=panel.colour_by, cmap="tab10", vmin=0, vmax=9, s=2, linewidths=0)
        else:
            ax.scatter(x, y, s=2, alpha=0.5, linewidths=0, color=f"C{i}")
        ax.set_xlim(*limits)
        ax.set_ylim(*limits)
        ax.set_aspect("equal")
        ax.set_title(panel.title, fontsize=9)
    fig.suptitle(title)
    fig.savefig(path)
    return path
