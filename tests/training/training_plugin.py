"""A tiny in-process plugin for the trainer tests: a 2-D Gaussian modality, a one-step
sampler (used when no built-in sampler is registered yet), a mean-gap metric, and a
recorder of loop events. Loaded by ``conftest.py`` and by ``ddp_script.py``."""
from __future__ import annotations

import csv
from pathlib import Path

import torch

import polydiff
from polydiff import Continuous, MetricSpec, ModalitySpec, SampleOutput, SamplerSpec


class DictDataset(torch.utils.data.Dataset):
    """Unbatched ``{"x": (2,)}`` items from a fixed tensor."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i]}


class TinyModality:
    """2-D Gaussian blob centred at (1, -1)."""

    name = "tmod"
    cond_spaces: dict = {}

    def __init__(self, n_train: int = 64, n_validation: int = 64) -> None:
        self.spaces = {"x": Continuous((2,))}
        self.sizes = {"train": n_train, "validation": n_validation}

    def dataset(self, split: str) -> DictDataset:
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        x = 0.5 * torch.randn(self.sizes[split], 2, generator=g) + torch.tensor([1.0, -1.0])
        return DictDataset(x)

    def decode(self, state):
        return state["x"].numpy()

    def encode(self, decoded):
        return {"x": torch.as_tensor(decoded)}

    def write_artefacts(self, samples, out_dir: Path) -> list[Path]:
        path = Path(out_dir) / "samples.csv"
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows(samples["x"].tolist())
        return [path]


def one_step(model, processes, x, grid, *, generator=None, callback=None, **options):
    """x0_hat at the first grid time: one network evaluation."""
    t = torch.full((next(iter(x.values())).shape[0],), float(grid[0]))
    pred = model(x, t)
    return SampleOutput(state={f: p.x0 for f, p in pred.items()}, nfe=1)


def mean_gap(samples, reference, *, spaces, generator=None):
    return [{"field": f, "value": float((samples[f].mean(0) - reference[f].mean(0)).norm())} for f in spaces]


class TinyPlugin:
    @polydiff.hookimpl
    def polydiff_modalities(self):
        yield ModalitySpec(name="tmod", summary="2-D Gaussian blob for trainer tests", factory=TinyModality)

    @polydiff.hookimpl
    def polydiff_samplers(self):
        yield SamplerSpec(name="tonestep", summary="x0 prediction at t=1, one NFE", function=one_step,
                          families=frozenset({"gaussian"}))

    @polydiff.hookimpl
    def polydiff_metrics(self):
        yield MetricSpec(name="tmean_gap", summary="distance of the means", function=mean_gap,
                         modalities=frozenset({"tmod"}))


class Recorder:
    """Records every loop event; ``stop_at`` makes it request a stop at that step."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.events: list[tuple] = []
        self.stop_at = stop_at

    @polydiff.hookimpl
    def polydiff_train_start(self, trainer):
        self.events.append(("start", trainer.step))

    @polydiff.hookimpl
    def polydiff_train_step_end(self, trainer, step, metrics):
        self.events.append(("step", step, dict(metrics)))
        if self.stop_at is not None and step == self.stop_at:
            trainer.request_stop(f"asked at step {step}")

    @polydiff.hookimpl
    def polydiff_evaluate(self, trainer, step, rows):
        self.events.append(("evaluate", step, list(rows)))

    @polydiff.hookimpl
    def polydiff_train_end(self, trainer, status):
        self.events.append(("end", status))

    def of(self, kind: str) -> list[tuple]:
        return [e for e in self.events if e[0] == kind]


def make_manager(recorder: Recorder | None = None) -> polydiff.PluginManager:
    extra = {"tplug": TinyPlugin()}
    if recorder is not None:
        extra["trecorder"] = recorder
    return polydiff.make_plugin_manager(autoload=False, extra_plugins=extra)


def tiny_config(run_root: Path, manager: polydiff.PluginManager, **training) -> dict:
    """A validated config: MLP width 32, flow schedule, 16-item batches, eval of 32 samples."""
    sampler = "ancestral" if "ancestral" in manager.registry.names("sampler") else "tonestep"
    raw = {"experiment": {"name": "tiny", "seed": 0, "run_root": str(run_root), "device": "cpu"},
           "modality": {"name": "tmod"},
           "corruption": {"name": "gaussian", "schedule": "flow"},
           "denoiser": {"name": "mlp", "width": 32, "depth": 2, "time_dim": 16},
           "training": {"steps": 12, "batch_size": 16, "lr": 3e-3, "log_every": 4, "checkpoint_every": 5,
                        "eval_every": 0, "progress": False, "ema_decay": 0.9, "warmup_steps": 2, **training},
           "sampling": {"sampler": sampler, "steps": 2, "batch_size": 64},
           "evaluation": {"n_samples": 32, "metrics": ["tmean_gap"]}}
    return polydiff.config_from_dict(raw)
