"""``columns.png``: one panel per column, synthetic rows against the training split.

Numeric, integer and datetime columns get overlaid histograms on shared bins (densities, so
tables of different sizes compare); categorical and boolean columns get side-by-side bars of
each category's share, missing cells as a bar of their own. Drawn with matplotlib's object
API (``matplotlib.figure.Figure``), never pyplot's global state.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from polydiff_tabular.schema import NUMERIC_KINDS, Column

COLOURS = {"synthetic": "#d95f02", "train": "#1b9e77"}
MISSING_LABEL = "(missing)"
MAX_BARS = 20


def _numbers(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return (series.dropna().astype("int64") / 86400e9).to_numpy(dtype=np.float64)
    return series.dropna().astype(np.float64).to_numpy()


def _histogram(ax, column: Column, synthetic: pd.Series, train: pd.Series) -> None:
    a, b = _numbers(synthetic), _numbers(train)
    both = np.concatenate([a, b])
    bins = np.histogram_bin_edges(both, bins=30) if both.size else 10
    for values, label in ((b, "train"), (a, "synthetic")):
        if values.size:
            ax.hist(values, bins=bins, density=True, alpha=0.55, color=COLOURS[label], label=label)
    unit = " (days since 1970)" if column.kind == "datetime" else ""
    ax.set_xlabel(f"{column.name}{unit}")


def _shares(series: pd.Series, labels: Sequence[str]) -> np.ndarray:
    text = series.astype(object).where(series.notna(), MISSING_LABEL).map(str)
    counts = text.value_counts()
    return np.array([counts.get(label, 0) for label in labels], dtype=np.float64) / max(len(series), 1)


def _bars(ax, column: Column, synthetic: pd.Series, train: pd.Series) -> None:
    labels = [str(c) for c in column.categories][:MAX_BARS]
    if synthetic.isna().any() or train.isna().any():
        labels.append(MISSING_LABEL)
    x = np.arange(len(labels))
    ax.bar(x - 0.2, _shares(train, labels), width=0.4, color=COLOURS["train"], label="train")
    ax.bar(x + 0.2, _shares(synthetic, labels), width=0.4, color=COLOURS["synthetic"], label="synthetic")
    ax.set_xticks(x, labels, rotation=45 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center",
                  fontsize=7)
    ax.set_xlabel(column.name)
    ax.set_ylabel("share of rows")


def plot_columns(synthetic: pd.DataFrame, train: pd.DataFrame, columns: Sequence[Column], path: Path,
                 title: str = "") -> Path:
    """Draw one panel per column of ``columns`` found in ``synthetic`` and save a PNG.

    Args:
        synthetic: the decoded samples (typed frame).
        train: the training split (typed frame).
        columns: the column descriptions (kind, categories).
        path: where to write the PNG.
        title: the figure title.

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure

    shown = [c for c in columns if c.name in synthetic.columns] or list(columns)[:1]
    n_cols = min(4, len(shown))
    n_rows = math.ceil(len(shown) / n_cols)
    fig = Figure(figsize=(3.6 * n_cols, 2.8 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, column in zip(axes, shown):
        synth = synthetic[column.name] if column.name in synthetic.columns else pd.Series(dtype=float)
        draw = _histogram if column.kind in NUMERIC_KINDS else _bars
        draw(ax, column, synth, train[column.name])
        ax.set_title(f"{column.name} ({column.kind})", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(shown):]:
        ax.set_axis_off()
    axes[0].legend(fontsize=7)
    fig.suptitle(title or f"synthetic (n={len(synthetic)}) vs train (n={len(train)})", fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=90)
    return path
