"""The tabular plugin's hook implementations: they only yield specs, importing the heavy modules lazily."""
from __future__ import annotations

from collections.abc import Iterator

import polydiff


@polydiff.hookimpl
def polydiff_modalities() -> Iterator[polydiff.ModalitySpec]:
    """The ``tabular`` modality (penguins, diamonds or your CSV / Parquet table; TabDDPM's encoding)."""
    from polydiff_tabular.modality import modality_specs

    yield from modality_specs()


@polydiff.hookimpl
def polydiff_denoisers() -> Iterator[polydiff.DenoiserSpec]:
    """TabDDPM's MLP denoiser ``tabular_mlp`` over the numeric and categorical fields."""
    from polydiff_tabular.networks import denoiser_specs

    yield from denoiser_specs()


@polydiff.hookimpl
def polydiff_metrics() -> Iterator[polydiff.MetricSpec]:
    """SDMetrics-style column shapes, pair trends, detection, ML efficiency and privacy of tables."""
    from polydiff_tabular.metrics import metric_specs

    yield from metric_specs()
