"""Run-level commands: train from a config file, sample from a run, evaluate a run.

A run folder (written by ``polydiff.training.trainer.train``) holds ``config.json``,
``run.json``, ``metrics.jsonl``, ``checkpoints/`` and ``samples/``. The functions here
load it, sample with the EMA weights, and write what a person opens: the modality's
artefacts, the raw samples (``samples.safetensors``), metrics as CSV and Markdown.
``polydiff.cli`` calls them; ``polydiff.compare`` and ``polydiff.report`` reuse the pieces.
"""
from __future__ import annotations

import math

import difflib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polydiff.config import load_config
from polydiff.errors import CheckpointError, ConfigError
from polydiff.plugins import PluginManager, make_plugin_manager

LIKELIHOOD_ITEMS = 256
"""Validation items used for the ELBO and PF-ODE bits/dim of all-Gaussian experiments."""


@dataclass
class SampleResult:
    """Samples of one sampler setting with their cost, metric rows and artefacts.

    Attributes:
        state: field -> ``(n, *field_shape)`` on the CPU.
        nfe: network evaluations spent.
        seconds: wall time of sampling alone.
        rows: tidy metric rows (``{"metric", "value", ...}``); empty when not evaluated.
        artefacts: files written by the modality.
        cond: the conditioning fields the samples were drawn with (CPU), or None.
    """

    state: dict[str, torch.Tensor]
    nfe: int
    seconds: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    artefacts: list[Path] = field(default_factory=list)
    cond: dict[str, torch.Tensor] | None = None

    def with_cond(self) -> dict[str, torch.Tensor]:
        """The samples together with their conditioning fields, for artefact writers."""
        return {**(self.cond or {}), **self.state}


def timestamp() -> str:
    """``YYYYmmdd-HHMMSS`` for folder names."""
    return time.strftime("%Y%m%d-%H%M%S")


def fresh_dir(path: Path) -> Path:
    """Create ``path`` (or ``path-2``, ``path-3``, ... if taken) and return it."""
    candidate, i = Path(path), 1
    while candidate.exists():
        i += 1
        candidate = Path(f"{path}-{i}")
    candidate.mkdir(parents=True)
    return candidate


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def require_run_dir(run_dir: str | Path) -> Path:
    """Return ``run_dir`` as a Path, or raise CheckpointError saying what a run folder is."""
    path = Path(run_dir)
    if not path.is_dir():
        raise CheckpointError(f"run folder {str(path)!r} does not exist; pass a folder written by "
                              f"`polydiff train` (it holds config.json and checkpoints/)")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{str(path)!r} is not a run folder: config.json is missing; pass a folder "
                              f"written by `polydiff train`")
    return path


def check_components(config: Mapping[str, Any], manager: PluginManager) -> None:
    """Resolve every component name of a validated config, so typos fail before training.

    Raises:
        UnknownComponentError: with close matches and the installed names.
    """
    registry = manager.registry
    registry.get("modality", config["modality"]["name"])
    corruption = config["corruption"]
    tables = [corruption, *(corruption.get("fields") or {}).values()]
    for table in tables:
        name = table.get("name", corruption["name"])
        spec = registry.get("corruption", name)
        schedule = table.get("schedule", corruption.get("schedule"))
        if spec.family == "gaussian" and schedule is not None:
            registry.get("schedule", schedule)
    registry.get("denoiser", config["denoiser"]["name"])
    registry.get("sampler", config["sampling"]["sampler"])
    check_grid_name(config["sampling"]["grid"])
    for metric in config["evaluation"]["metrics"] or ():
        registry.get("metric", metric)


def check_grid_name(name: str | None) -> None:
    """Raise ConfigError for a time-grid name that ``polydiff.samplers.grids`` does not know."""
    from polydiff.samplers.grids import GRIDS

    if name is not None and name not in GRIDS:
        close = difflib.get_close_matches(name, list(GRIDS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown time grid {name!r}.{hint} Grids: {', '.join(GRIDS)}.")


def train_from_file(config_path: str | Path, overrides: Iterable[str] = (), *, run_dir: str | Path | None = None,
                    manager: PluginManager | None = None) -> Any:
    """Validate a TOML config (with ``--set`` overrides), check its names, and train it.

    Returns:
        The trainer's ``TrainResult``.
    """
    from polydiff.training.trainer import train

    manager = manager or make_plugin_manager()
    config = load_config(config_path, overrides)
    check_components(config, manager)
    result = train(config, run_dir=Path(run_dir) if run_dir else None, manager=manager)
    _print_train_result(result)
    return result


def resume_run(run_dir: str | Path, *, manager: PluginManager | None = None) -> Any:
    """Continue training the run in ``run_dir`` from its last checkpoint with its own config."""
    from polydiff.training.checkpoint import read_run_config
    from polydiff.training.trainer import train

    path = Path(run_dir)
    config = read_run_config(path)
    result = train(config, run_dir=path, manager=manager or make_plugin_manager(), resume=True)
    _print_train_result(result)
    return result


def _print_train_result(result: Any) -> None:
    loss = f"{result.final_loss:.4g}" if result.final_loss is not None else "n/a"
    print(f"run {result.status} after {result.steps} steps, final loss {loss}: {result.run_dir}")


def load(run_dir: str | Path, manager: PluginManager | None = None) -> Any:
    """Load the EMA model of a run (``polydiff.training.checkpoint.LoadedRun``)."""
    from polydiff.training.checkpoint import load_run

    return load_run(require_run_dir(run_dir), manager=manager, use_ema=True)


def _cond(experiment: Any, n: int) -> dict[str, torch.Tensor] | None:
    """Conditioning fields for ``n`` samples, cycling through the validation split."""
    from polydiff.training.periodic import reference_batch

    if not experiment.cond_spaces:
        return None
    ref = reference_batch(experiment, n, "validation")
    index = torch.arange(n) % next(iter(ref.values())).shape[0]
    return {f: ref[f][index] for f in experiment.cond_spaces if f in ref} or None


def draw_samples(experiment: Any, model: torch.nn.Module, n: int, *, sampler: str | None = None,
                 steps: int | None = None, seed: int = 0, device: torch.device | str = "cpu",
                 known: Mapping[str, torch.Tensor] | None = None,
                 mask: Mapping[str, torch.Tensor] | None = None) -> SampleResult:
    """Sample ``n`` items (conditioning, if any, from the validation split) and time it.

    The time grid and guidance scale come from ``experiment.config["sampling"]``;
    ``known`` / ``mask`` inpaint (see ``Experiment.sample``).
    """
    from polydiff.training.periodic import draw_samples as draw

    generator = torch.Generator().manual_seed(seed)
    model = model.to(device).eval()
    cond = _cond(experiment, n)
    start = time.perf_counter()
    state, nfe = draw(experiment, model, n, generator=generator, device=device, sampler=sampler, steps=steps,
                      cond=cond, known=None if known is None else dict(known), mask=None if mask is None else dict(mask))
    return SampleResult(state, int(nfe), time.perf_counter() - start, cond=cond)


def load_known(path: str | Path, spaces: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Read an inpainting file: a safetensors file with, per field to inpaint, the known values
    under ``<field>`` and the mask (1 where known) under ``<field>.mask``, each of shape
    ``field_shape``, ``(1, *field_shape)`` or ``(n, *field_shape)``.

    Raises:
        ConfigError: a missing or unreadable file, an unknown field, or a value without a mask.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise ConfigError(f"--inpaint {str(path)!r}: cannot read it as safetensors ({exc})") from exc
    fields = sorted(k for k in tensors if not k.endswith(".mask"))
    unknown = [f for f in fields + [k[:-5] for k in tensors if k.endswith(".mask")] if f not in spaces]
    if unknown or not fields:
        raise ConfigError(f"--inpaint {str(path)!r}: keys {sorted(tensors)} must be diffused fields {sorted(spaces)} "
                          f"and '<field>.mask'" + (f"; unknown: {sorted(set(unknown))}" if unknown else ""))
    missing = [f for f in fields if f + ".mask" not in tensors]
    if missing:
        raise ConfigError(f"--inpaint {str(path)!r}: fields {missing} have values but no '<field>.mask'")

    def batched(t: torch.Tensor, field: str) -> torch.Tensor:
        return t[None] if t.ndim == len(spaces[field].shape) else t

    known = {f: batched(tensors[f], f) for f in fields}
    return known, {f: batched(tensors[f + ".mask"], f) for f in fields}


def sample_and_score(experiment: Any, model: torch.nn.Module, out_dir: Path, *, n: int, sampler: str | None = None,
                     steps: int | None = None, seed: int = 0, device: torch.device | str = "cpu",
                     reference: Mapping[str, torch.Tensor] | None = None) -> SampleResult:
    """Sample, write the modality's artefacts into ``out_dir`` and compute the metric rows.

    Unlike ``polydiff.training.periodic.sample_and_evaluate`` this times sampling alone and
    accepts a reference batch shared by many sampler settings (``polydiff compare``).
    """
    from polydiff.training.periodic import reference_batch

    result = draw_samples(experiment, model, n, sampler=sampler, steps=steps, seed=seed, device=device)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.artefacts = [Path(p) for p in experiment.modality.write_artefacts(result.with_cond(), out_dir) or []]
    if reference is None:
        reference = reference_batch(experiment, experiment.config["evaluation"]["n_samples"])
    diffused = {f: reference[f] for f in experiment.spaces}
    result.rows = experiment.evaluate(result.state, diffused, generator=torch.Generator().manual_seed(seed))
    return result


def save_state(state: Mapping[str, torch.Tensor], path: Path) -> Path:
    """Write a State with safetensors (contiguous CPU tensors)."""
    from safetensors.torch import save_file

    save_file({f: v.detach().cpu().contiguous() for f, v in state.items()}, str(path))
    return path


def sample_run(run_dir: str | Path, *, n: int, sampler: str | None = None, steps: int | None = None,
               grid: str | None = None, guidance_scale: float | None = None, seed: int = 0,
               out: str | Path | None = None, manager: PluginManager | None = None,
               inpaint: str | Path | None = None) -> Path:
    """Sample ``n`` items from a run's EMA model and write artefacts, samples and info.

    ``inpaint``: a safetensors file of known values and masks (``load_known``); the samples
    keep the known parts and fill in the rest.

    Writes into ``out`` (default ``run_dir/samples/cli-<timestamp>``): the modality's
    artefacts, ``samples.safetensors`` and ``info.json`` (nfe, sampler, steps, seconds).

    Returns:
        The output folder (also printed).
    """
    check_grid_name(grid)
    run = load(run_dir, manager)
    experiment = run.experiment
    s_cfg = experiment.config["sampling"]
    s_cfg.update({k: v for k, v in (("grid", grid), ("guidance_scale", guidance_scale)) if v is not None})
    device = resolve_device(experiment.config["experiment"]["device"])
    known, mask = load_known(inpaint, experiment.spaces) if inpaint else (None, None)
    result = draw_samples(experiment, run.model, n, sampler=sampler, steps=steps, seed=seed, device=device,
                          known=known, mask=mask)
    folder = Path(out) if out else fresh_dir(Path(run_dir) / "samples" / f"cli-{timestamp()}")
    folder.mkdir(parents=True, exist_ok=True)
    masks = {f"{f}.mask": m.expand(n, *m.shape[1:]) for f, m in (mask or {}).items()}
    experiment.modality.write_artefacts({**result.with_cond(), **masks}, folder)
    save_state(result.state, folder / "samples.safetensors")
    info = {"run_dir": str(run_dir), "checkpoint_step": run.step, "n": n, "seed": seed,
            "sampler": sampler or s_cfg["sampler"], "steps": steps or s_cfg["steps"], "grid": s_cfg["grid"],
            "guidance_scale": s_cfg["guidance_scale"], "inpaint": str(inpaint) if inpaint else None,
            "nfe": result.nfe, "seconds": round(result.seconds, 4),
            "tokens_per_call": tokens_per_call(experiment.spaces, mask, result.nfe)}
    (folder / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    per_call = f", {info['tokens_per_call']:.3g} tokens per call" if info["tokens_per_call"] is not None else ""
    print(f"{n} samples ({info['sampler']}, {info['steps']} steps, NFE {result.nfe}{per_call}, "
          f"{result.seconds:.2f}s) written to {folder}")
    return folder


def tokens_per_call(spaces: Mapping[str, Any], mask: Mapping[str, torch.Tensor] | None, nfe: int) -> float | None:
    """Generated tokens of one sample per network call, over the discrete fields (None if there
    are none): every position of a discrete field, less the known ones when inpainting."""
    discrete = [f for f, s in spaces.items() if s.kind == "discrete"]
    if not discrete or nfe <= 0:
        return None
    generated = 0.0
    for f in discrete:
        known = float(mask[f].float().mean()) if mask and f in mask else 0.0
        generated += spaces[f].dim * (1.0 - known)
    return generated / nfe


def likelihood_rows(experiment: Any, model: torch.nn.Module, *, seed: int = 0, device: torch.device | str = "cpu",
                    items: int = LIKELIHOOD_ITEMS) -> list[dict[str, Any]]:
    """Likelihood bounds on validation data, where the processes have one.

    All-Gaussian experiments get the ELBO and PF-ODE bits/dim
    (``polydiff.evaluation.likelihood``); experiments whose every process has a ``nelbo``
    (masked, uniform, autoregressive: exact) get the NELBO in bits per token per field
    (``polydiff.evaluation.nelbo``), plus ``"total"`` when there are several fields.
    A Gaussian modality whose fields embed tokens (optional attribute ``token_embeddings``,
    field -> ``(V, d)`` table: Diffusion-LM) gets the discrete bound in bits per token
    (``rounding_nelbo_bits``) instead of densities. A modality with ``chars_per_token``
    (text) also gets each per-token row per character (``nelbo_bits_per_char``), and
    ``perplexity_per_token`` = 2 ** bits (an upper bound, exact for autoregressive).
    Anything else gets no rows.
    """
    from polydiff.evaluation.nelbo import has_nelbo
    from polydiff.training.periodic import reference_batch

    processes = experiment.processes
    gaussian = all(p.family == "gaussian" for p in processes.values())
    if not gaussian and not all(has_nelbo(p) for p in processes.values()):
        return []
    batch = reference_batch(experiment, items, "validation")
    x0, cond = experiment.split_batch({f: v.to(device) for f, v in batch.items()})
    predict = experiment.predict_fn(model.to(device).eval(), cond)
    generator = torch.Generator().manual_seed(seed)
    embeddings = dict(getattr(experiment.modality, "token_embeddings", {}) or {})
    if gaussian and not set(processes) <= set(embeddings):
        return _gaussian_likelihood_rows(predict, processes, x0, generator)
    if gaussian:
        from polydiff.evaluation.likelihood import rounding_nelbo_bits

        key = next(iter(processes)) if len(processes) == 1 else "total"
        bits = {key: rounding_nelbo_bits(predict, processes, x0, embeddings, generator=generator)}
        keys = [key]
    else:
        from polydiff.evaluation.nelbo import nelbo_bits

        bits = nelbo_bits(predict, processes, x0, generator=generator)
        keys = list(processes) + (["total"] if len(processes) > 1 else [])
    rows = [{"metric": "nelbo_bits_per_token", "field": k, "value": float(bits[k].mean()), "std": _std(bits[k])}
            for k in keys]
    return rows + _per_token_rows(experiment.modality, rows)


def _per_token_rows(modality: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Perplexity bounds per token, and bits per character where the modality knows its
    characters per token (so models with different tokenisers compare)."""
    out = [{**r, "metric": "perplexity_per_token", "value": 2.0 ** r["value"] if r["value"] < 1000 else math.inf,
            "std": math.nan} for r in rows]
    chars = getattr(modality, "chars_per_token", None)
    if chars:
        out += [{**r, "metric": "nelbo_bits_per_char", "value": r["value"] / chars, "std": r["std"] / chars}
                for r in rows]
    return out


def _std(values: torch.Tensor) -> float:
    return float(values.std()) if values.numel() > 1 else 0.0


def _gaussian_likelihood_rows(predict: Any, processes: Mapping[str, Any], x0: Mapping[str, torch.Tensor],
                              generator: torch.Generator) -> list[dict[str, Any]]:
    from polydiff.evaluation.likelihood import elbo_bits_per_dim, pf_ode_bits_per_dim

    rows = []
    for name, fn in (("elbo_bits_per_dim", elbo_bits_per_dim), ("pf_ode_bits_per_dim", pf_ode_bits_per_dim)):
        bpd = fn(predict, processes, x0, generator=generator)
        rows.append({"metric": name, "value": float(bpd.mean()), "std": _std(bpd)})
    return rows


def evaluate_run(run_dir: str | Path, *, n: int | None = None, sampler: str | None = None, steps: int | None = None,
                 seed: int = 0, manager: PluginManager | None = None) -> list[dict[str, Any]]:
    """Sample and evaluate a run; add likelihood bounds where the processes have them.

    Writes ``run_dir/evaluation/<timestamp>/`` with ``metrics.csv``, ``metrics.md`` and the
    modality's artefacts, and prints the table.

    Returns:
        Tidy rows ``{"metric", "value", ...}`` with the sampler, steps and checkpoint step.
    """
    from polydiff.training.periodic import sample_and_evaluate

    run = load(run_dir, manager)
    experiment = run.experiment
    device = resolve_device(experiment.config["experiment"]["device"])
    folder = fresh_dir(Path(run_dir) / "evaluation" / timestamp())
    n = n or experiment.config["evaluation"]["n_samples"]
    _, rows, _ = sample_and_evaluate(experiment, run.model, folder, n=n, generator=torch.Generator().manual_seed(seed),
                                     device=device, sampler=sampler, steps=steps)
    s_cfg = experiment.config["sampling"]
    sampled = {"sampler": sampler or s_cfg["sampler"], "steps": steps or s_cfg["steps"], "n": n}
    rows = [{**sampled, **r, "checkpoint_step": run.step} for r in rows]
    items = min(LIKELIHOOD_ITEMS, len(experiment.modality.dataset("validation")))  # the first items of the split
    rows += [{**r, "n": items, "checkpoint_step": run.step}
             for r in likelihood_rows(experiment, run.model, seed=seed, device=device, items=items)]
    table = pd.DataFrame(rows)
    first = [c for c in ("metric", "value", "std", "nfe", "sampler", "steps", "n") if c in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    table.to_csv(folder / "metrics.csv", index=False)
    markdown = table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=".4g",
                                                                         missingval="")
    (folder / "metrics.md").write_text(f"# Evaluation of {run_dir}\n\n{markdown}\n")
    print(markdown)
    print(f"written to {folder}")
    return rows
