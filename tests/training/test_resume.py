"""Resume repeats an uninterrupted run bit for bit on the CPU; a NaN loss stops cleanly."""
from __future__ import annotations

import json

import pytest
import torch

from polydiff import NonFiniteLossError
from polydiff.experiment import build_experiment
from polydiff.training import Trainer, latest_checkpoint, load_run


def _config(tp, tmp_path, manager, **training):
    # dropout exercises the global RNG, accumulate the micro-batch loop, 64 items / 16 per batch
    # = 4 micro-batches per epoch, so step 5 (10 micro-batches) stops in the middle of epoch 2
    cfg = tp.tiny_config(tmp_path, manager, steps=10, accumulate=2, checkpoint_every=4, **training)
    cfg["denoiser"]["dropout"] = 0.1
    return cfg


def test_resume_continues_the_same_loss_sequence(tp, tmp_path):
    manager = tp.make_manager()
    full = Trainer(build_experiment(_config(tp, tmp_path, manager), manager), tmp_path / "full")
    uninterrupted = full.fit()

    stopper = tp.make_manager(tp.Recorder(stop_at=5))
    first = Trainer(build_experiment(_config(tp, tmp_path, stopper), stopper), tmp_path / "split").fit()
    assert first.status.startswith("stopped") and first.steps == 5
    resumed_trainer = Trainer(build_experiment(_config(tp, tmp_path, manager), manager), tmp_path / "split",
                              resume=True)
    assert resumed_trainer.step == 5
    second = resumed_trainer.fit()

    assert second.status == "completed" and second.steps == 10
    assert first.losses + second.losses == uninterrupted.losses  # exact float equality
    for name, value in full.model.state_dict().items():
        assert torch.equal(resumed_trainer.model.state_dict()[name], value), name
    for name, value in full.ema_model.state_dict().items():
        assert torch.equal(resumed_trainer.ema_model.state_dict()[name], value), name
    meta = json.loads((tmp_path / "split" / "run.json").read_text())
    assert meta["resumed"][0]["step"] == 5 and meta["status"] == "completed"
    steps = [json.loads(x)["step"] for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 10


def test_without_restoring_state_the_sequence_differs(tp, tmp_path):
    """Guards the test above: a fresh run with the resumed weights but fresh RNG diverges."""
    manager = tp.make_manager()
    full = Trainer(build_experiment(_config(tp, tmp_path, manager), manager), tmp_path / "full").fit()
    stopper = tp.make_manager(tp.Recorder(stop_at=5))
    Trainer(build_experiment(_config(tp, tmp_path, stopper), stopper), tmp_path / "split").fit()
    trainer = Trainer(build_experiment(_config(tp, tmp_path, manager), manager), tmp_path / "split", resume=True)
    trainer.generator.manual_seed(123)
    assert trainer.fit().losses != full.losses[5:]


def _nan_from(experiment, step):
    original = experiment.loss
    calls = {"n": 0}
    accumulate = experiment.config["training"]["accumulate"]

    def loss(model, batch, *, generator=None):
        calls["n"] += 1
        value, fields = original(model, batch, generator=generator)
        if (calls["n"] - 1) // accumulate + 1 >= step:
            value = value * float("nan")
        return value, fields

    experiment.loss = loss


def test_non_finite_loss_names_step_and_keeps_last_checkpoint(tp, tmp_path):
    rec = tp.Recorder()
    manager = tp.make_manager(rec)
    cfg = tp.tiny_config(tmp_path, manager, steps=20, checkpoint_every=5)
    exp = build_experiment(cfg, manager)
    _nan_from(exp, 7)
    trainer = Trainer(exp, tmp_path / "run")
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    good = tmp_path / "run" / "checkpoints" / "step_0000005"
    message = str(info.value)
    assert "step 7" in message and str(good) in message
    assert trainer.step == 6
    assert latest_checkpoint(tmp_path / "run") == good
    loaded = load_run(tmp_path / "run", manager=tp.make_manager())
    assert loaded.step == 5
    assert all(torch.isfinite(p).all() for p in loaded.model.parameters())
    assert rec.of("end")[0][1].startswith("failed: NonFiniteLossError")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"].startswith("failed")


def test_non_finite_before_any_checkpoint_says_so(tp, tmp_path):
    manager = tp.make_manager()
    exp = build_experiment(tp.tiny_config(tmp_path, manager, steps=20, checkpoint_every=10), manager)
    _nan_from(exp, 2)
    with pytest.raises(NonFiniteLossError, match="step 2 .*no checkpoint was saved"):
        Trainer(exp, tmp_path / "run").fit()
