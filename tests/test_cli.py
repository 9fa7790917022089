"""The `polydiff` command: train / sample / evaluate / demo end to end at tiny budgets, and errors.

Most tests call ``polydiff.cli.main`` in-process; two run ``python -m polydiff`` to check
the real entry point and exit codes.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
import pytest

import polydiff
from polydiff.cli import main
from polydiff.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("cli")   # one worker trains the shared module fixture
EXAMPLE = ROOT / "examples" / "toy_gmm.toml"
TINY = ["training.steps=30", "denoiser.width=32", "denoiser.depth=2", "training.log_every=10",
        "training.checkpoint_every=1000", "evaluation.n_samples=200", "sampling.n=200", "sampling.steps=8"]


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One tiny trained run shared by the sample / evaluate tests."""
    path = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", str(EXAMPLE), *sets(TINY), "--run-dir", str(path)]) == 0
    return path


def test_train_writes_run_folder_with_overrides(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    assert config["training"]["steps"] == 30 and config["denoiser"]["width"] == 32
    assert config["sampling"]["sampler"] == "dpmpp_2m"          # from the example file
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    logged = [line for line in lines if "loss" in line]
    assert logged and max(line["step"] for line in logged) == 30
    assert all(math.isfinite(line["loss"]) for line in logged)
    assert list((run_dir / "checkpoints").glob("step_*/ema.safetensors"))


def test_sample_writes_artefacts_samples_and_info(run_dir, tmp_path, capsys):
    from safetensors.torch import load_file

    out = tmp_path / "samples"
    assert main(["sample", str(run_dir), "--n", "50", "--sampler", "euler", "--steps", "5", "--seed", "3",
                 "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    samples = load_file(str(out / "samples.safetensors"))
    assert samples["x"].shape == (50, 2) and samples["x"].isfinite().all()
    info = json.loads((out / "info.json").read_text())
    assert info["sampler"] == "euler" and info["steps"] == 5 and info["nfe"] == 5 and info["n"] == 50
    assert info["seconds"] >= 0
    assert list(out.glob("*.png"))


def test_sample_is_seeded_and_defaults_to_a_folder_in_the_run(run_dir, capsys):
    from safetensors.torch import load_file

    assert main(["sample", str(run_dir), "--n", "20", "--steps", "4"]) == 0
    assert main(["sample", str(run_dir), "--n", "20", "--steps", "4"]) == 0
    folders = sorted((run_dir / "samples").glob("cli-*"))
    assert len(folders) == 2
    first, second = (load_file(str(f / "samples.safetensors"))["x"] for f in folders)
    assert (first == second).all()
    assert json.loads((folders[0] / "info.json").read_text())["sampler"] == "dpmpp_2m"


def test_evaluate_writes_metrics_and_bits_per_dim(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--n", "100", "--steps", "5"]) == 0
    folder, = (run_dir / "evaluation").iterdir()
    table = pd.read_csv(folder / "metrics.csv")
    assert {"sliced_wasserstein", "mmd", "elbo_bits_per_dim", "pf_ode_bits_per_dim"} <= set(table["metric"])
    assert table["value"].map(math.isfinite).all()
    assert (folder / "metrics.md").read_text().count("|") > 10
    assert list(folder.glob("*.png"))
    assert "sliced_wasserstein" in capsys.readouterr().out


@pytest.mark.parametrize("override, suggestion", [
    ("modality.name=tyo", "'toy'"),
    ("corruption.name=gausian", "'gaussian'"),
    ("corruption.schedule=edn", "'edm'"),
    ("sampling.sampler=dpmpp2m", "'dpmpp_2m'"),
    ("denoiser.name=mpl", "'mlp'"),
    ("sampling.grid=karas", "'karras'"),
])
def test_unknown_component_names_fail_before_training(override, suggestion, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(EXAMPLE), *sets([*TINY, override]), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polydiff: error: ") and f"Did you mean {suggestion}" in err
    assert "Traceback" not in err
    assert not run.exists(), "names must be checked before a run folder is created"


def test_unknown_sampler_when_sampling(run_dir, capsys):
    assert main(["sample", str(run_dir), "--sampler", "eulr", "--n", "4"]) == 2
    assert "Did you mean 'euler'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_missing_run_dir_is_a_clear_error(command, tmp_path, capsys):
    assert main([command, str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "does not exist" in err and "polydiff train" in err


def test_folder_without_config_is_not_a_run(tmp_path, capsys):
    assert main(["sample", str(tmp_path)]) == 2
    assert "config.json is missing" in capsys.readouterr().err


def test_bad_config_file_reports_file_and_line(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[modality]\nname = "toy"\n[training]\nsteps = \n')
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "line 4" in err


def test_debug_env_reraises(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYDIFF_DEBUG", "1")
    with pytest.raises(ConfigError):
        main(["train", str(tmp_path / "missing.toml")])


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    from polydiff import runs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "train_from_file", interrupted)
    assert main(["train", str(EXAMPLE)]) == 130
    assert capsys.readouterr().err.strip() == "polydiff: interrupted"


def test_block_option_reaches_the_plugin_manager(monkeypatch, tmp_path):
    import polydiff.plugins

    seen = {}
    real = polydiff.plugins.make_plugin_manager

    def recording(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(polydiff.plugins, "make_plugin_manager", recording)
    assert main(["-p", "no:foo", "train", str(tmp_path / "missing.toml"), "-p", "no:bar"]) == 2
    assert seen["blocked"] == ["foo", "bar"]


def test_malformed_block_option(capsys, tmp_path):
    assert main(["-p", "foo", "train", str(tmp_path / "x.toml")]) == 2
    assert "-p no:NAME" in capsys.readouterr().err


def test_resume_refuses_a_config_too(run_dir, capsys):
    assert main(["train", str(EXAMPLE), "--resume", str(run_dir)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_plugins_list_shows_builtins(capsys):
    assert main(["plugins", "list", "--all"]) == 0
    assert "toy" in capsys.readouterr().out


def test_demo_reports_every_modality_and_failures(tmp_path, monkeypatch, capsys):
    import polydiff.plugins

    class Broken:
        @staticmethod
        @polydiff.hookimpl
        def polydiff_modalities():
            from polydiff.builtin.toy import ToyModality

            demo = {"modality": {"name": "brokentoy"}, "denoiser": {"name": "no_such_net"}}
            yield polydiff.ModalitySpec(name="brokentoy", summary="a demo that fails", factory=ToyModality,
                                        demo_config=demo)

    real = polydiff.plugins.make_plugin_manager
    monkeypatch.setattr(polydiff.plugins, "make_plugin_manager",
                        lambda **kw: real(extra_plugins={"brokendemo": Broken}, **kw))
    out = tmp_path / "report"
    assert main(["demo", "--steps", "30", "--out", str(out)]) == 1
    markdown, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "## toy" in markdown and "sliced_wasserstein" in markdown
    assert "brokentoy" in markdown and "no_such_net" in markdown and "no_such_net" in page
    assert "data:image/png;base64," in page
    for link in [line.split("](")[1].rstrip(")") for line in markdown.splitlines() if line.startswith("![")]:
        assert (out / link).is_file()
    table = pd.read_csv(out / "metrics.csv")
    toys = {"builtin.toy", "builtin.toy_tokens", "builtin.toy_box", "builtin.toy_paired", "builtin.toy_mixed"}
    assert toys <= set(table["plugin"]) and (table["nfe"] > 0).all()  # plus any installed plugin's demo
    if "text" in set(table["plugin"]):  # text artefacts are shown as excerpts
        assert "[samples.txt](" in markdown and "===== sample 1 of" in markdown and "===== sample 1 of" in page
    assert "brokentoy" in capsys.readouterr().err


def _polydiff(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "POLYDIFF_DEBUG": ""}
    return subprocess.run([sys.executable, "-m", "polydiff", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_module_entry_point_version():
    done = _polydiff("--version")
    assert done.returncode == 0 and polydiff.__version__ in done.stdout


def test_module_entry_point_error_exit_code(tmp_path):
    done = _polydiff("evaluate", str(tmp_path / "missing"))
    assert done.returncode == 2
    assert done.stderr.startswith("polydiff: error: ") and "Traceback" not in done.stderr


def test_sample_inpaints_known_values_from_a_file(run_dir, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    known = tmp_path / "known.safetensors"
    save_file({"x": torch.tensor([1.25, 0.0]), "x.mask": torch.tensor([1.0, 0.0])}, str(known))
    out = tmp_path / "inpainted"
    assert main(["sample", str(run_dir), "--n", "30", "--steps", "6", "--inpaint", str(known), "--out", str(out)]) == 0
    x = load_file(str(out / "samples.safetensors"))["x"]
    assert torch.equal(x[:, 0], torch.full((30,), 1.25)), "the known coordinate is kept exactly"
    assert float(x[:, 1].std()) > 0.05, "the unknown coordinate is sampled"
    assert json.loads((out / "info.json").read_text())["inpaint"] == str(known)


def test_inpaint_file_errors_name_the_problem(run_dir, tmp_path, capsys):
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    save_file({"x": torch.tensor([1.0, 0.0])}, str(bad))
    assert main(["sample", str(run_dir), "--n", "4", "--inpaint", str(bad)]) == 2
    assert "no '<field>.mask'" in capsys.readouterr().err
    wrong = tmp_path / "wrong.safetensors"
    save_file({"y": torch.zeros(2), "y.mask": torch.ones(2)}, str(wrong))
    assert main(["sample", str(run_dir), "--n", "4", "--inpaint", str(wrong)]) == 2
    assert "unknown: ['y']" in capsys.readouterr().err
    shape = tmp_path / "shape.safetensors"
    save_file({"x": torch.zeros(3), "x.mask": torch.ones(3)}, str(shape))
    assert main(["sample", str(run_dir), "--n", "4", "--inpaint", str(shape)]) == 2
    assert "expected (1, 2)" in capsys.readouterr().err
