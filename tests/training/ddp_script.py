"""Launched by test_ddp.py under ``torch.distributed.run --nproc_per_node=2``: trains the tiny
experiment with DDP on the CPU (gloo) and writes each rank's weight hash and losses."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import torch

from polydiff.experiment import build_experiment
from polydiff.training import Trainer


def main(run_dir: Path, out_dir: Path) -> None:
    spec = importlib.util.spec_from_file_location("tp", Path(__file__).with_name("training_plugin.py"))
    tp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tp)
    manager = tp.make_manager()
    cfg = tp.tiny_config(run_dir.parent, manager, steps=6, batch_size=8, accumulate=2, checkpoint_every=3)
    trainer = Trainer(build_experiment(cfg, manager), run_dir)
    result = trainer.fit()
    digest = hashlib.sha256()
    for name, value in sorted(trainer.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    rank = trainer.dist.rank
    record = {"rank": rank, "world_size": trainer.dist.world_size, "hash": digest.hexdigest(),
              "losses": result.losses, "status": result.status,
              "ddp": type(trainer._ddp).__name__, "threads": torch.get_num_threads()}
    (out_dir / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
