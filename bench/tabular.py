"""Synthetic tables: polydiff-tabular (TabDDPM) against SDV's GaussianCopula and CTGAN at equal CPU time.

For each data set (penguins: 344 rows with missing values; diamonds: 53,940 rows) every
synthesizer gets the same training rows (the polydiff-tabular modality's seeded split) and
the same budget of CPU seconds on one thread (SDV's fits run in a second process on the
other core while polydiff-tabular trains; ``bench/common.py``; GaussianCopula needs far
less), samples as many rows as the training split, and is scored against the real
validation split with one implementation of every metric (``polydiff_tabular.metrics``,
SDMetrics' definitions):

- column shapes (KS / TV complement, higher is better), column pair trends (correlation /
  contingency similarity, higher), detection (ROC AUC of a logistic regression telling real
  from synthetic rows: 0.5 is ideal, lower is better; averaged over ``DETECTION_DRAWS``
  synthetic tables, each over ``DETECTION_SEEDS`` fold shuffles, with its standard error),
  machine-learning efficiency (train on synthetic, test on real; the score of training on
  real rows is printed), distance to closest record (median synthetic DCR over the real
  holdout's: about 1 is healthy, near 0 means copying);
- a cross-check: sdmetrics' own QualityReport (Column Shapes, Column Pair Trends) of the same
  tables, computed in the SDV environment.

polydiff-tabular: Gaussian diffusion (VP-cosine, v prediction) on the quantile-normal numbers
and masked diffusion on the categories and missingness flags, one shared time, ``tabular_mlp``
trained with a cosine learning-rate decay over as many steps as fit the budget (``planned_steps``:
a short probe fit timed step by step, like CTGAN's epochs), 200 ancestral sampling steps with TabDDPM's
large reverse variance. SDV runs in ``.venv-sdv`` (Business Source License, pandas < 3;
``make bench-tabular`` creates it) through ``bench/tabular_sdv.py``.

    python bench/tabular.py [--seconds 120 --datasets penguins diamonds]

Writes ``bench/results/tabular.md`` / ``.csv`` and, under ``bench/results/tabular/<dataset>/``, the
first 2,000 rows of each synthetic table and of the validation split, and SDV's ``fit.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import polydiff
from polydiff_tabular import metrics as M

sys.path.insert(0, str(Path(__file__).parent))
from common import CPUBudget, StepClock, note_line, report_arguments, save_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
SDV_PYTHON = ROOT / ".venv-sdv" / "bin" / "python"
OURS = "polydiff-tabular (TabDDPM)"
REFERENCE = "real training rows (reference)"
"""Not a synthesizer: the training split itself, scored like one. It shows each metric's best
reachable value against this validation split (detection's floor is above 0.5 on a finite
sample; dcr is 0 because every row is its own closest record)."""
KEEP_ROWS = 2000
"""Rows of each synthetic (and the validation) table kept under ``bench/results/tabular/``."""
DETECTION_DRAWS = 4
"""Independent synthetic tables (each as many rows as the training split) each synthesizer
writes; detection is their mean, with the standard error over the draws. On diamonds one
draw of 43,152 rows moves a model's AUC by about 0.0015 (sd), more than the fold shuffles
do and as much as the gaps between synthesizers near the floor. The other metrics score the
first draw."""
DETECTION_SEEDS = 4
"""Fold shuffles per draw (one 3-fold shuffle moves the AUC on diamonds by about 0.002 (sd));
the reference row, a single table, gets ``DETECTION_DRAWS * DETECTION_SEEDS`` shuffles."""
TIE_SE = 2.0
"""A detection gap under this many standard errors of the difference is reported as a tie."""
TRAINING = {"penguins": {"batch_size": 128, "lr": 2e-3}, "diamonds": {"batch_size": 512, "lr": 2e-3}}
"""Batch 512 on diamonds: at 300 CPU seconds, two seeds times two draws gave detection 0.5061 to
0.5098 (mean 0.5080) against 0.5096 to 0.5105 for batch 1024 (three runs) and 0.5097 for 256."""


PROBE_STEPS = (100, 600)
"""The probe fit's length and the steps it skips before timing (``planned_steps``)."""
STEP_SHARE = 0.9
"""Fraction of the budget the planned steps are meant to fill, so that the cosine decay ends
before the budget's hard stop on a machine slowed by the other core's work."""


def config(dataset: str, root: str, steps: int = 10**7) -> dict:
    """polydiff-tabular's bench config: TabDDPM with the learning rate decayed over ``steps``."""
    return polydiff.config_from_dict({
        "experiment": {"name": f"tab-{dataset}", "seed": 0, "run_root": root, "device": "cpu"},
        "modality": {"name": "tabular", "dataset": dataset},
        "corruption": {"name": "masked",
                       "fields": {"num": {"name": "gaussian", "schedule": "vp-cosine", "parametrization": "v"}}},
        "denoiser": {"name": "tabular_mlp"},
        "training": {"steps": steps, **TRAINING[dataset], "warmup_steps": 100, "lr_schedule": "cosine",
                     "ema_decay": 0.999, "log_every": 200, "checkpoint_every": 0, "progress": False},
        "sampling": {"sampler": "ancestral", "steps": 200, "options": {"gaussian_variance": "large"}},
        "evaluation": {"n_samples": 256, "metrics": ["column_shapes"]},
    })


def planned_steps(dataset: str, seconds: float, root: str) -> tuple[int, float]:
    """(training steps that fit ``STEP_SHARE`` of ``seconds`` CPU seconds, CPU seconds per step).

    One probe fit of ``PROBE_STEPS[1]`` steps is timed step by step (``StepClock``) from step
    ``PROBE_STEPS[0]`` on, so neither the one-off data and model setup nor the first steps
    enter the estimate (the budget, too, counts from the first step). The probe's time is not
    charged to the budget."""
    skip, steps = PROBE_STEPS
    clock = StepClock()
    manager = polydiff.make_plugin_manager(extra_plugins={"clock": clock})
    polydiff.train(config(dataset, root, steps), run_dir=Path(root) / "probe", manager=manager)
    per_step = clock.seconds_per_step(skip)
    return max(steps, int(STEP_SHARE * seconds / per_step)), per_step


def run_polydiff(dataset: str, args: argparse.Namespace, root: str
                 ) -> tuple[polydiff.Experiment, list[pd.DataFrame], dict]:
    """Train TabDDPM for the budget and sample ``DETECTION_DRAWS`` tables of as many rows as the
    training split."""
    steps, per_step = planned_steps(dataset, args.seconds, root)
    budget = CPUBudget(args.seconds)
    manager = polydiff.make_plugin_manager(extra_plugins={"budget": budget})
    experiment = polydiff.build_experiment(config(dataset, root, steps), manager)
    start = time.process_time()
    result = polydiff.train(experiment.config, run_dir=Path(root) / dataset, manager=manager)
    seconds = time.process_time() - start
    run = polydiff.load_run(Path(root) / dataset, manager=manager)
    n = len(run.experiment.modality.frame("train"))
    g = torch.Generator().manual_seed(1)
    draws = []
    for _ in range(DETECTION_DRAWS):
        parts = []
        for lo in range(0, n, 5000):
            out = run.experiment.sample(run.model, min(5000, n - lo), generator=g)
            parts.append(run.experiment.modality.decode(out.state))
        draws.append(pd.concat(parts, ignore_index=True))
    return run.experiment, draws, {"fit_cpu_seconds": seconds, "steps": result.steps, "planned_steps": steps,
                                   "step_cpu_seconds": per_step}


def start_sdv(*arguments: object) -> subprocess.Popen:
    """Start ``bench/tabular_sdv.py`` with ``arguments`` in the SDV environment, on one thread."""
    if not SDV_PYTHON.is_file():
        raise SystemExit(f"the SDV environment {SDV_PYTHON.parent.parent} is missing: run `make bench-tabular` "
                         "(it creates it with `python3.11 -m venv .venv-sdv && .venv-sdv/bin/pip install sdv==2.0.0`)")
    return subprocess.Popen([str(SDV_PYTHON), str(Path(__file__).parent / "tabular_sdv.py"), *map(str, arguments)],
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def finish(process: subprocess.Popen) -> None:
    """Wait for an SDV script; fail with its exit status."""
    if process.wait() != 0:
        raise SystemExit(f"bench/tabular_sdv.py {' '.join(map(str, process.args[2:4]))}... exited with {process.returncode}")


def sdv_script(*arguments: object) -> None:
    """Run ``bench/tabular_sdv.py`` with ``arguments`` to the end."""
    finish(start_sdv(*arguments))


def keep(folder: Path, paths: list[Path]) -> None:
    """Copy each file to ``folder``, a CSV as its first ``KEEP_ROWS`` rows (the scores use every row)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if path.suffix == ".csv":
            pd.read_csv(path, nrows=KEEP_ROWS).to_csv(folder / path.name, index=False)
        else:
            shutil.copyfile(path, folder / path.name)


def typed_like(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """A CSV-read synthetic table with the real table's dtypes (categories, nullable ints, bools)."""
    out = frame[list(like.columns)].copy()
    for column, dtype in like.dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype):
            values = out[column].astype("string")
            cats = dtype.categories
            mapping = {str(c): c for c in cats}
            out[column] = pd.Categorical(values.map(mapping), categories=cats)
        elif str(dtype) in ("boolean", "bool"):
            out[column] = out[column].map({True: True, False: False, "True": True, "False": False}).astype("boolean")
        elif str(dtype).startswith("datetime"):
            out[column] = pd.to_datetime(out[column], errors="coerce")
        else:
            out[column] = pd.to_numeric(out[column], errors="coerce").astype(dtype if str(dtype) != "int64" else "Int64")
    return out


def detection(draws: list[pd.DataFrame], val: pd.DataFrame, kinds: dict, seed: int) -> tuple[float, float]:
    """(mean detection AUC, its standard error): over the draws when there are several (each the
    mean of ``DETECTION_SEEDS`` fold shuffles), else over ``DETECTION_DRAWS * DETECTION_SEEDS``
    shuffles of the one table."""
    shuffles = DETECTION_SEEDS if len(draws) > 1 else DETECTION_DRAWS * DETECTION_SEEDS
    aucs = np.array([[M.detection_frames(val, table, seed + k, kinds)[0]["value"] for k in range(shuffles)]
                     for table in draws])
    values = aucs.mean(axis=1) if len(draws) > 1 else aucs[0]
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def score(name: str, draws: list[pd.DataFrame], modality, kinds: dict, seed: int) -> dict:
    """Every metric of polydiff_tabular.metrics (overall values): detection over the draws, the
    others on the first."""
    train, val = modality.frame("train"), modality.frame("validation")
    synthetic = draws[0]
    rows = (M.column_shapes_frames(val, synthetic, kinds) + M.column_pair_trends_frames(val, synthetic, kinds)
            + M.dcr_frames(synthetic, train, val, seed, kinds))
    if modality.target:
        rows += M.ml_efficiency_frames(synthetic, train, val, modality.target, seed, kinds)
    auc, se = detection(draws, val, kinds, seed)
    out = {"synthesizer": name, "detection": auc, "detection_se": se}
    for r in rows:
        if r["metric"] in ("column_shapes", "column_pair_trends", "dcr"):
            out[r["metric"]] = r["value"]
        if r["metric"] == "ml_efficiency":
            out["ml_efficiency"], out["ml_efficiency_real"] = r["value"], r.get("real")
    return out


def draw_paths(folder: Path, stem: str) -> list[Path]:
    """The CSV files of a synthesizer's ``DETECTION_DRAWS`` tables (as ``bench/tabular_sdv.py`` names them)."""
    return [folder / (f"{stem}.csv" if k == 1 else f"{stem}_{k}.csv") for k in range(1, DETECTION_DRAWS + 1)]


def run_dataset(dataset: str, args: argparse.Namespace, out: Path) -> list[dict]:
    with tempfile.TemporaryDirectory() as root:
        modality = polydiff.build_experiment(config(dataset, root)).modality
        kinds = M.modality_kinds(modality)
        work, folder = Path(root), out / dataset
        train_csv, validation_csv, kinds_json = work / "train.csv", work / "validation.csv", work / "kinds.json"
        modality.frame("train").to_csv(train_csv, index=False)
        modality.frame("validation").to_csv(validation_csv, index=False)
        kinds_json.write_text(json.dumps(kinds))
        sdv = start_sdv("fit", "--train", train_csv, "--kinds", kinds_json, "--seconds", args.seconds,
                        "--n", len(modality.frame("train")), "--draws", DETECTION_DRAWS, "--out", work)
        experiment, ours, info = run_polydiff(dataset, args, root)
        modality = experiment.modality
        for path, table in zip(draw_paths(work, "polydiff_tabular"), ours):
            table.to_csv(path, index=False)
        finish(sdv)
        fits = json.loads((work / "fit.json").read_text())

        def read_draws(stem: str) -> list[pd.DataFrame]:
            return [typed_like(pd.read_csv(path), ours[0]) for path in draw_paths(work, stem)]

        tables = {OURS: (ours, info),
                  "sdv gaussian-copula": (read_draws("gaussian_copula"), fits["sdv gaussian-copula"]),
                  "sdv ctgan": (read_draws("ctgan"), fits["sdv ctgan"]),
                  REFERENCE: ([modality.frame("train")], {"fit_cpu_seconds": 0.0})}
        files = {OURS: work / "polydiff_tabular.csv", "sdv gaussian-copula": work / "gaussian_copula.csv",
                 "sdv ctgan": work / "ctgan.csv", REFERENCE: train_csv}
        keep(folder, [validation_csv, work / "fit.json", *(path for name, path in files.items() if name != REFERENCE)])
        check = work / "sdmetrics.json"
        sdv_script("score", "--real", validation_csv, "--kinds", kinds_json, "--out", check, *files.values())
        cross = json.loads(check.read_text())
        rows = []
        for name, (table, fit) in tables.items():
            row = {"dataset": dataset, **score(name, table, modality, kinds, seed=0),
                   "train_cpu_seconds": fit["fit_cpu_seconds"],
                   "sdmetrics_column_shapes": cross[str(files[name])]["column_shapes"],
                   "sdmetrics_column_pair_trends": cross[str(files[name])]["column_pair_trends"]}
            rows.append(row)
            print(row, file=sys.stderr)
        return rows


def standing(ours: pd.Series, others: pd.DataFrame, column: str, sign: int) -> str:
    """"ahead", "tied" or "NOT ahead" of the best other synthesizer on one metric (``sign`` 1:
    higher is better, -1: lower). Detection gives the gap in standard errors of the difference
    and counts a gap under ``TIE_SE`` of them as a tie: the draws' noise, not a lead."""
    best = others.loc[(sign * others[column]).idxmax()]
    gap = sign * (ours[column] - best[column])
    if abs(gap) < 1e-12:
        return f"tied ({ours[column]:.4f}, as {best['synthesizer']})"
    if column == "detection" and "detection_se" in ours:
        se = float(np.hypot(ours["detection_se"], best["detection_se"]))
        word = "tied within noise" if abs(gap) < TIE_SE * se else "ahead" if gap > 0 else "NOT ahead"
        return word + f" ({ours[column]:.4f} vs {best['synthesizer']} {best[column]:.4f}, {gap / se:+.1f} SE)"
    return "ahead" if gap > 0 else "NOT ahead"


def write(table: pd.DataFrame, args: argparse.Namespace) -> str:
    lines = []
    for dataset, group in table.groupby("dataset", sort=False):
        ours = group[group["synthesizer"] == OURS].iloc[0]
        others = group[~group["synthesizer"].isin([OURS, REFERENCE])]
        targets = {"column shapes": ("column_shapes", 1), "pair trends": ("column_pair_trends", 1),
                   "detection (lower AUC)": ("detection", -1), "ML efficiency": ("ml_efficiency", 1)}
        lines.append(f"- {dataset}: " + ", ".join(f"{label} {standing(ours, others, column, sign)}"
                                                  for label, (column, sign) in targets.items()))
    note = note_line(args)
    reference = (f" The row {REFERENCE!r} is the training split itself scored like a synthesizer, not a synthesizer: "
                 f"each metric's value for real rows against this validation split (detection's floor is not "
                 f"exactly 0.5 on a finite sample; dcr is 0, every row being its own closest record)." if (table["synthesizer"] == REFERENCE).any() else "")
    text = (f"# Synthetic tables: polydiff-tabular against SDV at equal CPU time\n\n{note}"
            f"{args.seconds:.0f} CPU seconds of training per synthesizer (one thread; GaussianCopula needs less, "
            f"see train_cpu_seconds), as many synthetic rows as training rows, every metric computed by "
            f"polydiff_tabular.metrics against the real validation split; the sdmetrics_* columns are sdmetrics' "
            f"own QualityReport of the same tables (a cross-check of the implementation; sdmetrics 0.32's Column "
            f"Pair Trends averages only the pairs whose real association meets its threshold, the others are NaN "
            f"there, so it can differ from the all-pairs mean here). Detection is a ROC AUC "
            f"(0.5 ideal, lower is better), the mean over {DETECTION_DRAWS} synthetic tables of {DETECTION_SEEDS} "
            f"shuffles of the 3 folds each (detection_se: its standard error over the tables; the reference row's "
            f"over {DETECTION_DRAWS * DETECTION_SEEDS} shuffles); the other metrics score the first table. "
            f"A detection gap under {TIE_SE:.0f} standard errors is called a tie. dcr is median synthetic / "
            f"holdout distance to the closest training record.{reference} cpu, torch {torch.__version__}, python {platform.python_version()}.\n\n"
            + table.to_markdown(index=False, floatfmt=".4g") + "\n\nTarget (ahead of both SDV synthesizers):\n\n"
            + "\n".join(lines) + "\n")
    return save_report(args.out, "tabular", text, table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="training CPU seconds per synthesizer")
    parser.add_argument("--datasets", nargs="+", default=["penguins", "diamonds"])
    report_arguments(parser, RESULTS)
    args = parser.parse_args(argv)
    if args.rewrite is not None:
        print(write(pd.read_csv(args.rewrite), args))
        return 0
    torch.set_num_threads(1)
    out = args.out / "tabular"
    rows = []
    for dataset in args.datasets:
        rows += run_dataset(dataset, args, out)
    print(write(pd.DataFrame(rows), args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
