"""Exponential moving average of model weights (Polyak averaging).

``ema <- decay_k * ema + (1 - decay_k) * theta`` after every optimizer step, with the
warm-up ``decay_k = min(decay, (1 + k) / (10 + k))`` for the k-th update (k = 1, 2, ...;
the form used by TensorFlow's ``ExponentialMovingAverage(num_updates=...)``), so that a
short run's EMA is not dominated by the random initialisation. Buffers (e.g. batch-norm
statistics) are copied, not averaged.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(decay: float, updates: int) -> float:
    """The decay used for the ``updates``-th update (1-based): ``min(decay, (1 + k) / (10 + k))``."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class EMA:
    """Holds ``model``, a frozen copy of a network whose parameters track the EMA.

    Args:
        network: the trained module; its current weights initialise the average.
        decay: the asymptotic decay in ``[0, 1)``; 0 copies the weights every step.

    Attributes:
        model: the averaged ``nn.Module`` (eval mode, ``requires_grad`` off).
        updates: how many updates were applied (restored from checkpoints as the step).
    """

    def __init__(self, network: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay {decay} must be in [0, 1)")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(network).eval()
        self.model.requires_grad_(False)
        self._source: nn.Module | None = None
        self._pairs: tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]] = ([], [], [])

    def _tensors(self, network: nn.Module):
        """The (EMA, network) parameter lists and buffer pairs; collected once per network,
        since walking the module tree costs more than the update itself on small models."""
        if network is not self._source:
            ema_params = list(self.model.parameters())
            params = [p.detach() for p in network.parameters()]
            if len(ema_params) != len(params):
                raise ValueError(f"EMA holds {len(ema_params)} parameters but the network has {len(params)}")
            self._pairs = (ema_params, params, list(zip(self.model.buffers(), network.buffers())))
            self._source = network
        return self._pairs

    @torch.no_grad()
    def update(self, network: nn.Module) -> float:
        """Move the average towards ``network``'s parameters; return the decay used."""
        self.updates += 1
        decay = ema_decay_at(self.decay, self.updates)
        ema_params, params, buffers = self._tensors(network)
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for ema_buf, buf in buffers:
            ema_buf.copy_(buf)
        return decay
