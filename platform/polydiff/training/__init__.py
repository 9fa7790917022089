"""The shared training loop: trainer, EMA, checkpoints, DDP helpers, periodic evaluation."""
from __future__ import annotations

from polydiff.training.checkpoint import LoadedRun, latest_checkpoint, load_run, save_checkpoint
from polydiff.training.periodic import sample_and_evaluate
from polydiff.training.trainer import TrainResult, Trainer, train

__all__ = ["LoadedRun", "TrainResult", "Trainer", "latest_checkpoint", "load_run", "sample_and_evaluate",
           "save_checkpoint", "train"]
