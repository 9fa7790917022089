"""The guidance grid of examples/ runs: class accuracy and FD-classifier at each guidance scale."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from polydiff.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_compare_reports_class_accuracy_per_guidance_scale(tmp_path):
    grid = tmp_path / "grid.toml"
    text = (ROOT / "examples" / "compare_image_guidance.toml").read_text()
    text = text.replace('base = "image_cfg.toml"', f'base = "{(ROOT / "examples" / "image_cfg.toml").as_posix()}"')
    text = text.replace("steps = 5000", 'steps = 20\nbatch_size = 32\nwarmup_steps = 0')
    text = text.replace("n_samples = 500", "n_samples = 40")
    text = text.replace('"sampling.steps" = [18]', '"sampling.steps" = [2]')
    text += ('\n[modality]\ndataset = "digits"\n\n[denoiser]\nchannels = 8\nchannel_mults = [1, 2]\ngroups = 4\n'
             'attention_resolutions = [4]\n')
    grid.write_text(text)
    out = tmp_path / "out"
    assert main(["compare", str(grid), "--out", str(out)]) == 0
    table = pd.read_csv(out / "results.csv")
    accuracy = table[table["metric"] == "class_accuracy"]
    assert sorted(accuracy["sampling.guidance_scale"]) == [1.0, 1.5, 2.0, 4.0]
    assert accuracy["value"].between(0, 1).all()
    assert set(table["metric"]) >= {"class_accuracy", "fd_classifier"}
