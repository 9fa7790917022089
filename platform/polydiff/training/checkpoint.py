"""Checkpoints and run folders: atomic writes, safetensors weights, resumable state.

A checkpoint is the folder ``run_dir/checkpoints/step_0000100/`` holding

- ``model.safetensors`` and ``ema.safetensors``: the trained and the averaged weights;
- ``state.pt``: optimizer, RNG and data-position state, read back with
  ``torch.load(weights_only=True)`` (tensors, numbers, strings, lists and dicts only);
- ``meta.json``: the step, the time and the SHA-256 of each file, checked when loading
  so that a truncated or corrupted file is reported rather than half-loaded.

Each checkpoint is written into a temporary folder beside its final place and moved there
with ``os.replace``, and ``checkpoints/latest.json`` is replaced the same way afterwards,
so a crash mid-save leaves the previous checkpoint as the latest, never a partial one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from polydiff.errors import CheckpointError
from polydiff.files import write_atomic

KEEP_CHECKPOINTS = 3
"""How many checkpoint folders to keep: the latest and the two before it."""

WEIGHT_FILES = ("model.safetensors", "ema.safetensors")


def step_name(step: int) -> str:
    """The folder name of a step: ``step_0000100``."""
    return f"step_{step:07d}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and ``os.replace``."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_files(folder: Path, step: int, model: nn.Module, ema_model: nn.Module, state: Mapping[str, Any]) -> None:
    save_model(model, str(folder / "model.safetensors"))
    save_model(ema_model, str(folder / "ema.safetensors"))
    torch.save(dict(state), folder / "state.pt")
    files = {name: _sha256(folder / name) for name in (*WEIGHT_FILES, "state.pt")}
    meta = {"step": step, "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sha256": files}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def save_checkpoint(run_dir: Path | str, step: int, model: nn.Module, ema_model: nn.Module,
                    state: Mapping[str, Any]) -> Path:
    """Write the checkpoint of ``step`` atomically and point ``latest.json`` at it.

    Args:
        run_dir: the run folder; checkpoints go to ``run_dir/checkpoints``.
        step: completed optimizer steps.
        model: the trained network (unwrapped: not DDP, not compiled).
        ema_model: the network holding the EMA weights.
        state: optimizer / RNG / data-position state (what ``torch.load(weights_only=True)`` reads).

    Returns:
        The checkpoint folder.
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        _write_files(tmp, step, model, ema_model, state)
        if final.exists():  # re-saving a step (e.g. after a resume): move the old one aside first
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=root))
            os.replace(final, old / final.name)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_json_atomic(root / "latest.json", {"step": step, "path": final.name})
    prune_checkpoints(root)
    return final


def _complete_steps(root: Path) -> list[tuple[int, Path]]:
    out = []
    for folder in root.glob("step_*"):
        if folder.is_dir() and (folder / "meta.json").is_file() and folder.name[5:].isdigit():
            out.append((int(folder.name[5:]), folder))
    return sorted(out)


def prune_checkpoints(root: Path, keep: int = KEEP_CHECKPOINTS) -> None:
    """Delete all but the ``keep`` most recent complete checkpoints (never the latest)."""
    latest = latest_checkpoint(root.parent)
    for _, folder in _complete_steps(root)[:-keep]:
        if latest is None or folder.resolve() != latest.resolve():
            shutil.rmtree(folder, ignore_errors=True)


def latest_checkpoint(run_dir: Path | str) -> Path | None:
    """The newest complete checkpoint folder of a run, or None when there is none.

    ``checkpoints/latest.json`` decides; when it is missing or points nowhere, the highest
    complete ``step_*`` folder is used.
    """
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest.json"
    try:
        target = root / json.loads(pointer.read_text(encoding="utf-8"))["path"]
        if (target / "meta.json").is_file():
            return target
    except (OSError, ValueError, KeyError, TypeError):
        pass
    steps = _complete_steps(root) if root.is_dir() else []
    return steps[-1][1] if steps else None


def read_checkpoint_meta(folder: Path) -> dict[str, Any]:
    """``meta.json`` of a checkpoint folder; CheckpointError when missing or unreadable."""
    path = folder / "meta.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint metadata {path} cannot be read ({exc}); the checkpoint is "
                              f"incomplete: use an earlier step_* folder or retrain") from exc


def verify_file(folder: Path, name: str) -> Path:
    """Return ``folder / name`` after checking it exists and matches the SHA-256 in ``meta.json``."""
    path = folder / name
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing; the checkpoint is incomplete: "
                              f"use an earlier step_* folder or retrain")
    expected = read_checkpoint_meta(folder).get("sha256", {}).get(name)
    if expected is not None and _sha256(path) != expected:
        raise CheckpointError(f"checkpoint file {path} is corrupted or truncated (SHA-256 differs from "
                              f"{folder / 'meta.json'}); use an earlier step_* folder or retrain")
    return path


def load_weights(module: nn.Module, folder: Path, name: str) -> None:
    """Load ``folder/name`` (safetensors) into ``module``, strictly, after verifying it."""
    path = verify_file(folder, name)
    try:
        missing, unexpected = load_model(module, str(path), strict=False)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"cannot read weights from {path}: {exc}; the file is corrupted or was "
                              f"written by another model: use an earlier step_* folder or retrain") from exc
    if missing or unexpected:
        raise CheckpointError(f"weights in {path} do not match the model built from the run's config: "
                              f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")


def load_state(folder: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``state.pt`` of a checkpoint, read with ``torch.load(weights_only=True)``."""
    path = verify_file(folder, "state.pt")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for a bad pickle
        raise CheckpointError(f"cannot read training state from {path}: {exc}") from exc


def checkpoint_folder(run_dir: Path, step: int | None) -> Path:
    """The checkpoint of ``step`` (latest when None); CheckpointError naming what is missing."""
    if step is not None:
        folder = Path(run_dir) / "checkpoints" / step_name(step)
        if not (folder / "meta.json").is_file():
            have = [s for s, _ in _complete_steps(Path(run_dir) / "checkpoints")]
            raise CheckpointError(f"run {run_dir} has no complete checkpoint for step {step} ({folder}); "
                                  f"available steps: {have or 'none'}")
        return folder
    folder = latest_checkpoint(run_dir)
    if folder is None:
        raise CheckpointError(f"run {run_dir} has no checkpoint (no {Path(run_dir) / 'checkpoints'}/step_*/"
                              f"meta.json); train it first, or pass the folder of a run that saved one")
    return folder


@dataclass
class LoadedRun:
    """A trained run, ready for sampling.

    Attributes:
        experiment: rebuilt from the run's ``config.json``.
        model: the denoiser with the checkpoint's weights (EMA when asked and present), eval mode.
        step: the checkpoint's step.
        meta: the run's ``run.json`` (empty when the file is missing).
        run_dir: the run folder.
    """

    experiment: Any
    model: nn.Module
    step: int
    meta: dict[str, Any]
    run_dir: Path


def revalidate(config: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate a config that may already be validated: keys holding None (the schema's
    "unset" default) are dropped first, so that validating twice gives the same result."""
    from polydiff.config import config_from_dict

    raw = {table: ({k: v for k, v in values.items() if v is not None} if isinstance(values, Mapping) else values)
           for table, values in config.items()}
    return config_from_dict(raw, source=source)


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The validated config a run was trained with (``run_dir/config.json``)."""
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {run_dir} does not exist; pass the folder that "
                              f"`polydiff train` created (under the config's [experiment] run_root)")
    path = run_dir / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path} is missing: {run_dir} is not a polydiff run folder") from exc
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be read ({exc}); restore it from the config you trained with") from exc
    return revalidate(raw, source=str(path))


def load_run(run_dir: Path | str, *, manager: Any = None, use_ema: bool = True,
             step: int | None = None) -> LoadedRun:
    """Rebuild a run's experiment and load a checkpoint's weights into its denoiser.

    Args:
        run_dir: the run folder.
        manager: the plugin manager to resolve components with (default: a fresh one).
        use_ema: load ``ema.safetensors`` (falls back to ``model.safetensors`` if absent).
        step: a checkpoint step; default the latest.

    Raises:
        CheckpointError: the run folder, ``config.json`` or the checkpoint is missing, or a
            weights file is truncated or corrupted; the message names the file.
    """
    from polydiff.experiment import build_experiment

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    folder = checkpoint_folder(run_dir, step)
    meta_step = int(read_checkpoint_meta(folder).get("step", folder.name[5:]))
    experiment = build_experiment(config, manager)
    name = "ema.safetensors" if use_ema and (folder / "ema.safetensors").is_file() else "model.safetensors"
    load_weights(experiment.denoiser, folder, name)
    experiment.denoiser.eval()
    try:
        meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    return LoadedRun(experiment=experiment, model=experiment.denoiser, step=meta_step, meta=meta, run_dir=run_dir)
