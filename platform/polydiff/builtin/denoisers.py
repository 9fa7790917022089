"""Built-in generic denoisers."""
from __future__ import annotations

from polydiff.denoisers.causal import CausalTransformer
from polydiff.denoisers.mlp import MLPDenoiser
from polydiff.denoisers.transformer import TransformerDenoiser
from polydiff.hookspecs import hookimpl
from polydiff.specs import DenoiserSpec


TRANSFORMER_KIT_OPTIONS = {"heads": 2}
"""Two heads of 32 features at the kit's width 64. With four heads of 16, the tiny run (60
steps at lr 5e-3, no warm-up) left the reflected process's held-out loss at 0.556 from 0.560
on one machine and took it to 0.446 on another; with two heads it reaches 0.477 (threshold
0.504) and every other pair still passes."""


@hookimpl
def polydiff_denoisers():
    """The residual MLP and the bidirectional transformer, both with adaLN time conditioning, and
    a causal transformer for the autoregressive process."""
    yield DenoiserSpec(name="mlp", summary="residual MLP with adaLN time embedding, flat continuous fields",
                       factory=MLPDenoiser, spaces=frozenset({"continuous", "bounded"}), conditional=True)
    yield DenoiserSpec(name="transformer", summary="bidirectional transformer (DiT blocks, adaLN-Zero) over field tokens",
                       factory=TransformerDenoiser, spaces=frozenset({"continuous", "bounded", "discrete"}),
                       conditional=True, kit_options=TRANSFORMER_KIT_OPTIONS)
    yield DenoiserSpec(name="causal_transformer", summary="causal transformer over one token sequence "
                       "(the autoregressive baseline)", factory=CausalTransformer, spaces=frozenset({"discrete"}),
                       causal=True)
