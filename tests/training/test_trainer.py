"""The training loop end to end on a tiny model: hooks, stopping, metadata, metrics files."""
from __future__ import annotations

import json
import math

import pytest
import torch

from polydiff import CheckpointError
from polydiff.experiment import build_experiment
from polydiff.training import Trainer, latest_checkpoint, load_run, train
from polydiff.training.lr import lr_factor


def test_hooks_called_in_order_with_each_step(tp, tmp_path):
    rec = tp.Recorder()
    manager = tp.make_manager(rec)
    cfg = tp.tiny_config(tmp_path, manager, steps=8, eval_every=4)
    result = train(cfg, run_dir=tmp_path / "run", manager=manager)
    assert result.status == "completed" and result.steps == 8 and len(result.losses) == 8
    kinds = [e[0] for e in rec.events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert [e[1] for e in rec.of("step")] == list(range(1, 9))
    assert [e[1] for e in rec.of("evaluate")] == [4, 8]  # every 4 steps; the end is step 8, not repeated
    assert rec.of("end") == [("end", "completed")]
    rows = rec.of("evaluate")[-1][2]
    assert rows and rows[0]["metric"] == "tmean_gap" and math.isfinite(rows[0]["value"])
    assert {"nfe", "sampler", "steps"} <= set(rows[0])
    metrics = rec.of("step")[0][2]
    assert {"loss", "loss/x", "grad_norm", "lr"} <= set(metrics)
    assert metrics["loss"] == pytest.approx(result.losses[0])
    for step in (4, 8):
        folder = tmp_path / "run" / "samples" / f"step_{step:07d}"
        assert (folder / "samples.csv").is_file() and (folder / "metrics.csv").is_file()


def test_eval_every_zero_evaluates_only_at_the_end(tp, tmp_path):
    rec = tp.Recorder()
    manager = tp.make_manager(rec)
    train(tp.tiny_config(tmp_path, manager, steps=6, eval_every=0), run_dir=tmp_path / "run", manager=manager)
    assert [e[1] for e in rec.of("evaluate")] == [6]


def test_request_stop_from_hook(tp, tmp_path):
    rec = tp.Recorder(stop_at=3)
    manager = tp.make_manager(rec)
    result = train(tp.tiny_config(tmp_path, manager, steps=10), run_dir=tmp_path / "run", manager=manager)
    assert result.status == "stopped: asked at step 3"
    assert result.steps == 3 and len(result.losses) == 3
    assert rec.of("end") == [("end", "stopped: asked at step 3")]
    assert latest_checkpoint(tmp_path / "run").name == "step_0000003"
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "stopped: asked at step 3"


def test_run_metadata_recorded(tp, tmp_path):
    manager = tp.make_manager()
    cfg = tp.tiny_config(tmp_path, manager, steps=4, accumulate=2, batch_size=8)
    train(cfg, run_dir=tmp_path / "run", manager=manager)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["seed"] == 0 and meta["world_size"] == 1
    assert meta["effective_batch_size"] == 8 * 1 * 2
    assert meta["versions"]["torch"] == torch.__version__
    assert {"python", "numpy", "polydiff"} <= set(meta["versions"])
    assert "tplug" in meta["plugins"]
    assert "git_commit" in meta and (meta["git_commit"] is None or len(meta["git_commit"]) == 40)
    assert meta["status"] == "completed" and meta["started"] and meta["finished"] and meta["device"] == "cpu"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["training"]["accumulate"] == 2


def test_metrics_jsonl_lines_and_lr_schedule(tp, tmp_path):
    rec = tp.Recorder()
    manager = tp.make_manager(rec)
    cfg = tp.tiny_config(tmp_path, manager, steps=10, log_every=3, warmup_steps=3, min_lr_ratio=0.1)
    train(cfg, run_dir=tmp_path / "run", manager=manager)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [3, 6, 9, 10]
    for record in lines:
        assert {"loss", "loss/x", "grad_norm", "lr", "steps_per_s"} <= set(record)
        assert math.isfinite(record["loss"]) and record["steps_per_s"] > 0
    lrs = [e[2]["lr"] for e in rec.of("step")]
    expected = [3e-3 * lr_factor(s, total_steps=10, warmup_steps=3, min_lr_ratio=0.1) for s in range(1, 11)]
    assert lrs == pytest.approx(expected)
    assert lrs[-1] == pytest.approx(3e-4)


def test_default_run_dir_and_loss_decreases(tp, tmp_path):
    manager = tp.make_manager()
    cfg = tp.tiny_config(tmp_path, manager, steps=60, lr_schedule="constant", checkpoint_every=0)
    result = train(cfg, manager=manager)
    assert result.run_dir.parent == tmp_path and result.run_dir.name.startswith("tiny-")
    assert sum(result.losses[-10:]) < sum(result.losses[:10])
    assert [p.name for p in (result.run_dir / "checkpoints").glob("step_*")] == ["step_0000060"]
    loaded = load_run(result.run_dir, manager=manager)
    assert loaded.step == 60 and not loaded.model.training


def test_resume_without_checkpoint_is_a_clear_error(tp, tmp_path):
    manager = tp.make_manager()
    cfg = tp.tiny_config(tmp_path, manager)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(cfg, run_dir=tmp_path / "empty", manager=manager, resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Trainer(build_experiment(cfg, manager), tmp_path / "empty", resume=True)


def test_batch_larger_than_data_is_a_config_error(tp, tmp_path):
    from polydiff import ConfigError

    manager = tp.make_manager()
    cfg = tp.tiny_config(tmp_path, manager, batch_size=65)
    with pytest.raises(ConfigError, match="batch_size = 65"):
        Trainer(build_experiment(cfg, manager), tmp_path / "run")


def test_ema_weights_differ_from_trained_weights(tp, tmp_path):
    manager = tp.make_manager()
    cfg = tp.tiny_config(tmp_path, manager, steps=5, ema_decay=0.5)
    trainer = Trainer(build_experiment(cfg, manager), tmp_path / "run")
    trainer.fit()
    ema = dict(trainer.ema_model.named_parameters())
    assert any(not torch.equal(p, ema[n]) for n, p in trainer.model.named_parameters())
    assert trainer.ema.updates == 5
