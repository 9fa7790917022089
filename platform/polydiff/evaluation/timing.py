"""Wall-clock timing of a callable, correct on CUDA (used by the benchmarks in ``bench/``)."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Timing:
    """Seconds per call of the timed repeats (warm-up calls excluded).

    Attributes:
        times: seconds of each timed repeat, in order.
        result: the return value of the last call.
    """

    times: tuple[float, ...]
    result: Any = None

    @property
    def median(self) -> float:
        """Median seconds per call."""
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        """Fastest call in seconds."""
        return min(self.times)


def _synchronize(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_callable(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1,
                  device: torch.device | str | None = None) -> Timing:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed.

    On a CUDA ``device`` the queue is synchronised before starting and after each call, so
    each time covers the kernels launched by the call and not just their launch.

    Args:
        fn: a callable without arguments (close over the inputs).
        repeats: timed calls, >= 1; report ``Timing.median``.
        warmup: untimed calls first (compilation, cuDNN autotuning, caches).
        device: the device whose queue to synchronise; None or CPU needs none.

    Returns:
        ``Timing`` with the seconds of each timed call and the last result.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"time_callable: need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    result = None
    for _ in range(warmup):
        result = fn()
    _synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return Timing(tuple(times), result)
