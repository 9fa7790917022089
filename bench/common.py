"""What the domain benchmarks (``image_mnist``, ``text_shakespeare``, ``tabular``) share.

``report_arguments`` / ``save_report``: every benchmark takes ``--out``, ``--note`` (a line under
the table's title) and ``--rewrite CSV`` (re-render the tables from saved results), and writes
``<stem>.md`` and ``<stem>.csv``.

``CPUBudget`` is a plugin object with a ``polydiff_train_step_end`` hook: it stops a
polydiff run once the process has spent ``seconds`` of CPU time (``time.process_time``)
since the first step. With one torch thread on an idle core this equals wall-clock time;
unlike wall-clock time it is not shortened for one row by other load on the machine, so
rows trained one after another get the same budget. ``StepClock`` records the CPU time at
each step's end, so a probe run measures the time per step without the one-off setup.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

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


class StepClock:
    """Records ``time.process_time()`` at the end of every training step (a ``polydiff_train_step_end`` hook)."""

    def __init__(self) -> None:
        self.times: dict[int, float] = {}

    @polydiff.hookimpl
    def polydiff_train_step_end(self, trainer, step, metrics):
        self.times[step] = time.process_time()

    def seconds_per_step(self, after: int) -> float:
        """Mean CPU seconds per step from step ``after`` to the last one (the first steps warm up)."""
        last = max(self.times)
        if last <= after:
            raise ValueError(f"StepClock: the run ended at step {last}, not after step {after}")
        return (self.times[last] - self.times[after]) / (last - after)


def report_arguments(parser: argparse.ArgumentParser, results: Path) -> None:
    """Add ``--out`` (default ``results``), ``--note`` and ``--rewrite`` to a benchmark's parser."""
    parser.add_argument("--out", type=Path, default=results)
    parser.add_argument("--note", default="", help="a line written under the table's title")
    parser.add_argument("--rewrite", type=Path, help="only re-render the tables from this results CSV")


def note_line(args: argparse.Namespace) -> str:
    """The ``--note`` as a bold paragraph (empty without one)."""
    return f"**{args.note}**\n\n" if args.note else ""


def save_report(out: Path, stem: str, text: str, table: pd.DataFrame) -> str:
    """Write ``out/<stem>.md`` (``text``) and ``out/<stem>.csv`` (``table``); return ``text``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(text, encoding="utf-8")
    table.to_csv(out / f"{stem}.csv", index=False)
    return text
