"""Every tabular example config in examples/ is valid, builds, and its loss and sampler run (small)."""
from __future__ import annotations

from pathlib import Path

import pytest

from polydiff.testing import step_example

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("tabular_*.toml"))
SMALL = ["modality.max_rows=300", "denoiser.hidden=[32, 32]"]


def test_there_is_an_example_per_data_set_and_process():
    names = {p.stem for p in EXAMPLES}
    assert {"tabular_penguins", "tabular_diamonds", "tabular_penguins_conditional", "tabular_penguins_reflected",
            "tabular_penguins_multinomial"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_builds_and_runs_one_step(path):
    experiment, samples = step_example(path, SMALL, n=8)
    frame = experiment.modality.decode(samples)
    assert len(frame) == 8 and list(frame.columns) == list(experiment.modality.frame("train").columns)
