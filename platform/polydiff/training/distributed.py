"""Data-parallel training under ``torchrun``: process group, DDP wrapper, data sharding.

``torchrun --nproc_per_node=N`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; when
``WORLD_SIZE > 1`` the trainer joins a process group (``gloo`` on CPU, ``nccl`` on CUDA),
wraps the network in ``DistributedDataParallel`` and shards each epoch with a
``DistributedSampler``. A single process (no torchrun) uses the same code path with
``world_size = 1``, so the data order of a one-process run is a pure function of the seed.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 writes files).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes files and prints."""
        return self.rank == 0


def from_environment() -> DistInfo:
    """Read ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` as set by torchrun (defaults 0 / 1 / 0)."""
    env = os.environ
    return DistInfo(rank=int(env.get("RANK", 0)), world_size=int(env.get("WORLD_SIZE", 1)),
                    local_rank=int(env.get("LOCAL_RANK", 0)))


def init(device_type: str) -> DistInfo:
    """Join the torchrun process group if there is one (idempotent).

    Args:
        device_type: ``"cuda"`` selects NCCL and pins this process to ``cuda:LOCAL_RANK``;
            anything else selects gloo.
    """
    info = from_environment()
    if not info.enabled:
        return info
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=info.local_rank)


def wrap(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else ``model`` itself."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else info.local_rank] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Average a tensor over ranks (returns ``values`` unchanged for one process)."""
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values = values / info.world_size
    return values


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one rank."""
    if not info.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` for one process)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for one process)."""
    if info.enabled:
        dist.barrier()


class ResumableSampler(DistributedSampler):
    """A ``DistributedSampler`` that can start mid-epoch, for exact resume.

    The epoch's order is ``DistributedSampler``'s (a permutation seeded by ``seed + epoch``,
    sharded by rank); ``start`` skips the first indices of this rank's shard, once.
    """

    def __init__(self, dataset: Dataset, info: DistInfo, *, seed: int) -> None:
        super().__init__(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed,
                         drop_last=True)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())[self.start:]
        self.start = 0
        return iter(indices)

    def __len__(self) -> int:
        return self.num_samples - self.start
