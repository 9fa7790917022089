"""time_callable: warm-up calls are untimed, each repeat is timed, the last result is kept."""
from __future__ import annotations

import pytest

from polydiff.evaluation.timing import time_callable


def test_counts_warmup_and_repeats():
    calls = []
    timing = time_callable(lambda: calls.append(1) or len(calls), repeats=4, warmup=2)
    assert len(calls) == 6 and len(timing.times) == 4
    assert timing.result == 6
    assert all(t >= 0 for t in timing.times) and timing.best <= timing.median


def test_rejects_no_repeats():
    with pytest.raises(ValueError, match="repeats"):
        time_callable(lambda: None, repeats=0)
