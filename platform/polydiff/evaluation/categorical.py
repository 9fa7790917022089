"""Distances and entropies of categorical samples (token sequences).

All functions take integer samples of shape ``(N, *shape)``; a sample is the whole
sequence ``x.reshape(N, -1)[n]``. Total variation TV(p, q) = 1/2 sum |p - q| lies in
[0, 1]. Between two *empirical* distributions it is biased upwards by the sampling noise
(for K equally likely sequences and N samples each, about sqrt(K / (pi N))); compare it
with the TV between two exact samples of the same size (the noise floor).
"""
from __future__ import annotations

import torch


def _rows(samples: torch.Tensor) -> torch.Tensor:
    if torch.is_floating_point(samples) or samples.ndim < 1:
        raise ValueError(f"expected integer samples of shape (N, *shape), got {samples.dtype} {tuple(samples.shape)}")
    return samples.reshape(samples.shape[0], -1).long().cpu()


def sequence_tv(samples: torch.Tensor, reference: torch.Tensor) -> float:
    """Total variation between the empirical distributions of whole sequences.

    Args:
        samples: ``(N, *shape)`` integer; reference: ``(M, *shape)`` integer.

    Returns:
        1/2 sum_x |N_x / N - M_x / M| over every sequence x seen in either set.
    """
    a, b = _rows(samples), _rows(reference)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"sequence_tv: samples have {a.shape[1]} tokens, reference {b.shape[1]}")
    seen, index = torch.unique(torch.cat([a, b]), dim=0, return_inverse=True)
    p = torch.bincount(index[:len(a)], minlength=len(seen)).double() / len(a)
    q = torch.bincount(index[len(a):], minlength=len(seen)).double() / len(b)
    return 0.5 * float((p - q).abs().sum())


def empirical_law(samples: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The empirical distribution of sequences of L tokens as a table ``(V,) * L`` (float64)."""
    rows = _rows(samples)
    length = rows.shape[1]
    weights = vocab_size ** torch.arange(length - 1, -1, -1)
    flat = torch.bincount((rows * weights).sum(1), minlength=vocab_size**length).double() / len(rows)
    return flat.reshape((vocab_size,) * length)


def tv_to_law(samples: torch.Tensor, probs: torch.Tensor) -> float:
    """TV between the empirical law of ``samples`` and an exact table ``probs`` of shape ``(V,) * L``."""
    law = empirical_law(samples, probs.shape[0])
    return 0.5 * float((law - probs.double().cpu() / probs.sum()).abs().sum())


def token_tv(samples: torch.Tensor, reference: torch.Tensor) -> float:
    """Per-position unigram total variation, averaged over positions.

    Args:
        samples: ``(N, *shape)`` integer; reference: ``(M, *shape)`` integer.

    Returns:
        mean_i 1/2 sum_v |P(x^i = v) - Q(x^i = v)| with empirical P, Q.
    """
    a, b = _rows(samples), _rows(reference)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"token_tv: samples have {a.shape[1]} tokens, reference {b.shape[1]}")
    vocab = int(max(a.max(), b.max())) + 1
    total = 0.0
    for i in range(a.shape[1]):
        p = torch.bincount(a[:, i], minlength=vocab).double() / len(a)
        q = torch.bincount(b[:, i], minlength=vocab).double() / len(b)
        total += 0.5 * float((p - q).abs().sum())
    return total / a.shape[1]


def entropy_of(probs: torch.Tensor) -> float:
    """Shannon entropy in nats of a probability table of any shape (normalised here; 0 log 0 = 0)."""
    p = probs.double().flatten()
    p = p / p.sum()
    return float(-torch.xlogy(p, p).sum())


def sequence_entropy(samples: torch.Tensor) -> float:
    """Plug-in entropy in nats of the empirical distribution of whole sequences (biased low by
    about (K - 1) / (2 N) for K seen sequences; Miller 1955)."""
    _, counts = torch.unique(_rows(samples), dim=0, return_counts=True)
    return entropy_of(counts)
