"""Every text example config in examples/ is valid, builds, and its loss and sampler run (small)."""
from __future__ import annotations

from pathlib import Path

import pytest

from polydiff.testing import step_example

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("text_*.toml"))
SMALL = ["modality.max_chars=20000", "modality.seq_len=32", "denoiser.width=32", "denoiser.depth=1",
         "denoiser.heads=2"]


def test_there_is_an_example_per_process():
    names = {p.stem for p in EXAMPLES}
    assert {"text_masked", "text_uniform", "text_embedding", "text_ar", "text_bpe_masked"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_builds_and_runs_one_step(path):
    step_example(path, SMALL + (["modality.vocab_size=300"] if "bpe" in path.stem else []), n=2)
