"""Every image example config in examples/ is valid, names installed components, builds, and
its loss and sampler run (with the U-Net shrunk so the check is fast)."""
from __future__ import annotations

from pathlib import Path

import pytest

from polydiff.testing import step_example

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("image_*.toml"))
SMALL = ["denoiser.channels=8", "denoiser.channel_mults=[1, 2]", "denoiser.groups=4",
         "denoiser.attention_resolutions=[7]", "modality.n_validation=64"]


def test_there_is_an_example_per_process():
    names = {p.stem for p in EXAMPLES}
    assert {"image_edm", "image_flow", "image_reflected", "image_masked", "image_bridge_sr2", "image_cfg"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_builds_and_runs_one_step(path):
    step_example(path, SMALL)
