"""The autoregressive "process": a causal language model trained in the same loop as the diffusions.

An autoregressive model factorises p(x) = prod_i p(x^i | x^{<i}) over the sequence axis of a
``Discrete((L,), V)`` field. It fits polydiff's process interface as the degenerate process
that corrupts nothing: ``corrupt`` returns x_t = x0 (teacher forcing), and the network must be
*causal* (``DenoiserSpec(causal=True)``): its raw output at position i, shape ``(B, L, V)``,
are the logits of p(x^i | x^{<i}), computed from the inputs at positions < i only (it shifts
its input right internally). The training loss is the mean next-token cross entropy

    loss = nelbo = sum_i -log p_theta(x0^i | x0^{<i}) / L

in nats per token, which is the exact negative log-likelihood (no bound): ``nelbo`` does not
depend on t and ``nelbo_prior`` is 0, so ``polydiff.evaluation.nelbo`` reports exact bits per
token and ``2 ** bits`` is the exact perplexity. Times carry no meaning (``sample_t`` returns
zeros). Sampling goes left to right with ``polydiff.samplers.autoregressive``; the prior is
the placeholder id V at every position ("not generated yet"), so ids written into the prior
(a prompt) are kept and conditioned on.
"""
from __future__ import annotations

import torch

from polydiff.corruptions.base import Corrupted, Corruption, Prediction
from polydiff.spaces import Space


class AutoregressiveCorruption(Corruption):
    """Teacher forcing for a causal network on a ``Discrete((L,), V)`` field (module docstring).

    Args:
        space: a one-axis discrete space (tokens along the sequence).
        field: the field name (for messages).

    Raises:
        IncompatibleSpaceError: a non-discrete space; ValueError: a space with more than one axis.
    """

    family = "autoregressive"
    space_kinds = frozenset({"discrete"})
    exact_likelihood = True

    def __init__(self, space: Space, *, field: str = "") -> None:
        super().__init__(space, name="autoregressive", field=field)
        if len(space.shape) != 1:
            raise ValueError(f"corruption 'autoregressive' needs a sequence field of shape (L,); "
                             f"field {field!r} has shape {tuple(space.shape)}")
        self.vocab_size = space.vocab_size
        self.placeholder_id = space.vocab_size

    def sample_t(self, n: int, *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """Zeros, shape ``(n,)``: an autoregressive model has no time."""
        return torch.zeros(n, device=device)

    def corrupt(self, x0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None = None) -> Corrupted:
        """Teacher forcing: x_t = x0 (the causal network reads positions < i for output i)."""
        return Corrupted(t=t, x_t=x0.long())

    def predict(self, raw: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        """``x0`` = softmax(raw), the conditionals p(x^i | x^{<i}), shape ``(B, L, V)``."""
        return Prediction(raw=raw, x0=torch.softmax(raw.float(), dim=-1))

    def _nll(self, raw: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(raw.float(), dim=-1).gather(-1, x0.long()[..., None])[..., 0]
        return -log_p.mean(dim=1)

    def loss(self, raw: torch.Tensor, x0: torch.Tensor, corrupted: Corrupted) -> torch.Tensor:
        """Next-token cross entropy in nats per token, shape ``(B,)`` (unweighted)."""
        return self._nll(raw, x0)

    def nelbo(self, raw: torch.Tensor, x0: torch.Tensor, corrupted: Corrupted) -> torch.Tensor:
        """The exact NLL in nats per token, shape ``(B,)`` (the same at every t)."""
        return self._nll(raw, x0)

    def prior(self, n: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(n, L)`` int64 filled with the placeholder id V (``dtype`` is ignored)."""
        return torch.full((n, *self.space.shape), self.placeholder_id, dtype=torch.long, device=device)

    def reverse_step(self, x_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor, prediction: Prediction, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Not defined: an autoregressive model is sampled position by position."""
        raise NotImplementedError("the autoregressive process has no time steps; sample it with the "
                                  "'autoregressive' sampler")
