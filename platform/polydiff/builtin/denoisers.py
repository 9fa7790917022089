"""Built-in generic denoisers."""
from __future__ import annotations

from polydiff.denoisers.causal import CausalTransformer
from polydiff.denoisers.mlp import MLPDenoiser
from polydiff.denoisers.transformer import TransformerDenoiser
from polydiff.hookspecs import hookimpl
from polydiff.specs import DenoiserSpec


@hookimpl
def polydiff_denoisers():
    """The residual MLP and the bidirectional transformer, both with adaLN time conditioning, and
    a causal transformer for the autoregressive process."""
    yield DenoiserSpec(name="mlp", summary="residual MLP with adaLN time embedding, flat continuous fields",
                       factory=MLPDenoiser, spaces=frozenset({"continuous", "bounded"}), conditional=True)
    yield DenoiserSpec(name="transformer", summary="bidirectional transformer (DiT blocks, adaLN-Zero) over field tokens",
                       factory=TransformerDenoiser, spaces=frozenset({"continuous", "bounded", "discrete"}),
                       conditional=True)
    yield DenoiserSpec(name="causal_transformer", summary="causal transformer over one token sequence "
                       "(the autoregressive baseline)", factory=CausalTransformer, spaces=frozenset({"discrete"}),
                       causal=True)
