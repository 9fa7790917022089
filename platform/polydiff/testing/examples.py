"""``step_example``: the check every plugin runs on its example configs in ``examples/``."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

import polydiff


def step_example(path: str | Path, overrides: Sequence[str] = (), *, n: int = 4
                 ) -> tuple[polydiff.Experiment, dict[str, torch.Tensor]]:
    """Load an example config with ``overrides`` (``"table.key=value"``, e.g. to shrink the
    network), build it (every component name resolves), check its metric names, take one
    loss and backward step on ``n`` training items and draw ``n`` samples in 2 steps with
    their conditioning; the samples must belong to the declared spaces.

    Returns:
        ``(experiment, samples)``: the built experiment and the samples with the conditioning
        they were drawn with, for plugin-specific checks (e.g. decoding them).

    Raises:
        AssertionError: a non-finite loss or samples outside the spaces (naming the file).
    """
    path = Path(path)
    manager = polydiff.make_plugin_manager()
    config = polydiff.load_config(path, list(overrides))
    experiment = polydiff.build_experiment(config, manager)
    for metric in config["evaluation"]["metrics"] or []:
        manager.registry.get("metric", metric)
    dataset = experiment.modality.dataset("train")
    batch = polydiff.stack_items(dataset, range(n))
    loss, _ = experiment.loss(experiment.denoiser, batch, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss), f"{path.name}: non-finite loss {float(loss)}"
    loss.backward()
    _, cond = experiment.split_batch(batch)
    out = experiment.sample(experiment.denoiser, n, steps=2, cond=cond, generator=torch.Generator().manual_seed(0))
    polydiff.validate_state(out.state, experiment.spaces, where=f"samples of {path.name}")
    return experiment, {**out.state, **(cond or {})}
