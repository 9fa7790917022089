"""Batched fetch: training steps/s with ``polydiff.FieldsDataset`` against item-by-item loading.

The same trainer, config, seed and data (``bench/tabular.py``'s TabDDPM config on the
diamonds table: 43,152 training rows, a 0.21 M-parameter ``tabular_mlp``, batch 1,024, one
CPU thread) run twice per
repeat, alternating: once with the modality's ``FieldsDataset`` (one tensor index per field
per batch, ``__getitems__``) and once with the same rows behind a dataset that has only
``__getitem__`` (PyTorch's default path: 1,024 item dicts, then a stack per field, as
polydiff did before). A run's rate is steps over the CPU seconds of its ``steps`` training
steps after the first ``warmup``; the loss curves of the two are checked to be identical.

    python bench/data_fetch.py [--steps 100 --repeats 3]

Writes ``bench/results/data_fetch.md`` and ``.csv``.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import polydiff
from polydiff.training import Trainer

sys.path.insert(0, str(Path(__file__).parent))
import tabular  # noqa: E402
from common import save_report  # noqa: E402

RESULTS = Path(__file__).parent / "results"


class ItemsOnly(torch.utils.data.Dataset):
    """A dataset's rows through ``__getitem__`` alone (no batched fetch)."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.dataset[i]


class StepClock:
    """Records the CPU time and loss of every training step (a ``polydiff_train_step_end`` hook)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.losses: list[float] = []

    @polydiff.hookimpl
    def polydiff_train_step_end(self, trainer, step, metrics):
        self.times.append(time.process_time())
        self.losses.append(float(metrics["loss"]))


def run(items_only: bool, steps: int, warmup: int) -> tuple[float, list[float]]:
    clock = StepClock()
    manager = polydiff.make_plugin_manager(extra_plugins={"clock": clock})
    with tempfile.TemporaryDirectory() as root:
        config = polydiff.config_from_dict(tabular.config("diamonds", root), [
            f"training.steps={warmup + steps}", "training.log_every=1000000", "sampling.steps=2",
            "evaluation.n_samples=16"])
        experiment = polydiff.build_experiment(config, manager)
        if items_only:
            modality, dataset = experiment.modality, experiment.modality.dataset
            modality.dataset = lambda split: ItemsOnly(dataset(split))
        trainer = Trainer(experiment, run_dir=Path(root) / "run")
        trainer.fit()
    rate = steps / (clock.times[-1] - clock.times[warmup - 1])
    return rate, clock.losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rates: dict[str, list[float]] = {"FieldsDataset (batched fetch)": [], "item by item (__getitem__ only)": []}
    for _ in range(args.repeats):
        fast, fast_losses = run(False, args.steps, args.warmup)
        slow, slow_losses = run(True, args.steps, args.warmup)
        if fast_losses != slow_losses:
            raise SystemExit("the two loading paths gave different loss curves: the batches differ")
        rates["FieldsDataset (batched fetch)"].append(fast)
        rates["item by item (__getitem__ only)"].append(slow)
    rows = [{"loader": name, "steps_per_cpu_second": statistics.median(r), "best": max(r),
             "runs": ", ".join(f"{v:.2f}" for v in r)} for name, r in rates.items()]
    ratio = rows[0]["steps_per_cpu_second"] / rows[1]["steps_per_cpu_second"]
    rows.append({"loader": "ratio batched / item by item", "steps_per_cpu_second": ratio,
                 "best": rows[0]["best"] / rows[1]["best"], "runs": "identical loss curves"})
    table = pd.DataFrame(rows)
    text = (f"# Batched fetch: training steps per CPU second, tabular diamonds\n\n"
            f"tabular_mlp (0.21 M parameters), batch 1,024, {args.steps} steps after {args.warmup}, "
            f"{args.repeats} runs each, alternating; cpu (1 thread), torch {torch.__version__}, "
            f"python {platform.python_version()}. Same seed, same batches (loss curves checked identical).\n\n"
            + table.to_markdown(index=False, floatfmt=".3g") + "\n")
    print(save_report(args.out, "data_fetch", text, table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
