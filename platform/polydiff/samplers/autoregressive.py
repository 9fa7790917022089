"""Left-to-right sampling of the ``autoregressive`` process (one token per network call).

For a causal network (``polydiff.corruptions.autoregressive``) the sampler fills the
positions i = 0, ..., L - 1 of every sequence in turn, drawing x^i from p(x^i | x^{<i}) at
temperature ``temperature`` (optionally restricted to the ``top_k`` most likely tokens).
Positions that do not hold the placeholder id V in the initial State are a prompt: they are
kept and conditioned on (a prefix prompts as usual; later known tokens are kept but, as the
model is causal, cannot influence earlier positions).

Two ways to call the network, with the same law:
- cached: when the PredictFn carries ``network`` with a ``decoder(n, cond)`` method (the
  experiment's PredictFn does, see ``Experiment.predict_fn``), each step feeds one token and
  reuses the key / value cache: L calls of one position each;
- full: otherwise the whole sequence is re-evaluated at each position: L full calls.
NFE counts the calls either way (one per generated position). The grid is ignored.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from polydiff.corruptions.masked import sample_categorical
from polydiff.samplers.common import SampleOutput, call_model, require_families
from polydiff.spaces import State

AUTOREGRESSIVE = frozenset({"autoregressive"})


def _draw(logits: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator | None) -> torch.Tensor:
    """One token per row of ``logits`` ``(B, V)`` at ``temperature``, from the ``top_k`` best (0: all)."""
    logits = logits.double() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return sample_categorical(torch.softmax(logits, dim=-1), generator)


def sample_autoregressive(model: Callable[..., Any], processes: Mapping[str, Any], x: State, grid: torch.Tensor, *,
                          generator: torch.Generator | None = None, callback: Callable[..., None] | None = None,
                          temperature: float = 1.0, top_k: int = 0, cache: bool = True) -> SampleOutput:
    """Ancestral left-to-right sampling of one autoregressive field (module docstring).

    Args:
        model: ``PredictFn``; processes: exactly one field of the ``autoregressive`` family.
        x: the prior State (placeholder id V where a token is to be generated).
        grid: ignored (kept for the common sampler signature).
        generator: the only source of randomness; callback: ``callback(i, t, x, predictions)``
            after each position with ``t = 0``.
        temperature: > 0; 1 samples the model's law.
        top_k: keep only the ``top_k`` most likely tokens (0 keeps all).
        cache: use the network's key / value cache when it offers one.

    Returns:
        ``SampleOutput`` with ``info["tokens_per_call"]`` (1.0 when every position is generated).
    """
    require_families(processes, AUTOREGRESSIVE, "autoregressive")
    if len(processes) != 1:
        raise ValueError(f"sampler 'autoregressive' samples one sequence field, got fields {sorted(processes)}")
    if temperature <= 0:
        raise ValueError(f"sampler 'autoregressive': temperature must be > 0, got {temperature}")
    (field, process), = processes.items()
    x = dict(x)
    seq = x[field].clone()
    placeholder = process.placeholder_id
    given = seq != placeholder
    n, length = seq.shape
    network = getattr(model, "network", None)
    decoder = network.decoder(n, getattr(model, "cond", None)) if cache and hasattr(network, "decoder") else None
    nfe = 0
    prev = None
    for i in range(length):
        if decoder is not None:
            logits = decoder.step(prev)
            nfe += 1
        elif not bool(given[:, i].all()):
            x[field] = seq
            logits = call_model(model, x, 0.0)[field].raw[:, i]
            nfe += 1
        else:
            logits = None
        if logits is not None:
            drawn = _draw(logits, temperature, top_k, generator)
            seq[:, i] = torch.where(given[:, i], seq[:, i], drawn.to(seq.device))
        prev = seq[:, i]
        if callback is not None:
            x[field] = seq
            callback(i, 0.0, dict(x), {})
    x[field] = seq
    generated = int((~given).sum())
    return SampleOutput(state=x, nfe=nfe, info={"tokens_per_call": generated / max(1, n * nfe)})
