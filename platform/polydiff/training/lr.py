"""Learning-rate schedule: linear warm-up, then cosine decay to a floor (or constant).

The factor is a pure function of the optimizer step, so resuming from a checkpoint needs
no schedule state: the trainer sets ``lr = base_lr * lr_factor(step, ...)`` before each
optimizer step.
"""
from __future__ import annotations

import math


def lr_factor(step: int, *, total_steps: int, warmup_steps: int = 0, schedule: str = "cosine",
              min_lr_ratio: float = 0.0) -> float:
    """Multiplier of the base learning rate for the optimizer step ``step`` (1-based).

    Warm-up rises linearly, ``step / warmup_steps``, reaching 1 at ``step == warmup_steps``.
    After it, ``"constant"`` stays at 1 and ``"cosine"`` follows the half cosine of
    Loshchilov & Hutter (2017, SGDR eq. 5) without restarts:
    ``r + (1 - r) * (1 + cos(pi * p)) / 2`` with ``p`` the fraction of the post-warm-up
    steps done, reaching ``r = min_lr_ratio`` at ``step == total_steps``.

    Args:
        step: the optimizer step about to be taken, ``1 <= step``.
        total_steps: the planned number of steps (``[training] steps``).
        warmup_steps: length of the linear warm-up (0: none).
        schedule: ``"cosine"`` or ``"constant"``.
        min_lr_ratio: the cosine floor as a fraction of the base learning rate.

    Returns:
        The multiplier, in ``(0, 1]`` (``min_lr_ratio`` may make the last steps 0).
    """
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"lr_schedule {schedule!r} is not one of ['cosine', 'constant']")
    if warmup_steps > 0 and step < warmup_steps:
        return step / warmup_steps
    if schedule == "constant" or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
