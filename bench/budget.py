"""A training budget in CPU seconds, shared by the domain benchmarks (``image_mnist``, ``text_shakespeare``).

``CPUBudget`` is a plugin object with a ``polydiff_train_step_end`` hook: it stops a
polydiff run once the process has spent ``seconds`` of CPU time (``time.process_time``)
since the first step. With one torch thread on an idle core this equals wall-clock time;
unlike wall-clock time it is not shortened for one row by other load on the machine, so
rows trained one after another get the same budget.
"""
from __future__ import annotations

import time

import polydiff


class CPUBudget:
    """Stops a polydiff run after ``seconds`` of training CPU time (a ``polydiff_train_step_end`` hook)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, None

    @polydiff.hookimpl
    def polydiff_train_step_end(self, trainer, step, metrics):
        if self.start is None:
            self.start = time.process_time()
        elif time.process_time() - self.start > self.seconds:
            trainer.request_stop(f"training budget of {self.seconds:.0f} CPU seconds reached")
