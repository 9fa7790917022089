"""Packing documents into fixed-length token sequences (as GPT-2 / MDLM train on OpenWebText).

The token ids of the documents are concatenated, each document followed by ``<eos>``::

    doc_0 <eos> doc_1 <eos> ... doc_n <eos>

and the stream is cut into consecutive sequences of ``seq_len`` tokens; the last partial
sequence is dropped and counted (``PackedSequences.dropped_tokens``). A document starts at
stream position 0 and after every ``<eos>``; ``PackedSequences.starts`` marks those
positions, so a model or metric can tell where documents begin inside a sequence.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class PackedSequences:
    """Documents packed into fixed-length sequences.

    Attributes:
        sequences: ``(N, seq_len)`` int64 token ids.
        starts: ``(N, seq_len)`` bool, True at the first token of each document.
        documents: number of documents packed.
        stream_tokens: tokens of the whole stream (document tokens plus one ``<eos>`` each).
        dropped_tokens: tokens of the last, partial sequence, which is dropped.
    """

    sequences: torch.Tensor
    starts: torch.Tensor
    documents: int
    stream_tokens: int
    dropped_tokens: int

    def summary(self) -> dict[str, Any]:
        """``{"documents", "tokens", "sequences", "seq_len", "dropped_tokens"}`` (tokens of the stream)."""
        return {"documents": self.documents, "tokens": self.stream_tokens, "sequences": int(self.sequences.shape[0]),
                "seq_len": int(self.sequences.shape[1]), "dropped_tokens": self.dropped_tokens}


def token_stream(documents: Sequence[np.ndarray], eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``(stream, starts)``: the documents' ids each followed by ``eos_id`` (int64), and a bool
    array of the same length, True where a document starts."""
    lengths = np.array([len(d) + 1 for d in documents], dtype=np.int64)
    stream = np.full(int(lengths.sum()), eos_id, dtype=np.int64)
    starts = np.zeros(stream.shape, dtype=bool)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    for offset, doc in zip(offsets, documents):
        stream[offset:offset + len(doc)] = doc
    starts[offsets] = True
    return stream, starts


def pack(documents: Sequence[np.ndarray], seq_len: int, eos_id: int) -> PackedSequences:
    """Pack token-id arrays into sequences of ``seq_len`` (module docstring).

    Args:
        documents: one int array of token ids per document (no ``<eos>`` inside).
        seq_len: tokens per sequence (>= 1).
        eos_id: the ``<eos>`` id placed after every document.

    Returns:
        :class:`PackedSequences` (zero sequences when the stream is shorter than ``seq_len``).
    """
    if seq_len < 1:
        raise ValueError(f"pack: seq_len must be >= 1, got {seq_len}")
    stream, starts = token_stream(documents, eos_id)
    n = len(stream) // seq_len
    keep = n * seq_len
    return PackedSequences(
        sequences=torch.from_numpy(stream[:keep].reshape(n, seq_len).copy()),
        starts=torch.from_numpy(starts[:keep].reshape(n, seq_len).copy()),
        documents=len(documents), stream_tokens=int(len(stream)), dropped_tokens=int(len(stream) - keep))
