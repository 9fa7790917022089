"""polydiff.FieldsDataset and the trainer's collate: a batched fetch gives the very batch that
stacking the items gives, through a real DataLoader, and training is unchanged by it."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import polydiff
from polydiff.data import CollatedBatch, collate


def _fields(n: int = 10) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"x": torch.randn(n, 3, generator=g), "label": torch.randint(0, 4, (n, 1), generator=g),
            "scalar": torch.arange(n, dtype=torch.float32)}


class ItemsOnly(Dataset):
    """The same rows without a batched fetch."""

    def __init__(self, fields):
        self.fields = fields

    def __len__(self):
        return len(self.fields["x"])

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.fields.items()}


def test_getitems_equals_stacked_items():
    fields = _fields()
    dataset = polydiff.FieldsDataset(fields)
    indices = [7, 2, 2, 9, 0]
    batch = dataset.__getitems__(indices)
    assert isinstance(batch, CollatedBatch)
    for name, value in fields.items():
        assert torch.equal(batch[name], torch.stack([value[i] for i in indices]))
    assert len(dataset) == 10 and torch.equal(dataset[3]["x"], fields["x"][3])


def test_stack_items_uses_either_path_alike():
    fields = _fields()
    fast = polydiff.stack_items(polydiff.FieldsDataset(fields), range(6))
    slow = polydiff.stack_items(ItemsOnly(fields), range(6))
    assert type(fast) is dict and sorted(fast) == sorted(slow)
    for name in fields:
        assert torch.equal(fast[name], slow[name]) and fast[name].dtype == slow[name].dtype


def test_dataloader_batches_match_per_item_collation():
    fields = _fields(37)
    sampler_args = dict(batch_size=8, drop_last=True, shuffle=True)
    fast = DataLoader(polydiff.FieldsDataset(fields), collate_fn=collate, generator=torch.Generator().manual_seed(3),
                      **sampler_args)
    slow = DataLoader(ItemsOnly(fields), generator=torch.Generator().manual_seed(3), **sampler_args)
    pairs = list(zip(fast, slow))
    assert len(pairs) == 4
    for a, b in pairs:
        assert type(a) is dict
        for name in fields:
            assert torch.equal(a[name], b[name])


def test_collate_stacks_plain_items():
    items = [{"x": torch.tensor([1.0, 2.0])}, {"x": torch.tensor([3.0, 4.0])}]
    assert torch.equal(collate(items)["x"], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))


def test_rejects_ragged_and_empty_fields():
    with pytest.raises(ValueError, match=r"same number of rows.*'x': 4.*'y': 3"):
        polydiff.FieldsDataset({"x": torch.zeros(4, 2), "y": torch.zeros(3)})
    with pytest.raises(ValueError, match="at least one field"):
        polydiff.FieldsDataset({})
