"""The text plugin's hook implementations: they only yield specs, importing the heavy modules lazily."""
from __future__ import annotations

from collections.abc import Iterator

import polydiff


@polydiff.hookimpl
def polydiff_modalities() -> Iterator[polydiff.ModalitySpec]:
    """The ``text`` modality (Shakespeare's works or your corpus; char or byte-level BPE tokens)."""
    from polydiff_text.modality import modality_specs

    yield from modality_specs()
