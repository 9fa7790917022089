"""Every tabular example config in examples/ is valid, builds, and its loss and sampler run (small)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import polydiff

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("tabular_*.toml"))
SMALL = ["modality.max_rows=300", "denoiser.hidden=[32, 32]"]


def test_there_is_an_example_per_data_set_and_process():
    names = {p.stem for p in EXAMPLES}
    assert {"tabular_penguins", "tabular_diamonds", "tabular_penguins_conditional", "tabular_penguins_reflected",
            "tabular_penguins_multinomial"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_builds_and_runs_one_step(path):
    manager = polydiff.make_plugin_manager()
    config = polydiff.load_config(path, SMALL)
    experiment = polydiff.build_experiment(config, manager)
    for metric in config["evaluation"]["metrics"]:
        manager.registry.get("metric", metric)
    dataset = experiment.modality.dataset("train")
    batch = torch.utils.data.default_collate([dataset[i] for i in range(8)])
    loss, _ = experiment.loss(experiment.denoiser, batch, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    loss.backward()
    _, cond = experiment.split_batch(batch)
    out = experiment.sample(experiment.denoiser, 8, steps=2, cond=cond, generator=torch.Generator().manual_seed(0))
    polydiff.validate_state(out.state, experiment.spaces, where=f"samples of {path.name}")
    frame = experiment.modality.decode({**out.state, **(cond or {})})
    assert len(frame) == 8 and list(frame.columns) == list(experiment.modality.frame("train").columns)
