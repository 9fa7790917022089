"""Two CPU processes under torchrun (gloo) end with identical weights and record world size 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_two_ranks_end_with_identical_weights(tmp_path):
    run_dir, out_dir = tmp_path / "run", tmp_path / "out"
    out_dir.mkdir()
    script = Path(__file__).with_name("ddp_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "POLYDIFF_DISABLE_PLUGIN_AUTOLOAD": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(script), str(run_dir), str(out_dir)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert all(r["ddp"] == "DistributedDataParallel" and r["status"] == "completed" for r in ranks)
    assert ranks[0]["hash"] == ranks[1]["hash"]
    assert ranks[0]["losses"] != ranks[1]["losses"]  # each rank saw its own shard and noise
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["world_size"] == 2 and meta["effective_batch_size"] == 8 * 2 * 2
    assert (run_dir / "checkpoints" / "step_0000006" / "ema.safetensors").is_file()
    state_ranks = __import__("torch").load(run_dir / "checkpoints" / "step_0000006" / "state.pt",
                                           weights_only=True)["rng"]
    assert len(state_ranks) == 2  # both ranks' generators are saved for an exact resume
