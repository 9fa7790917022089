"""The one training loop every domain shares.

``Trainer(experiment, run_dir).fit()`` trains ``experiment.denoiser`` on the modality's
``"train"`` split with ``experiment.loss``: AdamW, linear warm-up then cosine decay (or a
constant learning rate), gradient clipping and accumulation, EMA weights, bf16 autocast and
TF32 on CUDA, optional ``torch.compile``, and DDP when started by ``torchrun``. Rank 0 writes
the run folder::

    run_dir/config.json            the validated config
    run_dir/run.json               seed, world size, effective batch, versions, git commit, status
    run_dir/metrics.jsonl          one JSON object per log line
    run_dir/checkpoints/step_0000100/{model,ema}.safetensors, state.pt, meta.json
    run_dir/checkpoints/latest.json
    run_dir/samples/step_0000100/  periodic evaluation: artefacts and metrics.csv

Determinism: the data order is a ``DistributedSampler`` permutation seeded by the config seed
and the epoch; the corruption times and noise come from a per-rank generator
(``seed + 1000 * rank``); everything random is saved in ``state.pt``, so on the CPU a resumed
run repeats the loss sequence of an uninterrupted one bit for bit.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from polydiff.data import collate
from polydiff.errors import CheckpointError, ConfigError, NonFiniteLossError
from polydiff.training import distributed
from polydiff.training.checkpoint import (checkpoint_folder, latest_checkpoint, load_state, load_weights, revalidate,
                                          save_checkpoint, step_name, write_json_atomic)
from polydiff.training.ema import EMA
from polydiff.training.environment import run_metadata
from polydiff.training.lr import lr_factor
from polydiff.training.periodic import sample_and_evaluate


@dataclass
class TrainResult:
    """What ``Trainer.fit`` returns.

    Attributes:
        run_dir: the run folder.
        steps: completed optimizer steps (including those before a resume).
        status: ``"completed"`` or ``"stopped: <reason>"``.
        final_loss: the last step's mean loss on this rank (NaN when no step ran).
        losses: the per-step mean loss on this rank, for the steps run by this ``fit``.
    """

    run_dir: Path
    steps: int
    status: str
    final_loss: float
    losses: list[float] = field(default_factory=list)


def resolve_device(name: str | None) -> torch.device:
    """``"auto"`` / None -> CUDA when available, else CPU; anything else as given."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class _DataStream:
    """Endless micro-batches: a ``DataLoader`` per epoch over a resumable distributed sampler.

    ``position`` counts the micro-batches consumed in the current epoch; restoring
    ``(epoch, position)`` continues with the very next batch of an uninterrupted run.
    """

    def __init__(self, dataset, info: distributed.DistInfo, *, batch_size: int, seed: int, num_workers: int,
                 pin_memory: bool) -> None:
        self.sampler = distributed.ResumableSampler(dataset, info, seed=seed)
        if self.sampler.num_samples < batch_size:
            raise ConfigError(f"[training] batch_size = {batch_size} is larger than the {self.sampler.num_samples} "
                              f"training items each of the {info.world_size} rank(s) gets; lower batch_size")
        self.batch_size, self.seed = batch_size, seed
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, drop_last=True,
                                 collate_fn=collate, num_workers=num_workers, pin_memory=pin_memory,
                                 generator=torch.Generator())
        self.epoch, self.position = 0, 0
        self._iter = None

    def _start(self) -> None:
        self.sampler.set_epoch(self.epoch)
        self.sampler.start = self.position * self.batch_size
        self.loader.generator.manual_seed(self.seed + self.epoch)  # worker seeds; keeps the global RNG untouched
        self._iter = iter(self.loader)

    def next(self) -> Any:
        """The next micro-batch (a dict of batched tensors)."""
        if self._iter is None:
            self._start()
        try:
            batch = next(self._iter)
        except StopIteration:
            self.epoch, self.position = self.epoch + 1, 0
            self._start()
            batch = next(self._iter)
        self.position += 1
        return batch

    def state(self) -> dict[str, int]:
        """``{"epoch", "position"}`` for ``state.pt``."""
        return {"epoch": self.epoch, "position": self.position}

    def load(self, state: dict[str, int]) -> None:
        """Continue from a saved ``state()``."""
        self.epoch, self.position, self._iter = int(state["epoch"]), int(state["position"]), None


class _Logger:
    """Rank 0's outputs: metrics.jsonl always, TensorBoard when installed, a tqdm bar on request."""

    def __init__(self, run_dir: Path, *, enabled: bool, progress: bool, total: int, initial: int) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        self.bar = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except Exception:  # TensorBoard is optional: no package, no event files
            self.tb = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, disable=None)

    def truncate_after(self, step: int) -> None:
        """Drop lines of steps after ``step`` (a resumed run rewrites them)."""
        if not self.enabled or not self.path.is_file():
            return
        keep = [ln for ln in self.path.read_text(encoding="utf-8").splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= step]
        self.path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl (and TensorBoard)."""
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, record["step"])
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.4g}", lr=f"{record['lr']:.3g}", refresh=False)

    def tick(self) -> None:
        """Advance the progress bar by one step."""
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        """Flush and close every output."""
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()


class Trainer:
    """Trains an experiment's denoiser; see the module docstring for what it writes.

    Args:
        experiment: a ``polydiff.Experiment`` (its ``denoiser`` holds the initial weights).
        run_dir: the run folder (created by rank 0).
        resume: continue from the latest checkpoint of ``run_dir`` (CheckpointError if none).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default ``[experiment] device``.

    Attributes:
        step: completed optimizer steps.
        model: the trained network, unwrapped (not DDP, not compiled).
        ema_model: the network holding the EMA weights (eval mode).
        manager: ``experiment.manager``, whose hooks the loop calls.
    """

    def __init__(self, experiment: Any, run_dir: Path, *, resume: bool = False, device: str | None = None) -> None:
        self.experiment, self.manager = experiment, experiment.manager
        self.config = experiment.config
        self.cfg = self.config["training"]
        self.seed = int(self.config["experiment"]["seed"])
        self.run_dir = Path(run_dir)
        self.device = resolve_device(device or self.config["experiment"]["device"])
        self.dist = distributed.init(self.device.type)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.dist.local_rank if self.dist.enabled else torch.cuda.current_device())
        self.amp_dtype = self._precision()
        self.model = experiment.denoiser.to(self.device)
        torch.manual_seed(self.seed + 1000 * self.dist.rank)  # dropout etc. differ per rank
        self.ema = EMA(self.model, self.cfg["ema_decay"])
        self.ema_model = self.ema.model
        self.optimizer = self._make_optimizer()
        self._params = list(self.model.parameters())
        self.generator = torch.Generator().manual_seed(self.seed + 1000 * self.dist.rank)
        self.step = 0
        self._stop_reason: str | None = None
        self._last_saved: Path | None = None
        self._data = _DataStream(experiment.modality.dataset("train"), self.dist, batch_size=self.cfg["batch_size"],
                                 seed=self.seed, num_workers=self.cfg["num_workers"],
                                 pin_memory=self.device.type == "cuda")
        if resume:
            self._resume()
        self._ddp = distributed.wrap(self.model, self.dist, self.device)
        self._forward = torch.compile(self._ddp) if self.cfg["compile"] else self._ddp

    # -- setup -------------------------------------------------------------------------

    def _precision(self) -> torch.dtype | None:
        wanted = self.cfg["precision"]
        if self.device.type == "cuda" and wanted != "fp32":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if wanted == "bf16" or (wanted == "auto" and self.device.type == "cuda" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16
        return None

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.cfg
        return torch.optim.AdamW(self.model.parameters(), lr=c["lr"], betas=tuple(c["betas"]),
                                 weight_decay=c["weight_decay"], fused=self.device.type == "cuda" or None)

    @property
    def effective_batch_size(self) -> int:
        """``batch_size * world_size * accumulate``: items per optimizer step."""
        return self.cfg["batch_size"] * self.dist.world_size * self.cfg["accumulate"]

    # -- checkpoints -------------------------------------------------------------------

    def _rng_state(self) -> dict[str, torch.Tensor]:
        state = {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _training_state(self) -> dict[str, Any]:
        return {"step": self.step, "optimizer": self.optimizer.state_dict(), "ema_updates": self.ema.updates,
                "data": self._data.state(), "world_size": self.dist.world_size,
                "rng": distributed.gather_objects(self._rng_state(), self.dist)}

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 writes; every rank must call it)."""
        state = self._training_state()
        if self.dist.is_main:
            self._last_saved = save_checkpoint(self.run_dir, self.step, self.model, self.ema_model, state)
        distributed.barrier(self.dist)
        return self._last_saved

    def _resume(self) -> None:
        folder = checkpoint_folder(self.run_dir, None)
        load_weights(self.model, folder, "model.safetensors")
        load_weights(self.ema_model, folder, "ema.safetensors")
        state = load_state(folder)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.ema.updates = int(state["step"]), int(state["ema_updates"])
        self._data.load(state["data"])
        rngs = state["rng"]
        if len(rngs) == self.dist.world_size:
            rng = rngs[self.dist.rank]
            self.generator.set_state(rng["generator"])
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["cuda"], self.device)
        else:  # another world size: the data shards differ anyway; reseed reproducibly
            self.generator.manual_seed(self.seed + 1000 * self.dist.rank + self.step)
        self._last_saved = folder

    # -- run folder --------------------------------------------------------------------

    def _write_run_start(self, resumed: bool) -> None:
        if not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.run_dir / "config.json", self.config)
        previous = self._read_run_json() if resumed else {}
        meta = {**previous, "seed": self.seed, "world_size": self.dist.world_size,
                "batch_size": self.cfg["batch_size"], "accumulate": self.cfg["accumulate"],
                "effective_batch_size": self.effective_batch_size, "device": str(self.device),
                "precision": "bf16" if self.amp_dtype == torch.bfloat16 else "fp32", "compile": self.cfg["compile"],
                **run_metadata(self.manager), "status": "running", "steps": self.step}
        meta.setdefault("started", _now())
        if resumed:
            meta["resumed"] = [*previous.get("resumed", []), {"at": _now(), "step": self.step}]
        write_json_atomic(self.run_dir / "run.json", meta)

    def _read_run_json(self) -> dict[str, Any]:
        try:
            return json.loads((self.run_dir / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _write_run_end(self, status: str) -> None:
        if self.dist.is_main:
            meta = self._read_run_json()
            meta.update(status=status, steps=self.step, finished=_now())
            write_json_atomic(self.run_dir / "run.json", meta)

    # -- the loop ----------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Stop after the current step (with a checkpoint); the status becomes ``"stopped: <reason>"``."""
        self._stop_reason = reason

    def _batch_to_device(self, batch: Any) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _set_lr(self, step: int) -> float:
        c = self.cfg
        lr = c["lr"] * lr_factor(step, total_steps=c["steps"], warmup_steps=c["warmup_steps"],
                                 schedule=c["lr_schedule"], min_lr_ratio=c["min_lr_ratio"])
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _backward(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward and backward over ``accumulate`` micro-batches; mean loss and per-field losses."""
        accumulate = self.cfg["accumulate"]
        total, fields = torch.zeros((), device=self.device), {}
        for micro in range(accumulate):
            batch = self._batch_to_device(self._data.next())
            last = micro == accumulate - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self._ddp.no_sync()
            with sync:
                with self._autocast():
                    loss, per_field = self.experiment.loss(self._forward, batch, generator=self.generator)
                (loss / accumulate).backward()
            total += loss.detach().float() / accumulate
            for key, value in per_field.items():
                fields[key] = fields.get(key, 0.0) + value.float() / accumulate
        return total, fields

    def _grad_norm(self) -> torch.Tensor:
        params = [p for p in self._params if p.grad is not None]
        if self.cfg["grad_clip"] > 0:
            return torch.nn.utils.clip_grad_norm_(params, self.cfg["grad_clip"])
        return torch.nn.utils.get_total_norm([p.grad for p in params])

    def _train_step(self) -> tuple[dict[str, float], float]:
        """One optimizer step; returns (metrics averaged over ranks, this rank's loss)."""
        step = self.step + 1
        lr = self._set_lr(step)
        self.optimizer.zero_grad(set_to_none=True)
        loss, fields = self._backward()
        grad_norm = self._grad_norm()
        local = torch.stack([loss, grad_norm.float().to(self.device),
                             *(v.to(self.device) for v in fields.values())])
        values = distributed.all_reduce_mean(local.clone(), self.dist).tolist()
        local_loss = float(local[0])
        if not (math.isfinite(values[0]) and math.isfinite(values[1])):
            self._fail_non_finite(step, values[0], values[1])
        self.optimizer.step()
        self.step = step
        self.ema.update(self.model)
        metrics = {"loss": values[0], **dict(zip(fields, values[2:])), "grad_norm": values[1], "lr": lr}
        return metrics, local_loss

    def _fail_non_finite(self, step: int, loss: float, grad_norm: float) -> None:
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm} (loss {loss})"
        if self._last_saved is not None:
            where = f"the last good checkpoint is {self._last_saved} (kept intact; resume from it, e.g. with a lower lr)"
        else:
            where = "no checkpoint was saved before it (lower [training] checkpoint_every or lr and retrain)"
        raise NonFiniteLossError(f"non-finite {what} at step {step} of run {self.run_dir}; {where}")

    def _should_stop(self) -> bool:
        flag = distributed.any_rank(self._stop_reason is not None, self.dist, self.device)
        if flag and self._stop_reason is None:
            self._stop_reason = "requested on another rank"
        return flag

    def evaluate(self) -> list[dict[str, Any]]:
        """Sample with the EMA model, score, write artefacts to ``samples/step_N`` (rank 0) and call
        ``polydiff_evaluate``. Every rank must call it; other ranks get ``[]``."""
        rows: list[dict[str, Any]] = []
        if self.dist.is_main:
            ev = self.config["evaluation"]
            generator = torch.Generator().manual_seed(self.seed + self.step)
            out_dir = self.run_dir / "samples" / step_name(self.step)
            _, rows, _ = sample_and_evaluate(self.experiment, self.ema_model, out_dir, n=ev["n_samples"],
                                             generator=generator, device=self.device)
            with (self.run_dir / "evaluation.jsonl").open("a", encoding="utf-8") as fh:
                fh.writelines(json.dumps({"step": self.step, **row}, default=str) + "\n" for row in rows)
            self.manager.hook.polydiff_evaluate(trainer=self, step=self.step, rows=rows)
        distributed.barrier(self.dist)
        return rows

    def fit(self) -> TrainResult:
        """Train to ``[training] steps`` (or until stopped); see the module docstring."""
        resumed = self.step > 0
        self._write_run_start(resumed)
        logger = _Logger(self.run_dir, enabled=self.dist.is_main, progress=self.cfg["progress"],
                         total=self.cfg["steps"], initial=self.step)
        logger.truncate_after(self.step)
        losses: list[float] = []
        status = "failed"
        try:
            self.manager.hook.polydiff_train_start(trainer=self)
            status = self._loop(logger, losses)
        except BaseException as exc:
            status = f"failed: {type(exc).__name__}: {exc}"
            self._finish(status, logger)
            raise
        self._finish(status, logger)
        final = losses[-1] if losses else float("nan")
        return TrainResult(run_dir=self.run_dir, steps=self.step, status=status, final_loss=final, losses=losses)

    def _finish(self, status: str, logger: _Logger) -> None:
        logger.close()
        self._write_run_end(status)
        self.manager.hook.polydiff_train_end(trainer=self, status=status)

    def _loop(self, logger: _Logger, losses: list[float]) -> str:
        c = self.cfg
        self.model.train()
        window: dict[str, float] = {}
        count, tic = 0, time.perf_counter()
        evaluated = saved = -1
        while self.step < c["steps"]:
            metrics, local_loss = self._train_step()
            losses.append(local_loss)
            logger.tick()
            for key, value in metrics.items():
                window[key] = window.get(key, 0.0) + value
            count += 1
            if self.step % c["log_every"] == 0 or self.step == c["steps"]:
                elapsed = time.perf_counter() - tic
                record = {"step": self.step, **{k: v / count for k, v in window.items()}, "lr": metrics["lr"],
                          "steps_per_s": count / elapsed if elapsed > 0 else float("nan")}
                logger.log(record)
                window, count, tic = {}, 0, time.perf_counter()
            self.manager.hook.polydiff_train_step_end(trainer=self, step=self.step, metrics=metrics)
            if c["eval_every"] > 0 and self.step % c["eval_every"] == 0:
                self.evaluate()
                evaluated = self.step
            if c["checkpoint_every"] > 0 and self.step % c["checkpoint_every"] == 0:
                self.save()
                saved = self.step
            if self._should_stop():
                break
        if saved != self.step:
            self.save()
        if evaluated != self.step:
            self.evaluate()
        return f"stopped: {self._stop_reason}" if self._stop_reason is not None else "completed"


def default_run_dir(config: dict[str, Any]) -> Path:
    """``run_root / "<name>-YYYYmmdd-HHMMSS"``."""
    exp = config["experiment"]
    return Path(exp["run_root"]) / f"{exp['name']}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(config: dict[str, Any], *, run_dir: Path | None = None, manager: Any = None, resume: bool = False,
          device: str | None = None) -> TrainResult:
    """Build the experiment of ``config`` and train it.

    Args:
        config: a config mapping (validated here, so a raw one works too).
        run_dir: default ``run_root/<name>-<timestamp>`` (chosen by rank 0 under torchrun).
        manager: the plugin manager (default: a fresh one).
        resume: continue ``run_dir`` from its latest checkpoint; ``run_dir`` is required.
        device: overrides ``[experiment] device``.

    Raises:
        CheckpointError: ``resume`` without a run folder holding a checkpoint.
    """
    from polydiff.experiment import build_experiment

    config = revalidate(config)
    info = distributed.init(resolve_device(device or config["experiment"]["device"]).type)
    if resume:
        if run_dir is None or latest_checkpoint(run_dir) is None:
            raise CheckpointError(f"cannot resume: {run_dir if run_dir is not None else 'no run folder given'} "
                                  f"holds no checkpoint (checkpoints/step_*/meta.json); pass the run folder of "
                                  f"a run that saved one, or train without resume")
    run_dir = Path(run_dir) if run_dir is not None else distributed.broadcast_object(default_run_dir(config), info)
    experiment = build_experiment(config, manager)
    return Trainer(experiment, run_dir, resume=resume, device=device).fit()
