"""Comparison grids: plugins x data sets x corruptions x samplers x NFE x seeds -> one table.

A grid config is a base experiment config (inline tables, or ``base = "path.toml"``
relative to the grid file) plus a ``[grid]`` table of dotted config keys -> lists:

.. code-block:: toml

    base = "toy_gmm.toml"
    [grid]
    "corruption.schedule" = ["edm", "flow"]
    "sampling.sampler" = ["euler", "dpmpp_2m"]
    "sampling.steps" = [5, 10, 20]
    "experiment.seed" = [0, 1]

Keys under ``sampling.`` change only how a trained model is sampled, so one model is
trained per combination of the other keys and reused for every sampling combination.
Every combination is validated, and every component name resolved, before anything runs.
"""
from __future__ import annotations

import copy
import itertools
import json
import re
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from polydiff.config import config_from_dict
from polydiff.errors import ConfigError, PolydiffError, UnknownComponentError
from polydiff.plugins import PluginManager, make_plugin_manager

SAMPLING_PREFIX = "sampling."
SEED_KEY = "experiment.seed"
RESULT_KEYS = ["sampling.sampler", "sampling.steps"]


def load_grid(path: str | Path) -> dict[str, Any]:
    """Read a grid TOML file; a ``base`` path is resolved relative to the grid file.

    Returns:
        ``{"base": raw experiment config dict, "grid": {dotted key: list}, "source": str}``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"grid file {str(path)!r} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from exc
    return normalise_grid(raw, root=path.parent, source=str(path))


def normalise_grid(raw: Mapping[str, Any], *, root: Path = Path("."), source: str = "grid") -> dict[str, Any]:
    """Split a raw grid mapping into its base config and its ``[grid]`` table (validated)."""
    raw = dict(raw)
    grid = raw.pop("grid", None)
    base = raw.pop("base", None)
    raw.pop("source", None)
    if not isinstance(grid, dict) or not grid:
        raise ConfigError(f"{source}: a grid config needs a non-empty [grid] table of dotted keys -> lists, "
                          f'e.g. "sampling.steps" = [5, 10, 20]')
    if isinstance(base, str):
        base_path = (Path(root) / base)
        if not base_path.is_file():
            raise ConfigError(f"{source}: base = {base!r} does not exist (looked for {base_path})")
        base = _merge(tomllib.loads(base_path.read_text(encoding="utf-8")), raw)
    elif isinstance(base, dict):
        base = _merge(base, raw)
    elif base is None:
        base = raw
    else:
        raise ConfigError(f"{source}: base must be a path to a TOML file or a table, got {base!r}")
    for key, values in grid.items():
        if "." not in key:
            raise ConfigError(f"{source}: [grid] key {key!r} must be a dotted config key such as 'sampling.steps'")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: [grid] {key!r} must be a non-empty list, got {values!r}")
    return {"base": base, "grid": grid, "source": source}


def _merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, table by table (the grid file's own tables win)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    *tables, last = key.split(".")
    node = raw
    for name in tables:
        node = node.setdefault(name, {})
        if not isinstance(node, dict):
            raise ConfigError(f"[grid] {key!r}: {name!r} is not a table in the base config")
    node[last] = copy.deepcopy(value)


def combinations(grid: Mapping[str, list[Any]], keys: list[str]) -> list[dict[str, Any]]:
    """Every combination of the values of ``keys`` (in grid order), as dicts."""
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def split_keys(grid: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(training keys, sampling-only keys) of a grid."""
    training = [k for k in grid if not k.startswith(SAMPLING_PREFIX)]
    return training, [k for k in grid if k.startswith(SAMPLING_PREFIX)]


def build_config(base: Mapping[str, Any], assignment: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Apply one combination to the base config and validate it."""
    raw = copy.deepcopy(dict(base))
    for key, value in assignment.items():
        _set_dotted(raw, key, value)
    label = ", ".join(f"{k}={v}" for k, v in assignment.items())
    return config_from_dict(raw, source=f"{source} [{label}]")


def preflight(grid_config: Mapping[str, Any], manager: PluginManager) -> None:
    """Validate every combination and resolve its component names; report all problems at once."""
    from polydiff.runs import check_components

    problems: dict[str, str] = {}
    keys = list(grid_config["grid"])
    for assignment in combinations(grid_config["grid"], keys):
        try:
            check_components(build_config(grid_config["base"], assignment, grid_config["source"]), manager)
        except PolydiffError as exc:
            message = str(exc)
            if isinstance(exc, UnknownComponentError) and "unknown modality" in message:
                message += (" Install its plugin with `polydiff plugins install NAME` "
                            "(see `polydiff plugins list --all`).")
            problems.setdefault(message, ", ".join(f"{k}={v}" for k, v in assignment.items()))
    if problems:
        lines = [f"  - {message} (first at {where})" for message, where in problems.items()]
        raise ConfigError(f"{grid_config['source']}: {len(problems)} problem(s) found before running anything:\n"
                          + "\n".join(lines))


def _slug(i: int, assignment: Mapping[str, Any]) -> str:
    text = "-".join(str(v) for v in assignment.values())
    return f"{i:03d}-" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:60] or "base")


def _train_one(config: dict[str, Any], run_dir: Path, manager: PluginManager) -> float:
    from polydiff.training.trainer import train

    start = time.perf_counter()
    train(config, run_dir=run_dir, manager=manager)
    return time.perf_counter() - start


def _evaluate_run(run_dir: Path, train_assignment: Mapping[str, Any], sampling: list[dict[str, Any]],
                  context: dict[str, Any], manager: PluginManager) -> list[dict[str, Any]]:
    from polydiff.runs import load, resolve_device, sample_and_score
    from polydiff.training.periodic import reference_batch

    run = load(run_dir, manager)
    experiment = run.experiment
    cfg = experiment.config
    device = resolve_device(cfg["experiment"]["device"])
    reference = reference_batch(experiment, cfg["evaluation"]["n_samples"], cfg["evaluation"]["split"])
    base_sampling = copy.deepcopy(cfg["sampling"])
    rows = []
    for j, assignment in enumerate(sampling):
        cfg["sampling"] = {**base_sampling, **{k[len(SAMPLING_PREFIX):]: v for k, v in assignment.items()}}
        sampler, steps = cfg["sampling"]["sampler"], cfg["sampling"]["steps"]
        scored = sample_and_score(experiment, run.model, run_dir / "compare" / f"{j:03d}-{sampler}-{steps}",
                                  n=cfg["evaluation"]["n_samples"], seed=cfg["experiment"]["seed"], device=device,
                                  reference=reference)
        summary = ", ".join(f"{r['metric']}={r['value']:.4g}" for r in scored.rows)
        print(f"    {sampler:>14} steps={steps:<4} nfe={scored.nfe:<4} {scored.seconds:6.2f}s  {summary}", flush=True)
        shared = {**context, **train_assignment, "sampling.sampler": sampler, "sampling.steps": steps, **assignment,
                  "nfe": scored.nfe, "seconds": round(scored.seconds, 4)}
        rows += [{**shared, **row} for row in scored.rows]
    return rows


def run_grid(grid_config: Mapping[str, Any], out: str | Path, *, manager: PluginManager | None = None) -> pd.DataFrame:
    """Train, sample and evaluate every combination of a grid; write the tables and plots.

    Args:
        grid_config: ``{"base": raw config, "grid": {dotted key: list}}`` (``base`` may also
            be a path relative to the working directory), as returned by ``load_grid``.
        out: output folder: ``results.csv``, ``results.md``, ``loss_curves.png``,
            ``metric_vs_nfe.png`` and ``runs/``.

    Returns:
        The tidy table: one row per run x sampler x steps x metric, with every grid key as
        a column, ``nfe``, ``value``, ``seconds`` (sampling) and ``train_seconds``.
        ``table.attrs["errors"]`` lists training configurations that failed.
    """
    if "source" not in grid_config:
        grid_config = normalise_grid(grid_config)
    manager = manager or make_plugin_manager()
    preflight(grid_config, manager)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_keys, sample_keys = split_keys(grid_config["grid"])
    trainings = combinations(grid_config["grid"], train_keys)
    samplings = combinations(grid_config["grid"], sample_keys)
    rows, runs, errors = [], {}, []
    for i, assignment in enumerate(trainings):
        run_dir = out / "runs" / _slug(i, assignment)
        label = ", ".join(f"{k}={v}" for k, v in assignment.items()) or "base"
        print(f"[{i + 1}/{len(trainings)}] train {label}", flush=True)
        try:
            # the first sampling combination stands in for [sampling] during training, so the
            # build-time check that the sampler fits every field's family sees a grid sampler
            config = build_config(grid_config["base"], {**assignment, **samplings[0]}, grid_config["source"])
            seconds = _train_one(config, run_dir, manager)
            runs[label] = run_dir
            rows += _evaluate_run(run_dir, assignment, samplings,
                                  {"run": run_dir.name, "train_seconds": round(seconds, 2)}, manager)
        except Exception as exc:  # keep the rest of the grid; the failure is reported in results.md
            print(f"    failed: {type(exc).__name__}: {exc}", flush=True)
            errors.append({"run": run_dir.name, "config": label, "error": f"{type(exc).__name__}: {exc}"})
    table = _tidy(rows, train_keys, sample_keys)
    table.attrs["errors"] = errors
    write_results(table, out, runs, train_keys, sample_keys, errors)
    return table


def _tidy(rows: list[dict[str, Any]], train_keys: list[str], sample_keys: list[str]) -> pd.DataFrame:
    leading = ["run", *train_keys, *RESULT_KEYS, *[k for k in sample_keys if k not in RESULT_KEYS]]
    trailing = ["nfe", "metric", "value", "seconds", "train_seconds"]
    table = pd.DataFrame(rows)
    for column in leading + trailing:
        if column not in table.columns:
            table[column] = pd.Series(dtype=object)
    extra = [c for c in table.columns if c not in leading + trailing]
    return table[leading + extra + trailing]


def pivot(table: pd.DataFrame, train_keys: list[str], sample_keys: list[str]) -> pd.DataFrame:
    """Metric value per configuration as ``mean ± std`` over ``experiment.seed``."""
    configs = [k for k in train_keys if k != SEED_KEY] + RESULT_KEYS + [k for k in sample_keys if k not in RESULT_KEYS]
    extra = [c for c in table.columns if c not in {"run", "nfe", "metric", "value", "seconds", "train_seconds",
                                                   *train_keys, *sample_keys, *RESULT_KEYS}]
    index = configs + [c for c in extra if table[c].notna().any()]
    grouped = table.groupby(index + ["metric"], dropna=False, sort=False)
    summary = grouped["value"].agg(["mean", "std", "count"]).reset_index()
    summary["cell"] = [f"{m:.4g}" if c < 2 or pd.isna(s) else f"{m:.4g} ± {s:.2g}"
                       for m, s, c in zip(summary["mean"], summary["std"], summary["count"])]
    wide = summary.pivot_table(index=index, columns="metric", values="cell", aggfunc="first", dropna=False,
                               sort=False).reset_index()
    nfe = table.groupby(index, dropna=False, sort=False)["nfe"].mean().reset_index()
    wide.columns.name = None
    return wide.merge(nfe, on=index, how="left")


def write_results(table: pd.DataFrame, out: Path, runs: Mapping[str, Path], train_keys: list[str],
                  sample_keys: list[str], errors: list[dict[str, str]]) -> None:
    """Write results.csv, results.md, loss_curves.png and metric_vs_nfe.png into ``out``."""
    from polydiff.report import plot_loss_curves, plot_metric_vs_nfe

    table.to_csv(out / "results.csv", index=False)
    lines = ["# Comparison results", "", f"{len(runs)} trained run(s), {len(table)} rows in results.csv.", ""]
    if len(table):
        lines.append(pivot(table, train_keys, sample_keys).to_markdown(index=False))
    if errors:
        lines += ["", "## Failed runs", ""] + [f"- `{e['run']}` ({e['config']}): {e['error']}" for e in errors]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "runs.json").write_text(json.dumps({k: str(v) for k, v in runs.items()}, indent=2) + "\n")
    plot_loss_curves(runs, out / "loss_curves.png")
    line_keys = [k for k in train_keys if k != SEED_KEY] + ["sampling.sampler"]
    plot_metric_vs_nfe(table, line_keys, out / "metric_vs_nfe.png")


def compare_command(grid_path: str | Path, out: str | Path | None = None, *,
                    manager: PluginManager | None = None) -> int:
    """``polydiff compare``: run a grid file; return 0, or 1 if any training run failed."""
    from polydiff.runs import timestamp

    grid_config = load_grid(grid_path)
    folder = Path(out) if out else Path("runs") / f"compare-{timestamp()}"
    table = run_grid(grid_config, folder, manager=manager)
    print(f"{len(table)} result rows written to {folder / 'results.csv'} (summary: {folder / 'results.md'})")
    return 1 if table.attrs.get("errors") else 0
