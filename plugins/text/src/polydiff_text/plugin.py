"""The text plugin's hook implementations: they only yield specs, importing the heavy modules lazily."""
from __future__ import annotations

from collections.abc import Iterator

import polydiff


@polydiff.hookimpl
def polydiff_modalities() -> Iterator[polydiff.ModalitySpec]:
    """The ``text`` modality (Shakespeare's works or your corpus; char or byte-level BPE tokens)."""
    from polydiff_text.modality import modality_specs

    yield from modality_specs()


@polydiff.hookimpl
def polydiff_denoisers() -> Iterator[polydiff.DenoiserSpec]:
    """The MDLM-style ``text_transformer`` and the autoregressive baseline ``text_causal``."""
    from polydiff_text.networks import denoiser_specs

    yield from denoiser_specs()


@polydiff.hookimpl
def polydiff_metrics() -> Iterator[polydiff.MetricSpec]:
    """Unigram entropy, distinct-n and generative perplexity of text samples."""
    from polydiff_text.metrics import metric_specs

    yield from metric_specs()
