"""Trainer overhead: steps/s of ``polydiff.training.Trainer`` against a bare PyTorch loop.

Both loops do the same work on the same data: the same MLP denoiser (built by the same
config and seed), the same loss (``experiment.loss``), AdamW, gradient clipping, the same
warm-up + cosine learning rate, an EMA update every step, and a ``DataLoader`` over the
same dataset with the same batch size. The trainer also writes its metrics line every
``log_every`` steps and calls its hooks; checkpoints and evaluation happen only after the
timed window (``checkpoint_every = 0`` and ``eval_every = 0`` mean "at the end"). Each
step after ``warmup`` is timed on its own and a run's rate is one over its median step time
(robust to bursts of other load); each loop runs ``repeats`` times, alternating, and the
median and the best run of each are reported.

    python bench/trainer.py [--steps 200 --repeats 3 --width 512 --depth 4 --batch 512]

Writes ``bench/results/trainer.md`` and ``bench/results/trainer.csv``.
"""
from __future__ import annotations

import argparse
import copy
import csv
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import polydiff
from polydiff import Continuous, ModalitySpec
from polydiff.experiment import build_experiment
from polydiff.training import Trainer
from polydiff.training.lr import lr_factor

RESULTS = Path(__file__).parent / "results"


class VectorData(torch.utils.data.Dataset):
    """``n`` items ``{"x": (dim,)}`` of seeded Gaussian data."""

    def __init__(self, n: int, dim: int) -> None:
        self.x = torch.randn(n, dim, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i]}


class VectorModality:
    name = "benchvec"
    cond_spaces: dict = {}

    def __init__(self, dim: int = 32, n: int = 8192) -> None:
        self.spaces = {"x": Continuous((dim,))}
        self.dim, self.n = dim, n

    def dataset(self, split: str) -> VectorData:
        return VectorData(self.n, self.dim)

    def decode(self, state):
        return state["x"].numpy()

    def encode(self, decoded):
        return {"x": torch.as_tensor(decoded)}

    def write_artefacts(self, samples, out_dir):
        return []


class BenchPlugin:
    @polydiff.hookimpl
    def polydiff_modalities(self):
        yield ModalitySpec(name="benchvec", summary="Gaussian vectors for the trainer benchmark",
                           factory=VectorModality)


class StepClock:
    """Records the end time of every step after ``warmup``; the rate is 1 / median step time.

    The median of the per-step times ignores the bursts in which another process takes the
    CPU, which on a shared 2-core machine otherwise move a whole-window rate by +-15 %.
    """

    def __init__(self, warmup: int, last: int, device: torch.device) -> None:
        self.warmup, self.last, self.device = warmup, last, device
        self.times: list[float] = []

    def mark(self, step: int) -> None:
        if self.warmup <= step <= self.last:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())

    @property
    def steps_per_s(self) -> float:
        durations = [b - a for a, b in zip(self.times, self.times[1:])]
        return 1.0 / statistics.median(durations)

    @polydiff.hookimpl
    def polydiff_train_step_end(self, trainer, step, metrics):
        self.mark(step)


def make_config(args: argparse.Namespace, run_root: str) -> dict:
    return polydiff.config_from_dict({
        "experiment": {"name": "bench", "seed": 0, "run_root": run_root, "device": args.device},
        "modality": {"name": "benchvec", "dim": args.dim, "n": args.n_data},
        "corruption": {"name": "gaussian", "schedule": "flow"},
        "denoiser": {"name": "mlp", "width": args.width, "depth": args.depth},
        "training": {"steps": args.steps, "batch_size": args.batch, "lr": 1e-3, "warmup_steps": 10,
                     "grad_clip": 1.0, "ema_decay": 0.999, "checkpoint_every": 0, "eval_every": 0,
                     "log_every": 50},
        "sampling": {"sampler": "ancestral", "steps": 2},
        "evaluation": {"n_samples": 8, "metrics": []},
    })


def run_trainer(args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory() as root:
        clock = StepClock(args.warmup, args.steps, torch.device("cpu"))
        manager = polydiff.make_plugin_manager(autoload=False, extra_plugins={"bench": BenchPlugin(), "clock": clock})
        trainer = Trainer(build_experiment(make_config(args, root), manager), Path(root) / "run")
        clock.device = trainer.device
        trainer.fit()
        return clock.steps_per_s


def run_bare(args: argparse.Namespace) -> float:
    """The hand-written loop a person would write for the same experiment."""
    manager = polydiff.make_plugin_manager(autoload=False, extra_plugins={"bench": BenchPlugin()})
    cfg = make_config(args, tempfile.gettempdir())
    experiment = build_experiment(cfg, manager)
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else None
    model = experiment.denoiser.to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    params, ema_params = list(model.parameters()), list(ema.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=cfg["training"]["weight_decay"],
                            fused=device.type == "cuda" or None)
    loader = torch.utils.data.DataLoader(experiment.modality.dataset("train"), batch_size=args.batch, shuffle=True,
                                         drop_last=True, generator=torch.Generator().manual_seed(0),
                                         pin_memory=device.type == "cuda")
    generator = torch.Generator().manual_seed(0)
    clock = StepClock(args.warmup, args.steps, device)
    step, it = 0, iter(loader)
    while step < args.steps:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        for group in opt.param_groups:
            group["lr"] = 1e-3 * lr_factor(step + 1, total_steps=args.steps, warmup_steps=10)
        with amp if amp is not None else torch.autocast("cpu", enabled=False):
            loss, _ = experiment.loss(model, batch, generator=generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - min(0.999, (2 + step) / (11 + step)))
        step += 1
        clock.mark(step)
    return clock.steps_per_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--n-data", type=int, default=8192)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    results: dict[str, list[float]] = {"trainer": [], "bare": []}
    for i in range(args.repeats):  # alternate which loop goes first, so neither always runs warm
        order = (("trainer", run_trainer), ("bare", run_bare))
        for name, run in order if i % 2 == 0 else order[::-1]:
            results[name].append(run(args))
        print(f"repeat {i + 1}: trainer {results['trainer'][-1]:.2f} steps/s, bare {results['bare'][-1]:.2f} steps/s",
              file=sys.stderr)
    write_results(args, results)
    return 0


def write_results(args: argparse.Namespace, results: dict[str, list[float]]) -> None:
    trainer, bare = statistics.median(results["trainer"]), statistics.median(results["bare"])
    device = "cuda: " + torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available() else \
        f"cpu ({torch.get_num_threads()} threads)"
    setup = (f"MLP width {args.width} depth {args.depth}, batch {args.batch}, {args.steps} steps "
             f"(rate = 1 / median step time after step {args.warmup}), {args.repeats} runs each, alternating; {device}; torch {torch.__version__}, "
             f"python {platform.python_version()}")
    rows = [("polydiff Trainer", trainer, results["trainer"]), ("bare PyTorch loop", bare, results["bare"])]
    best = max(results["trainer"]) / max(results["bare"])
    table = ["| loop | steps/s (median) | steps/s (best) | runs |", "|---|---|---|---|"]
    table += [f"| {name} | {value:.2f} | {max(runs):.2f} | {', '.join(f'{v:.2f}' for v in runs)} |"
              for name, value, runs in rows]
    table.append(f"| **ratio trainer / bare** | **{trainer / bare:.3f}** | **{best:.3f}** | target >= 0.95 |")
    text = f"# Trainer overhead\n\n{setup}\n\n" + "\n".join(table) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trainer.md").write_text(text, encoding="utf-8")
    with (args.out / "trainer.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["loop", "repeat", "steps_per_s", "width", "depth", "batch", "steps", "device"])
        for name, _, runs in rows:
            for i, value in enumerate(runs):
                writer.writerow([name, i + 1, f"{value:.4f}", args.width, args.depth, args.batch, args.steps, device])
        writer.writerow(["ratio_of_medians", "", f"{trainer / bare:.4f}", args.width, args.depth, args.batch,
                         args.steps, device])
        writer.writerow(["ratio_of_best", "", f"{best:.4f}", args.width, args.depth, args.batch, args.steps, device])


if __name__ == "__main__":
    raise SystemExit(main())
