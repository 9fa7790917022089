"""Built-in generic denoisers."""
from __future__ import annotations

from polydiff.denoisers.mlp import MLPDenoiser
from polydiff.hookspecs import hookimpl
from polydiff.specs import DenoiserSpec


@hookimpl
def polydiff_denoisers():
    """The residual MLP with adaLN time conditioning."""
    yield DenoiserSpec(name="mlp", summary="residual MLP with adaLN time embedding, flat continuous fields",
                       factory=MLPDenoiser, spaces=frozenset({"continuous", "bounded"}), conditional=True)
