"""Checkpoints are written atomically, verified when read, and missing pieces are named."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from polydiff import CheckpointError
from polydiff.training import latest_checkpoint, load_run, save_checkpoint, train
from polydiff.training.checkpoint import KEEP_CHECKPOINTS, load_state


def _nets():
    torch.manual_seed(0)
    return nn.Linear(3, 2), nn.Linear(3, 2)


def test_save_writes_the_layout_and_state_loads_weights_only(tmp_path):
    model, ema = _nets()
    folder = save_checkpoint(tmp_path, 100, model, ema, {"step": 100, "rng": [torch.get_rng_state()]})
    assert folder == tmp_path / "checkpoints" / "step_0000100"
    assert sorted(p.name for p in folder.iterdir()) == ["ema.safetensors", "meta.json", "model.safetensors",
                                                         "state.pt"]
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text()) == {"step": 100, "path": "step_0000100"}
    assert load_state(folder)["step"] == 100


def test_failure_mid_save_leaves_no_partial_folder(tmp_path, monkeypatch):
    model, ema = _nets()
    save_checkpoint(tmp_path, 1, model, ema, {"step": 1})

    def broken_save(obj, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 2, model, ema, {"step": 2})
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest.json", "step_0000001"]
    assert latest_checkpoint(tmp_path).name == "step_0000001"


def test_only_recent_checkpoints_are_kept(tmp_path):
    model, ema = _nets()
    for step in range(1, 6):
        save_checkpoint(tmp_path, step, model, ema, {"step": step})
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert kept == [f"step_{s:07d}" for s in range(6 - KEEP_CHECKPOINTS, 6)]


@pytest.fixture
def trained_run(tp, tmp_path):
    manager = tp.make_manager()
    result = train(tp.tiny_config(tmp_path, manager, steps=4, checkpoint_every=2), run_dir=tmp_path / "run",
                   manager=manager)
    return result.run_dir, manager


def test_truncated_safetensors_is_named(trained_run):
    run_dir, manager = trained_run
    path = latest_checkpoint(run_dir) / "ema.safetensors"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=str(path)):
        load_run(run_dir, manager=manager)
    assert load_run(run_dir, manager=manager, use_ema=False).step == 4  # the other file is fine


def test_flipped_byte_in_weights_is_detected(trained_run):
    run_dir, manager = trained_run
    path = latest_checkpoint(run_dir) / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_run(run_dir, manager=manager, use_ema=False)


def test_load_run_by_step_and_missing_step(trained_run):
    run_dir, manager = trained_run
    assert load_run(run_dir, manager=manager, step=2).step == 2
    with pytest.raises(CheckpointError, match="step 3"):
        load_run(run_dir, manager=manager, step=3)


def test_load_run_uses_ema_weights(trained_run):
    from safetensors.torch import load_file

    run_dir, manager = trained_run
    ema = load_file(str(latest_checkpoint(run_dir) / "ema.safetensors"))
    loaded = load_run(run_dir, manager=manager)
    for name, value in loaded.model.state_dict().items():
        assert torch.equal(value, ema[name])
    assert loaded.meta["status"] == "completed"


def test_missing_run_dir_and_config(tp, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_run(tmp_path / "nope")
    (tmp_path / "bare").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_run(tmp_path / "bare")


def test_missing_checkpoint_is_named(trained_run):
    import shutil

    run_dir, manager = trained_run
    shutil.rmtree(run_dir / "checkpoints")
    with pytest.raises(CheckpointError, match="has no checkpoint"):
        load_run(run_dir, manager=manager)
