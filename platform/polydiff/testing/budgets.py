"""Compute budgets for the conformance kit.

A budget fixes every size a check uses (batch, network width, training steps, sampling
steps) so that a check's cost is known in advance. ``"tiny"`` keeps every check to a few
seconds on one CPU core; a plugin whose components cannot learn anything at that size marks
``check_tiny_training_lowers_loss`` as an expected failure, or asks for ``"small"``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """Sizes used by the checks.

    Attributes:
        name: ``"tiny"`` or ``"small"``.
        batch: samples per batch in shape checks.
        train_steps: optimizer steps of the tiny training run.
        train_batch: batch size of the tiny training run.
        lr: learning rate of the tiny training run.
        width: hidden width passed to denoisers that accept ``width``.
        depth: depth passed to denoisers that accept ``depth``.
        eval_batches: held-out batches (of ``train_batch``) used to compare losses.
        sample_steps: grid intervals in sampler checks.
        n_samples: samples drawn in sampler checks.
        n_moments: samples used to compare prior and forward-process moments.
    """

    name: str
    batch: int
    train_steps: int
    train_batch: int
    lr: float
    width: int
    depth: int
    eval_batches: int
    sample_steps: int
    n_samples: int
    n_moments: int


TINY = Budget(name="tiny", batch=8, train_steps=60, train_batch=64, lr=5e-3, width=64, depth=2,
              eval_batches=4, sample_steps=8, n_samples=64, n_moments=4096)
SMALL = Budget(name="small", batch=16, train_steps=600, train_batch=256, lr=2e-3, width=128, depth=3,
               eval_batches=8, sample_steps=16, n_samples=256, n_moments=8192)
BUDGETS = {"tiny": TINY, "small": SMALL}


def get_budget(budget: str | Budget) -> Budget:
    """The ``Budget`` called ``budget`` (or ``budget`` itself).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if isinstance(budget, Budget):
        return budget
    if budget not in BUDGETS:
        raise ValueError(f"unknown conformance budget {budget!r}; budgets: {sorted(BUDGETS)}")
    return BUDGETS[budget]
