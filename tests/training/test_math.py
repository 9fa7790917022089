"""EMA arithmetic, the learning-rate shape and gradient-accumulation equivalence."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from polydiff.experiment import build_experiment
from polydiff.training import Trainer
from polydiff.training.ema import EMA, ema_decay_at
from polydiff.training.lr import lr_factor


def test_ema_update_follows_the_decay():
    net = nn.Linear(3, 2)
    ema = EMA(net, decay=0.9)
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    assert ema.update(net) == pytest.approx(2 / 11)  # warm-up: (1 + 1) / (10 + 1)
    torch.testing.assert_close(ema.model.weight, (2 / 11) * start + (9 / 11) * net.weight)
    ema.updates = 1000
    before = ema.model.weight.detach().clone()
    assert ema.update(net) == pytest.approx(0.9)
    torch.testing.assert_close(ema.model.weight, 0.9 * before + 0.1 * net.weight)
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_ema_decay_zero_copies_weights():
    net = nn.Linear(2, 2)
    ema = EMA(net, decay=0.0)
    with torch.no_grad():
        net.weight.mul_(3.0)
    ema.update(net)
    assert torch.equal(ema.model.weight, net.weight)
    assert ema_decay_at(0.999, 90) == pytest.approx(91 / 100)


def test_lr_warmup_then_cosine_to_floor():
    f = [lr_factor(s, total_steps=100, warmup_steps=10, min_lr_ratio=0.2) for s in range(1, 101)]
    assert f[:10] == pytest.approx([s / 10 for s in range(1, 11)])
    assert all(b <= a for a, b in zip(f[9:], f[10:]))  # non-increasing after warm-up
    assert f[-1] == pytest.approx(0.2)
    assert f[9 + 45] == pytest.approx(0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # half way
    const = [lr_factor(s, total_steps=100, warmup_steps=5, schedule="constant") for s in range(1, 101)]
    assert const[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0]) and set(const[5:]) == {1.0}
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_factor(1, total_steps=10, schedule="linear")


def _deterministic_loss(model, batch, *, generator=None):
    """Regression at a fixed t: no randomness, so micro-batch splits see the same objective."""
    x = batch["x"]
    t = torch.full((x.shape[0],), 0.5)
    out = model({"x": x}, t, None)["x"]
    loss = ((out - x) ** 2).mean()
    return loss, {"loss/x": loss.detach()}


def _train_weights(tp, tmp_path, name, **training):
    manager = tp.make_manager()
    cfg = tp.tiny_config(tmp_path, manager, steps=6, checkpoint_every=0, grad_clip=0.5, **training)
    exp = build_experiment(cfg, manager)
    exp.loss = _deterministic_loss
    trainer = Trainer(exp, tmp_path / name)
    result = trainer.fit()
    return result, trainer.model.state_dict()


def test_accumulation_matches_a_larger_batch(tp, tmp_path):
    r1, big = _train_weights(tp, tmp_path, "big", batch_size=32, accumulate=1)
    r2, acc = _train_weights(tp, tmp_path, "acc", batch_size=16, accumulate=2)
    assert r1.losses == pytest.approx(r2.losses, rel=1e-5)
    for name, value in big.items():
        torch.testing.assert_close(acc[name], value, rtol=1e-5, atol=1e-6)
    _, other = _train_weights(tp, tmp_path, "other", batch_size=16, accumulate=1)
    assert any(not torch.allclose(other[n], v, atol=1e-6) for n, v in big.items())  # the test can fail
