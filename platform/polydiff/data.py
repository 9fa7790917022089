"""In-memory datasets of fields, and how the trainer's ``DataLoader`` stacks their items.

``FieldsDataset`` holds a modality's split as ``{field: tensor}`` (rows along dim 0). Its
``__getitems__`` (PyTorch's batched-fetch protocol, which ``DataLoader`` calls with a whole
batch of indices) indexes each field once and returns the stacked batch as a
``CollatedBatch``; ``collate`` passes such a batch through and stacks anything else with
``default_collate``. A batch of 1,024 table rows then costs four tensor indexings instead of
1,024 item dicts and a stack per field: the same tensors, and 1.5 times the training steps
per CPU second on the diamonds table (``bench/data_fetch.py``, ``bench/results/data_fetch.md``).

``stack_items(dataset, indices)`` is the same batch outside a ``DataLoader`` (reference
batches, the conformance kit), for any map-style dataset.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate


class CollatedBatch(dict):
    """A batch a dataset has already stacked (``{field: (B, ...) tensor}``); ``collate`` keeps it as is."""


def collate(batch: Any) -> Any:
    """The trainer's ``collate_fn``: a ``CollatedBatch`` as a plain dict, a list of items through
    ``default_collate``."""
    if isinstance(batch, CollatedBatch):
        return dict(batch)
    return default_collate(batch)


def stack_items(dataset: Dataset, indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """Items ``indices`` of a map-style dataset as one batch: through ``__getitems__`` when the
    dataset has it, else item by item and ``default_collate``."""
    getitems = getattr(dataset, "__getitems__", None)
    return collate(getitems(list(indices)) if getitems else [dataset[i] for i in indices])


class FieldsDataset(Dataset):
    """Rows of in-memory fields: item ``i`` is ``{field: tensor[i]}``.

    Args:
        fields: ``{field: tensor}``, every tensor with the same number of rows (dim 0).

    Raises:
        ValueError: no fields, or fields whose row counts differ (each named with its count).
    """

    def __init__(self, fields: Mapping[str, torch.Tensor]) -> None:
        self.fields = dict(fields)
        rows = {name: int(value.shape[0]) for name, value in self.fields.items()}
        if not rows:
            raise ValueError("FieldsDataset: needs at least one field")
        if len(set(rows.values())) > 1:
            raise ValueError(f"FieldsDataset: every field needs the same number of rows, got {rows}")
        self.n = next(iter(rows.values()))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {name: value[i] for name, value in self.fields.items()}

    def __getitems__(self, indices: Sequence[int]) -> CollatedBatch:
        """The rows ``indices`` of every field, stacked (PyTorch's batched fetch)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return CollatedBatch({name: value[index] for name, value in self.fields.items()})
