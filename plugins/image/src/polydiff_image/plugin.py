"""The image plugin's hook implementations: they only yield specs, importing the heavy modules lazily."""
from __future__ import annotations

from collections.abc import Iterator

import polydiff


@polydiff.hookimpl
def polydiff_modalities() -> Iterator[polydiff.ModalitySpec]:
    """The ``image`` modality (MNIST 5k, digits, photo crops, a folder or .npz of your own)."""
    from polydiff_image.modality import modality_specs

    yield from modality_specs()


@polydiff.hookimpl
def polydiff_denoisers() -> Iterator[polydiff.DenoiserSpec]:
    """The ADM / EDM-style U-Net and a small DiT."""
    from polydiff_image.networks import denoiser_specs

    yield from denoiser_specs()


@polydiff.hookimpl
def polydiff_metrics() -> Iterator[polydiff.MetricSpec]:
    """FD and precision / recall in a classifier's feature space, PSNR, SSIM, memorisation."""
    from polydiff_image.metrics import metric_specs

    yield from metric_specs()
