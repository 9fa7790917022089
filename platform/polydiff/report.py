"""Plots and reports: loss curves, metric-vs-NFE panels, and the ``polydiff demo`` report.

``run_demo`` trains every installed modality that ships a ``demo_config`` at a small
budget, samples, evaluates, and writes ``report.md`` and ``report.html`` (pictures
embedded in the HTML, linked from the Markdown) with one combined metrics table. A
modality whose demo fails is reported with its error and the others still run.
Figures use matplotlib's object API (``Figure``), so no global backend is touched.
"""
from __future__ import annotations

import base64
import html
import json
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from polydiff.plugins import PluginManager, make_plugin_manager

TEXT_SUFFIXES = (".txt", ".smi", ".csv")
"""Artefacts shown as an excerpt of their first ``EXCERPT_CHARS`` characters in the report."""
EXCERPT_CHARS = 1500
TABLE_COLUMNS = ["plugin", "dataset", "corruption", "sampler", "steps", "nfe", "metric", "value", "train_seconds"]


def read_losses(run_dir: Path) -> pd.DataFrame:
    """``step`` and ``loss`` columns from a run's ``metrics.jsonl`` (empty if absent)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return pd.DataFrame(columns=["step", "loss"])
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "step" in r and "loss" in r]
    return pd.DataFrame(rows, columns=["step", "loss"]) if rows else pd.DataFrame(columns=["step", "loss"])


def plot_loss_curves(runs: Mapping[str, Path], path: Path) -> Path:
    """One line per run (label -> run folder) of training loss against step."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for label, run_dir in runs.items():
        losses = read_losses(run_dir)
        if len(losses):
            ax.plot(losses["step"], losses["loss"], label=label, linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    if len(runs) <= 12 and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_metric_vs_nfe(table: pd.DataFrame, line_keys: list[str], path: Path) -> Path:
    """One panel per metric; one line per ``line_keys`` combination, mean value against NFE."""
    metrics = sorted(table["metric"].unique()) if len(table) else []
    fig = Figure(figsize=(5 * max(1, len(metrics)), 4))
    axes = fig.subplots(1, max(1, len(metrics)), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        sub = table[table["metric"] == metric]
        groups = sub.groupby(line_keys, dropna=False, sort=True) if line_keys else [((), sub)]
        for key, group in groups:
            mean = group.groupby("nfe")["value"].mean()
            label = ", ".join(map(str, key if isinstance(key, tuple) else (key,)))
            ax.plot(mean.index, mean.values, marker="o", markersize=3, label=label or metric)
        ax.set_xscale("log")
        ax.set_xticks(sorted(sub["nfe"].unique()))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("NFE")
        ax.set_ylabel("value (mean over seeds)")
        ax.set_title(metric)
        if len(axes) == 1 or ax is axes[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


@dataclass
class DemoResult:
    """The outcome of one modality's demo."""

    plugin: str
    modality: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    pictures: list[Path] = field(default_factory=list)
    texts: list[Path] = field(default_factory=list)
    loss_curve: Path | None = None
    error: str | None = None


def _demo_one(spec: Any, out: Path, steps: int | None, manager: PluginManager) -> DemoResult:
    from polydiff.config import config_from_dict
    from polydiff.runs import check_components, load, resolve_device, sample_and_score
    from polydiff.training.trainer import train

    result = DemoResult(plugin=spec.plugin, modality=spec.name)
    overrides = [f"training.steps={steps}"] if steps else []
    config = config_from_dict(dict(spec.demo_config), overrides, source=f"demo config of modality {spec.name!r}")
    check_components(config, manager)
    run_dir = out / "runs" / spec.name
    start = time.perf_counter()
    train(config, run_dir=run_dir, manager=manager)
    train_seconds = time.perf_counter() - start
    run = load(run_dir, manager)
    device = resolve_device(config["experiment"]["device"])
    scored = sample_and_score(run.experiment, run.model, out / "samples" / spec.name, n=config["sampling"]["n"],
                              seed=config["experiment"]["seed"], device=device)
    result.pictures = [p for p in scored.artefacts if Path(p).suffix.lower() in (".png", ".jpg", ".svg")]
    result.texts = [p for p in scored.artefacts if Path(p).suffix.lower() in TEXT_SUFFIXES]
    result.loss_curve = plot_loss_curves({spec.name: run_dir}, out / f"loss_{spec.name}.png")
    context = {"plugin": spec.plugin, "dataset": config["modality"].get("dataset", ""),
               "corruption": _corruption_label(config["corruption"]), "sampler": config["sampling"]["sampler"],
               "steps": config["sampling"]["steps"], "nfe": scored.nfe, "train_seconds": round(train_seconds, 2)}
    result.rows = [{**context, **row} for row in scored.rows]
    return result


def _corruption_label(table: Mapping[str, Any]) -> str:
    schedule = table.get("schedule")
    return f"{table['name']}/{schedule}" if schedule else str(table["name"])


def run_demo(out: str | Path | None = None, *, steps: int | None = None,
             manager: PluginManager | None = None) -> tuple[Path, list[DemoResult]]:
    """Run every installed modality's demo and write ``report.md`` and ``report.html``.

    Args:
        out: report folder (default ``./demo-report-<timestamp>``).
        steps: training steps for every demo (default: each demo config's own).

    Returns:
        ``(report folder, one DemoResult per modality)``; failed ones carry ``error``.
    """
    from polydiff.runs import fresh_dir, timestamp

    manager = manager or make_plugin_manager()
    folder = Path(out) if out else fresh_dir(Path(f"demo-report-{timestamp()}"))
    folder.mkdir(parents=True, exist_ok=True)
    specs = [s for s in manager.registry.specs("modality") if s.demo_config is not None]
    results = []
    for spec in specs:
        print(f"demo {spec.name} (plugin {spec.plugin}) ...", flush=True)
        try:
            results.append(_demo_one(spec, folder, steps, manager))
        except Exception as exc:  # one failing plugin must not hide the others' results
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            print(f"demo {spec.name} failed: {error}", flush=True)
            results.append(DemoResult(plugin=spec.plugin, modality=spec.name, error=error))
    write_report(folder, results, broken=[(p.name, p.error) for p in manager.broken()])
    print(f"report written to {folder / 'report.md'} and {folder / 'report.html'}")
    return folder, results


def demo_table(results: list[DemoResult]) -> pd.DataFrame:
    """The combined metrics table of every successful demo."""
    rows = [r for res in results for r in res.rows]
    if not rows:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    table = pd.DataFrame(rows)
    extra = [c for c in table.columns if c not in TABLE_COLUMNS]
    return table[[c for c in TABLE_COLUMNS if c in table.columns] + extra]


def _rel(path: Path, folder: Path) -> str:
    try:
        return Path(path).resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return Path(path).resolve().as_posix()


def write_report(folder: Path, results: list[DemoResult], *, broken: list[tuple[str, str]] = ()) -> None:
    """Write ``report.md`` and ``report.html`` for the demo results into ``folder``."""
    table = demo_table(results)
    (folder / "metrics.csv").write_text(table.to_csv(index=False))
    (folder / "report.md").write_text(_markdown(folder, results, table, broken))
    (folder / "report.html").write_text(_html(folder, results, table, broken))


def _markdown(folder: Path, results: list[DemoResult], table: pd.DataFrame, broken) -> str:
    lines = ["# polydiff demo report", "", f"{len(results)} modality demo(s); "
             f"{sum(r.error is None for r in results)} succeeded.", "", "## Metrics", ""]
    lines.append(table.to_markdown(index=False, floatfmt=".4g") if len(table) else "(no metrics)")
    for res in results:
        lines += ["", f"## {res.modality} (plugin {res.plugin})", ""]
        if res.error:
            lines += ["**failed:**", "", "```", res.error, "```"]
            continue
        lines += [f"![{res.modality} samples]({_rel(p, folder)})" for p in res.pictures]
        for p in res.texts:
            lines += [f"[{Path(p).name}]({_rel(p, folder)}), first {EXCERPT_CHARS} characters:", "", "```",
                      _excerpt(p), "```", ""]
        if res.loss_curve:
            lines.append(f"![{res.modality} loss curve]({_rel(res.loss_curve, folder)})")
    if broken:
        lines += ["", "## Broken plugins", ""] + [f"- `{name}`: {error}" for name, error in broken]
    return "\n".join(lines) + "\n"


def _excerpt(path: Path) -> str:
    """The first ``EXCERPT_CHARS`` characters of a text artefact (``...`` when cut)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "\n..."


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    mime = "image/svg+xml" if Path(path).suffix.lower() == ".svg" else "image/png"
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{data}" style="max-width:45%">'


def _html(folder: Path, results: list[DemoResult], table: pd.DataFrame, broken) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>polydiff demo report</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px}pre{background:#fee}</style></head><body>",
             "<h1>polydiff demo report</h1><h2>Metrics</h2>",
             table.to_html(index=False, float_format=lambda v: f"{v:.4g}") if len(table) else "<p>(no metrics)</p>"]
    for res in results:
        parts.append(f"<h2>{html.escape(res.modality)} (plugin {html.escape(res.plugin)})</h2>")
        if res.error:
            parts.append(f"<p><b>failed:</b></p><pre>{html.escape(res.error)}</pre>")
            continue
        parts += [_img(p, f"{res.modality} samples") for p in res.pictures]
        parts += [f"<p>{html.escape(Path(p).name)}:</p><pre style='background:#f6f6f6'>{html.escape(_excerpt(p))}</pre>"
                  for p in res.texts]
        if res.loss_curve:
            parts.append(_img(res.loss_curve, f"{res.modality} loss curve"))
    if broken:
        parts.append("<h2>Broken plugins</h2><ul>" + "".join(
            f"<li><code>{html.escape(n)}</code>: {html.escape(str(e))}</li>" for n, e in broken) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
