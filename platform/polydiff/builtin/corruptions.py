"""Built-in corruption processes."""
from __future__ import annotations

from typing import Any

from polydiff.corruptions.gaussian import GaussianCorruption
from polydiff.hookspecs import hookimpl
from polydiff.specs import CorruptionSpec


def gaussian(space, *, schedule: str = "edm", schedule_options: dict[str, Any] | None = None,
             parametrization: str | None = None, weighting: str | None = None,
             preconditioning: str | None = None, field: str = "", registry=None) -> GaussianCorruption:
    """Build a ``GaussianCorruption`` with a registered schedule (default ``"edm"``)."""
    if registry is None:
        from polydiff.schedules import BUILTIN_SCHEDULES
        if schedule not in BUILTIN_SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; built-in schedules: {sorted(BUILTIN_SCHEDULES)}")
        factory = BUILTIN_SCHEDULES[schedule]
    else:
        factory = registry.get("schedule", schedule).factory
    sched = factory(**(schedule_options or {}))
    return GaussianCorruption(space, sched, parametrization=parametrization, weighting=weighting,
                              preconditioning=preconditioning, field=field)


@hookimpl
def polydiff_corruptions():
    """The Gaussian family; the other families arrive with their own modules."""
    yield CorruptionSpec(name="gaussian", summary="x_t = alpha x0 + sigma eps with any registered schedule",
                         family="gaussian", factory=gaussian, spaces=frozenset({"continuous", "bounded"}))
