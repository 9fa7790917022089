"""Modalities that draw a denoising trajectory get evenly spaced clean estimates, the samples last."""
from __future__ import annotations

import torch

import polydiff
from polydiff.builtin.toy_tokens import ToyTokensModality
from polydiff.training.periodic import TRAJECTORY_FRAMES, TRAJECTORY_ITEMS, sample_and_evaluate


class Recording(ToyTokensModality):
    """toy-tokens that keeps the frames it is asked to draw."""

    frames: list = []

    def write_trajectory(self, frames, out_dir):
        Recording.frames = frames
        path = out_dir / "trajectory.txt"
        path.write_text("\n".join(str(f["tokens"][0].tolist()) for f in frames))
        return [path]


class RecordingPlugin:
    @polydiff.hookimpl
    def polydiff_modalities(self):
        yield polydiff.ModalitySpec(name="recording", summary="toy-tokens with a trajectory", factory=Recording)


def test_trajectory_frames_are_clean_estimates_ending_with_the_samples(tmp_path):
    manager = polydiff.make_plugin_manager(autoload=False, extra_plugins={"recording": RecordingPlugin()})
    config = polydiff.config_from_dict({
        "experiment": {"name": "traj", "seed": 0}, "modality": {"name": "recording"},
        "corruption": {"name": "masked"}, "denoiser": {"name": "transformer", "width": 32, "depth": 1},
        "sampling": {"sampler": "masked", "steps": 20}, "evaluation": {"n_samples": 16, "metrics": ["token_tv"]},
    })
    experiment = polydiff.build_experiment(config, manager)
    _, _, paths = sample_and_evaluate(experiment, experiment.denoiser.eval(), tmp_path, n=16,
                                      generator=torch.Generator().manual_seed(0))
    assert tmp_path / "trajectory.txt" in paths
    frames = Recording.frames
    assert len(frames) == TRAJECTORY_FRAMES
    space = experiment.spaces["tokens"]
    for frame in frames:
        assert frame["tokens"].shape == (TRAJECTORY_ITEMS, *space.shape)
        assert int(frame["tokens"].max()) < space.vocab_size, "estimates are data ids, never the mask id"
    assert not torch.equal(frames[0]["tokens"], frames[-1]["tokens"])


def test_modalities_without_a_trajectory_writer_get_none(tmp_path):
    config = polydiff.config_from_dict({"modality": {"name": "toy", "n_train": 200, "n_validation": 50},
                                        "sampling": {"steps": 4}, "evaluation": {"n_samples": 20}})
    experiment = polydiff.build_experiment(config, polydiff.make_plugin_manager(autoload=False))
    _, _, paths = sample_and_evaluate(experiment, experiment.denoiser.eval(), tmp_path, n=20,
                                      generator=torch.Generator().manual_seed(0))
    assert not any("trajectory" in p.name for p in paths)
