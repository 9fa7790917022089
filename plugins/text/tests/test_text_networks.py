"""The text networks: shapes, causality, cached decoding, rotary positions, time conditioning,
and that a few optimiser steps on a toy problem lower the loss.

DiT blocks start as the identity (adaLN-Zero) and the heads at zero, so a fresh network's
output ignores its input; the tests that look at dependencies first scramble the weights.
"""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import polydiff
from polydiff_text.networks import Rotary, TextCausal, TextTransformer, denoiser_specs

L, V, D = 12, 7, 6
TOKENS = {"tokens": polydiff.Discrete((L,), V)}
VECTORS = {"tokens": polydiff.Continuous((L, D))}
SMALL = {"width": 32, "depth": 2, "heads": 2}


def scrambled(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The network with every parameter redrawn from N(0, 0.3^2), in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return net.eval()


def ids(n: int, seed: int = 1, length: int = L) -> torch.Tensor:
    return torch.randint(V, (n, length), generator=torch.Generator().manual_seed(seed))


def test_specs_declare_the_two_networks():
    specs = {s.name: s for s in denoiser_specs()}
    assert set(specs) == {"text_transformer", "text_causal"}
    assert specs["text_causal"].causal and not specs["text_transformer"].causal
    assert specs["text_transformer"].conditional and not specs["text_causal"].conditional
    assert specs["text_transformer"].spaces == {"discrete", "continuous"}
    assert specs["text_causal"].spaces == {"discrete"}
    assert not specs["text_causal"].modalities and not specs["text_transformer"].modalities
    for spec in specs.values():
        net = spec.factory(TOKENS, None, **spec.kit_options)
        assert net.parameter_count == sum(p.numel() for p in net.parameters()) < 50_000


@pytest.mark.parametrize("factory", [TextTransformer, TextCausal])
def test_discrete_output_is_logits_per_position(factory, capsys):
    net = factory(TOKENS, **SMALL)
    assert f"{factory.__name__[:4].lower()}" in capsys.readouterr().err.lower()
    x = ids(3)
    x[0, :4] = V  # the mask / placeholder id is a valid input
    out = net({"tokens": x}, torch.rand(3))
    assert set(out) == {"tokens"} and out["tokens"].shape == (3, L, V)
    assert torch.count_nonzero(out["tokens"]) == 0  # zero-initialised head: uniform logits at first


def test_continuous_field_maps_vectors_to_vectors_and_trains():
    net = TextTransformer(VECTORS, **SMALL)
    x = torch.randn(4, L, D, requires_grad=True)
    out = net({"tokens": x}, torch.rand(4))["tokens"]
    assert out.shape == (4, L, D)
    (out - x.detach()).square().sum().backward()
    assert net.trunk.head.weight.grad is not None and net.trunk.head.weight.grad.abs().sum() > 0


def test_a_field_of_scalars_is_a_sequence_of_one_feature():
    net = scrambled(TextTransformer({"x": polydiff.Continuous((5,))}, **SMALL))
    assert net({"x": torch.randn(3, 5)}, torch.rand(3))["x"].shape == (3, 5)


def test_labels_and_per_position_fields_condition_the_bidirectional_network():
    cond_spaces = {"label": polydiff.Discrete((1,), 3), "source": polydiff.Continuous((L, 2))}
    net = scrambled(TextTransformer(TOKENS, cond_spaces, **SMALL))
    x, t = ids(2), torch.full((2,), 0.5)
    cond = {"label": torch.tensor([[0], [2]]), "source": torch.randn(2, L, 2)}
    null = {"label": torch.full((2, 1), 3), "source": torch.zeros(2, L, 2)}
    with torch.no_grad():
        given, dropped, absent = (net({"tokens": x}, t, c)["tokens"] for c in (cond, null, None))
        other_label = net({"tokens": x}, t, {**cond, "label": torch.tensor([[1], [1]])})["tokens"]
    assert torch.equal(dropped, absent)  # a missing field is the null value of classifier-free guidance
    assert not torch.allclose(given, absent, atol=1e-4) and not torch.allclose(given, other_label, atol=1e-4)
    with pytest.raises(ValueError, match="conditioning field 'prefix'"):
        TextTransformer(TOKENS, {"prefix": polydiff.Discrete((L + 1,), V)})


def test_other_fields_and_conditioning_are_refused():
    with pytest.raises(ValueError, match="exactly one"):
        TextTransformer({"a": polydiff.Discrete((4,), 3), "b": polydiff.Discrete((4,), 3)})
    with pytest.raises(ValueError, match="no conditioning"):
        TextCausal(TOKENS, {"label": polydiff.Discrete((1,), 3)})
    with pytest.raises(ValueError, match="Discrete"):
        TextCausal(VECTORS)
    with pytest.raises(ValueError, match="heads"):
        TextTransformer(TOKENS, width=30, heads=4)


def test_causal_output_at_i_ignores_inputs_at_i_and_later():
    causal = scrambled(TextCausal(TOKENS, **SMALL))
    bidirectional = scrambled(TextTransformer(TOKENS, **SMALL))
    x = ids(2)
    for i in (0, 5, L - 1):
        changed = x.clone()
        changed[:, i:] = (x[:, i:] + 1) % V
        with torch.no_grad():
            a, b = causal({"tokens": x})["tokens"], causal({"tokens": changed})["tokens"]
            c = bidirectional({"tokens": x}, torch.zeros(2))["tokens"]
            d = bidirectional({"tokens": changed}, torch.zeros(2))["tokens"]
        assert torch.allclose(a[:, :i + 1], b[:, :i + 1], atol=1e-6)
        if i < L - 1:
            assert not torch.allclose(a[:, i + 1:], b[:, i + 1:], atol=1e-4)
        assert not torch.allclose(c[:, :i + 1], d[:, :i + 1], atol=1e-4)  # the same check fails bidirectionally


def test_cached_decoding_equals_the_full_forward():
    net = scrambled(TextCausal(TOKENS, **SMALL), seed=3)
    x = ids(5, seed=4)
    with torch.no_grad():
        full = net({"tokens": x})["tokens"]
    decoder = net.decoder(5, None)
    steps = [decoder.step(None)] + [decoder.step(x[:, i - 1]) for i in range(1, L)]
    assert torch.allclose(torch.stack(steps, dim=1), full, atol=1e-5)
    with pytest.raises(ValueError, match="past the sequence length"):
        decoder.step(x[:, -1])
    with pytest.raises(ValueError, match="prev=None"):
        net.decoder(5).step(x[:, 0])


def test_rotary_scores_depend_only_on_relative_position():
    rotary = Rotary(8)
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(1, 1, 1, 8, generator=g), torch.randn(1, 1, 1, 8, generator=g)

    def score(m: int, n: int) -> float:
        return float((rotary(q, offset=m) * rotary(k, offset=n)).sum())

    assert score(3, 5) == pytest.approx(score(10, 12), abs=1e-5)
    assert score(0, 7) == pytest.approx(score(20, 27), abs=1e-5)
    assert abs(score(3, 5) - score(3, 8)) > 1e-3
    assert torch.allclose(rotary(q).norm(), q.norm())  # a rotation keeps norms
    sequence = torch.randn(1, 1, 6, 8, generator=g)
    assert torch.allclose(rotary(sequence, offset=2)[..., 1:2, :], rotary(sequence[..., 1:2, :], offset=3))


def test_the_bidirectional_network_knows_positions():
    net = scrambled(TextTransformer(TOKENS, **SMALL), seed=6)
    x = ids(1, seed=7)
    perm = torch.randperm(L, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        out = net({"tokens": x}, torch.zeros(1))["tokens"]
        permuted = net({"tokens": x[:, perm]}, torch.zeros(1))["tokens"]
    assert not torch.allclose(out[:, perm], permuted, atol=1e-4)  # attention alone would be permutation equivariant


def test_time_conditioning_off_ignores_t():
    x = ids(3)
    early, late = torch.full((3,), 0.1), torch.full((3,), 0.9)
    timeless = scrambled(TextTransformer(TOKENS, time_conditioning=False, **SMALL))
    timed = scrambled(TextTransformer(TOKENS, **SMALL))
    with torch.no_grad():
        assert torch.equal(timeless({"tokens": x}, early)["tokens"], timeless({"tokens": x}, late)["tokens"])
        assert not torch.allclose(timed({"tokens": x}, early)["tokens"], timed({"tokens": x}, late)["tokens"])
    assert not hasattr(timeless, "time")


def counting(n: int, seed: int) -> torch.Tensor:
    """Toy sequences ``x_i = (x_0 + i) mod V`` with a random start."""
    start = torch.randint(V, (n, 1), generator=torch.Generator().manual_seed(seed))
    return (start + torch.arange(L)) % V


def train(net: torch.nn.Module, loss_fn, steps: int = 60) -> tuple[float, float]:
    """Adam on ``loss_fn(net, batch)`` for ``steps`` steps; (first loss, mean of the last five)."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for step in range(steps):
        loss = loss_fn(net, counting(32, step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses[0], sum(losses[-5:]) / 5


def test_a_tiny_training_run_lowers_the_loss():
    def next_token(net, x):
        return F.cross_entropy(net({"tokens": x})["tokens"].reshape(-1, V), x.reshape(-1))

    def unmask(net, x):
        g = torch.Generator().manual_seed(int(x[0, 0]))
        masked = torch.rand(x.shape, generator=g) < 0.5
        logits = net({"tokens": torch.where(masked, V, x)}, torch.full((x.shape[0],), 0.5))["tokens"]
        return F.cross_entropy(logits[masked], x[masked])

    first, last = train(TextCausal(TOKENS, **SMALL), next_token)
    assert last < 0.5 * first, (first, last)
    first, last = train(TextTransformer(TOKENS, **SMALL), unmask)
    assert last < 0.5 * first, (first, last)
