"""The exact denoiser of a categorical law over all sequences of length L, by enumeration.

For data x0 ~ p over the V^L sequences (a table ``probs`` of shape ``(V,) * L``) the
per-position posterior p(x0^i | x_t) is computed exactly, in float64, for

* the masked process: p(x0 | x_t) ∝ p(x0) prod_i [x_t^i = mask or x_t^i = x0^i], which
  does not depend on t (the denoiser is time-agnostic; MDLM Sec. 3.2.3), and is the
  one-hot of x_t at unmasked positions;
* the uniform process: p(x0 | x_t) ∝ p(x0) prod_i (alpha onehot(x0^i) + (1 - alpha) / V)[x_t^i]
  with alpha = alpha(t) of the process;
* the autoregressive process: the conditionals p(x^i | x^{<i}) (the exact causal network).

With it, any gap between samples and ``probs`` is the sampler's own error (DESIGN.md
section 11). Memory per call: ``B * V^L`` float64 numbers.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from polydiff import Corruption, Prediction

LOG_FLOOR = -1e4
"""``Prediction.raw`` holds log p clamped here, so zero probabilities stay finite logits."""


class EnumeratedSequenceOracle:
    """An exact categorical law over sequences, with exact denoisers for the discrete families.

    Args:
        probs: probabilities of every sequence, shape ``(V,) * L`` (normalised here).

    Attributes:
        vocab_size: V; length: L; table: float64 ``(V,) * L``; sequences: int64 ``(V^L, L)``
        in the row-major order of ``table.flatten()``.
    """

    def __init__(self, probs: torch.Tensor) -> None:
        table = torch.as_tensor(probs, dtype=torch.float64)
        if table.ndim < 1 or len(set(table.shape)) != 1 or table.shape[0] < 2:
            raise ValueError(f"probs must have shape (V,) * L with V >= 2, got {tuple(table.shape)}")
        if (table < 0).any() or not table.sum() > 0:
            raise ValueError("probs must be non-negative with a positive sum")
        self.table = table / table.sum()
        self.vocab_size, self.length = table.shape[0], table.ndim
        grids = torch.meshgrid(*[torch.arange(self.vocab_size)] * self.length, indexing="ij")
        self.sequences = torch.stack([g.flatten() for g in grids], dim=1)
        self._log_p = self.table.flatten().log()

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` exact samples, int64 ``(n, L)``."""
        idx = torch.multinomial(self.table.flatten(), n, replacement=True, generator=generator)
        return self.sequences[idx]

    def entropy(self) -> float:
        """H(p) in nats (of the whole sequence; divide by L for nats per token)."""
        p = self.table.flatten()
        return float(-(torch.xlogy(p, p)).sum())

    def _posterior(self, log_like: torch.Tensor) -> torch.Tensor:
        """p(x0 | x_t) over sequences ``(B, V^L)`` from log-likelihoods ``(B, V^L)``; a row with
        no compatible sequence (x_t outside the support) falls back to the prior p."""
        log_joint = self._log_p[None] + log_like
        empty = torch.isneginf(log_joint).all(dim=1, keepdim=True)
        log_joint = torch.where(empty, self._log_p[None].expand_as(log_joint), log_joint)
        return torch.softmax(log_joint, dim=1)

    def _marginals(self, posterior: torch.Tensor) -> torch.Tensor:
        """Per-position p(x0^i = v | x_t), ``(B, L, V)``, from the sequence posterior ``(B, V^L)``."""
        hot = torch.nn.functional.one_hot(self.sequences, self.vocab_size).double()
        return torch.einsum("bn,nlv->blv", posterior, hot)

    def _distinct(self, rows: torch.Tensor, base: int, alpha: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The distinct rows of ``rows`` (B, L) (with their alpha), and the index of each row
        among them: samplers evaluate large batches of few distinct states at one time."""
        code = (rows * base ** torch.arange(self.length - 1, -1, -1)).sum(1)
        if alpha is not None:
            levels, level = torch.unique(alpha, return_inverse=True)
            code = code + level * base**self.length
        codes, index = torch.unique(code, return_inverse=True)
        first = torch.empty_like(codes).scatter_(0, index, torch.arange(len(rows)))
        return rows[first], None if alpha is None else alpha[first], index

    def masked_posterior(self, x_t: torch.Tensor, mask_id: int) -> torch.Tensor:
        """Per-position p(x0^i | x_t) for the masked process, ``(B, L, V)`` float64."""
        rows = x_t.reshape(x_t.shape[0], -1).long().cpu()
        states, _, index = self._distinct(rows, self.vocab_size + 1)
        fits = ((states[:, None, :] == self.sequences[None]) | (states[:, None, :] == mask_id)).all(-1)
        log_like = torch.where(fits, 0.0, -math.inf).double()
        return self._marginals(self._posterior(log_like))[index]

    def uniform_posterior(self, x_t: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Per-position p(x0^i | x_t) for the uniform process at alpha ``(B,)``, ``(B, L, V)`` float64."""
        rows = x_t.reshape(x_t.shape[0], -1).long().cpu()
        alpha = alpha.double().cpu().reshape(-1).expand(len(rows))
        states, a, index = self._distinct(rows, self.vocab_size, alpha)
        same = (states[:, None, :] == self.sequences[None]).sum(-1).double()  # matching tokens per sequence
        a = a[:, None]
        u = (1.0 - a) / self.vocab_size
        log_like = torch.xlogy(same, a + u) + torch.xlogy(self.length - same, u)
        return self._marginals(self._posterior(log_like))[index]

    def causal_conditionals(self, x: torch.Tensor) -> torch.Tensor:
        """p(x^i | x^{<i}) at every position i, ``(B, L, V)`` float64: the exact causal network
        of the law (entries of x at positions >= i are ignored for position i; a prefix of
        probability zero falls back to the law's marginal of x^i)."""
        rows = x.reshape(x.shape[0], -1).long().cpu()
        out = []
        for i in range(self.length):
            fits = (rows[:, None, :i] == self.sequences[None, :, :i]).all(-1)
            log_like = torch.where(fits, 0.0, -math.inf).double()
            out.append(self._marginals(self._posterior(log_like))[:, i])
        return torch.stack(out, dim=1)

    def predict_fn(self, processes: Mapping[str, Corruption], field: str | None = None):
        """A ``PredictFn`` for one masked- or uniform-family field (the only field when ``field`` is None).

        The Prediction holds ``x0 = p(x0 | x_t)`` ``(B, *field_shape, V)`` float64 and
        ``raw = log x0`` clamped at ``LOG_FLOOR`` (so the process's ``nelbo`` can consume it).
        """
        field = field or next(iter(processes))
        process = processes[field]
        self._check(process, field)

        def predict(x: Mapping[str, torch.Tensor], t: torch.Tensor) -> dict[str, Prediction]:
            x_t = x[field]
            if process.family == "masked":
                probs = self.masked_posterior(x_t, process.space.vocab_size)
            elif process.family == "autoregressive":
                probs = self.causal_conditionals(x_t)
            else:
                probs = self.uniform_posterior(x_t, process.schedule.alpha(t.double()))
            probs = probs.reshape(*x_t.shape, self.vocab_size).to(x_t.device)
            return {field: Prediction(raw=probs.log().clamp(min=LOG_FLOOR), x0=probs)}

        return predict

    def _check(self, process: Corruption, field: str) -> None:
        if process.family not in ("masked", "uniform", "autoregressive"):
            raise ValueError(f"EnumeratedSequenceOracle: field {field!r} uses family {process.family!r}; "
                             "it is the exact denoiser of the 'masked', 'uniform' and 'autoregressive' families")
        space = process.space
        if space.vocab_size != self.vocab_size or space.dim != self.length:
            raise ValueError(f"EnumeratedSequenceOracle: field {field!r} has {space}; the law is over "
                             f"{self.length} tokens with vocabulary {self.vocab_size}")
