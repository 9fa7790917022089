"""Sample with a model, score against held-out data and write the modality's artefacts.

Used by the trainer's periodic evaluation and by the command line (``polydiff sample`` /
``polydiff evaluate``), so both write the same files: the artefacts returned by
``modality.write_artefacts`` and ``metrics.csv`` (one tidy row per metric value).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polydiff.data import stack_items


def reference_batch(experiment: Any, n: int, split: str | None = None) -> dict[str, torch.Tensor]:
    """The first ``n`` items of a split (default ``[evaluation] split``) stacked into a State.

    Returns every field of the items (diffused and conditioning), each ``(n', ...)`` with
    ``n' = min(n, len(dataset))``.
    """
    dataset = experiment.modality.dataset(split or experiment.config["evaluation"]["split"])
    count = min(n, len(dataset))
    if count == 0:
        raise ValueError(f"split {split!r} of modality {experiment.modality.name!r} is empty")
    return stack_items(dataset, range(count))


def draw_samples(experiment: Any, model: nn.Module, n: int, *, generator: torch.Generator,
                 device: torch.device | str = "cpu", sampler: str | None = None, steps: int | None = None,
                 cond: dict[str, torch.Tensor] | None = None, known: dict[str, torch.Tensor] | None = None,
                 mask: dict[str, torch.Tensor] | None = None) -> tuple[dict[str, torch.Tensor], int]:
    """Draw ``n`` samples in chunks of ``[sampling] batch_size``.

    Args:
        cond: conditioning fields for the ``n`` samples, each ``(n, ...)``, or None.
        known, mask: inpainting (``Experiment.sample``), each ``(1 or n, *field_shape)``, or None.

    Returns:
        ``(samples on the CPU, each (n, *field_shape); NFE per sample)``.
    """
    chunk = experiment.config["sampling"]["batch_size"]
    pieces: list[dict[str, torch.Tensor]] = []
    nfe = 0
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        part = None if cond is None else {k: v[start:start + m].to(device) for k, v in cond.items()}
        out = experiment.sample(model, m, sampler=sampler, steps=steps, generator=generator, device=device,
                                cond=part, known=_rows(known, start, m), mask=_rows(mask, start, m))
        pieces.append({k: v.detach().cpu() for k, v in out.state.items()})
        nfe = max(nfe, int(out.nfe))
    return {k: torch.cat([p[k] for p in pieces]) for k in pieces[0]}, nfe


def _rows(state: dict[str, torch.Tensor] | None, start: int, m: int) -> dict[str, torch.Tensor] | None:
    """Rows ``start .. start + m`` of each per-sample tensor of ``state`` (shared ones, batch 1, as they are)."""
    if state is None:
        return None
    return {k: v if v.shape[0] == 1 else v[start:start + m] for k, v in state.items()}


def write_rows_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write tidy rows as CSV, columns in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns or ["metric", "value"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def sample_and_evaluate(experiment: Any, model: nn.Module, out_dir: Path, *, n: int, generator: torch.Generator,
                        device: torch.device | str = "cpu", sampler: str | None = None, steps: int | None = None,
                        reference_split: str | None = None) -> tuple[dict, list[dict], list[Path]]:
    """Sample ``n`` items, compare them with ``n`` reference items, write artefacts and metrics.

    Conditional modalities are sampled with the reference items' conditioning fields, so
    each sample is compared with data of the same condition distribution; the artefacts
    are written from the samples together with those conditioning fields (a restoration's
    source beside its result).

    Args:
        experiment: the ``Experiment``.
        model: the denoiser to sample with (usually the EMA weights), in eval mode.
        out_dir: created if needed; receives the artefacts and ``metrics.csv``.
        n: number of samples (and reference items, at most the split's size).
        generator: the only source of randomness of sampling and metrics.
        sampler, steps: override ``[sampling] sampler`` / ``steps``.
        reference_split: default ``[evaluation] split``.

    Returns:
        ``(samples: State (n, ...) on the CPU, rows, written paths)``; each row carries the
        metric's keys plus ``nfe``, ``sampler`` and ``steps``.
    """
    s_cfg = experiment.config["sampling"]
    reference = reference_batch(experiment, n, reference_split)
    cond_names = [f for f in experiment.cond_spaces if f in reference]
    n_ref = next(iter(reference.values())).shape[0]
    cond = {f: reference[f] for f in cond_names} if cond_names else None
    n_draw = n_ref if cond is not None else n
    samples, nfe = draw_samples(experiment, model, n_draw, generator=generator, device=device, sampler=sampler,
                                steps=steps, cond=cond)
    diffused = {f: reference[f] for f in experiment.spaces}
    extra = {"nfe": nfe, "sampler": sampler or s_cfg["sampler"], "steps": steps or s_cfg["steps"]}
    rows = [{**row, **extra} for row in experiment.evaluate(samples, diffused, generator=generator)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in experiment.modality.write_artefacts({**(cond or {}), **samples}, out_dir)]
    paths += write_trajectory(experiment, model, out_dir, generator=generator, device=device, sampler=sampler,
                              steps=steps, cond=cond)
    paths.append(write_rows_csv(rows, out_dir / "metrics.csv"))
    return samples, rows, paths


TRAJECTORY_ITEMS, TRAJECTORY_FRAMES = 8, 8
"""A trajectory artefact follows this many samples through this many evenly spaced steps."""


def _estimate(prediction: Any, space: Any) -> torch.Tensor:
    """A prediction's clean estimate as a batch of the field's space (argmax ids for discrete fields)."""
    if space.kind == "discrete":
        return prediction.x0.argmax(-1)
    return prediction.x0


def write_trajectory(experiment: Any, model: nn.Module, out_dir: Path, *, generator: torch.Generator,
                     device: torch.device | str = "cpu", sampler: str | None = None, steps: int | None = None,
                     cond: dict[str, torch.Tensor] | None = None) -> list[Path]:
    """Write the modality's picture of the denoising trajectory, if it draws one.

    A modality that defines ``write_trajectory(frames, out_dir) -> list[Path]`` receives
    ``TRAJECTORY_FRAMES`` States of ``TRAJECTORY_ITEMS`` samples, from the first sampler step
    to the final samples: each frame holds the clean estimates E[x0 | x_t] (argmax ids for
    discrete fields) the network gave at that step, the last frame the samples themselves.

    Returns:
        The written paths (none when the modality has no ``write_trajectory``).
    """
    writer = getattr(experiment.modality, "write_trajectory", None)
    if writer is None:
        return []
    spaces = experiment.spaces
    estimates: list[dict[str, torch.Tensor]] = []

    def record(i: int, t: float, x: Any, predictions: Any) -> None:
        estimates.append({f: _estimate(predictions[f], spaces[f]).detach().cpu() for f in spaces})

    part = None if cond is None else {k: v[:TRAJECTORY_ITEMS].to(device) for k, v in cond.items()}
    n = TRAJECTORY_ITEMS if part is None else next(iter(part.values())).shape[0]
    out = experiment.sample(model, n, sampler=sampler, steps=steps, generator=generator, device=device, cond=part,
                            callback=record)
    frames = estimates + [{f: v.detach().cpu() for f, v in out.state.items()}]
    keep = sorted({round(i * (len(frames) - 1) / (TRAJECTORY_FRAMES - 1)) for i in range(TRAJECTORY_FRAMES)})
    return [Path(p) for p in writer([frames[i] for i in keep], Path(out_dir)) or []]
