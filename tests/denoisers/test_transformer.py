"""The generic transformer denoiser: tokenisation, shapes, conditioning, learning, registration."""
from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff.denoisers.transformer import TransformerDenoiser, token_layout
from polydiff.spaces import Continuous, Discrete

SPACES = {"vec": Continuous((3,)), "seq": Continuous((5, 2)), "img": Continuous((2, 3, 4)),
          "tok": Discrete((6,), 7)}


def test_token_layout():
    assert token_layout(Continuous((3,))) == (3, 1)
    assert token_layout(Continuous((5, 2))) == (5, 2)
    assert token_layout(Continuous((2, 3, 4))) == (6, 4)
    assert token_layout(Discrete((2, 3), 9)) == (6, 1)


def _batch(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    out = {f: torch.randn(n, *s.shape, generator=g) for f, s in SPACES.items() if s.kind != "discrete"}
    out["tok"] = torch.randint(8, (n, 6), generator=g)  # ids 0..7: the vocabulary plus the mask id
    return out


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_output_shape_per_field(positions):
    g = torch.Generator().manual_seed(0)
    net = TransformerDenoiser(SPACES, {}, width=32, depth=2, heads=4, positions=positions)
    out = net(_batch(4, g), torch.rand(4, generator=g))
    assert {f: tuple(v.shape) for f, v in out.items()} == {
        "vec": (4, 3), "seq": (4, 5, 2), "img": (4, 2, 3, 4), "tok": (4, 6, 7)}


def test_conditioning_label_and_prefix_tokens_change_the_output():
    torch.manual_seed(0)
    cond_spaces = {"label": Discrete((1,), 3), "context": Continuous((4, 2)), "prompt": Discrete((5,), 11)}
    net = TransformerDenoiser({"x": Continuous((2,))}, cond_spaces, width=32, depth=2, heads=2)
    for p in net.parameters():            # leave adaLN-Zero's all-zero start so outputs depend on inputs
        torch.nn.init.normal_(p, std=0.2)
    x, t = {"x": torch.randn(3, 2)}, torch.rand(3)
    cond = {"label": torch.tensor([[0], [1], [2]]), "context": torch.randn(3, 4, 2),
            "prompt": torch.randint(11, (3, 5))}
    null = {"label": torch.full((3, 1), 3), "context": torch.zeros(3, 4, 2), "prompt": torch.full((3, 5), 11)}
    with_cond, without = net(x, t, cond)["x"], net(x, t, None)["x"]
    assert not torch.allclose(with_cond, without)
    assert torch.allclose(net(x, t, null)["x"], without, atol=1e-6), "dropped cond must equal cond=None"


def test_zero_init_output_and_samples_are_independent():
    net = TransformerDenoiser({"x": Continuous((4, 2))}, {}, width=32, depth=2, heads=4)
    x, t = torch.randn(3, 4, 2), torch.rand(3)
    assert torch.count_nonzero(net({"x": x}, t)["x"]) == 0
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    full = net({"x": x}, t)["x"]
    assert torch.allclose(net({"x": x[1:2]}, t[1:2])["x"], full[1:2], atol=1e-5)


def test_tiny_overfit_lowers_the_loss():
    torch.manual_seed(0)
    spaces = {"x": Continuous((4, 2))}
    net = TransformerDenoiser(spaces, {}, width=32, depth=2, heads=4)
    process = polydiff.GaussianCorruption(spaces["x"], polydiff.VPCosine(), parametrization="eps")
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(64, 4, 2, generator=g).cumsum(1)  # correlated along the sequence: learnable structure
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)

    def loss_at(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        t = process.sample_t(64, generator=gen)
        corrupted = process.corrupt(x0, t, generator=gen)
        return process.loss(net({"x": corrupted.x_t}, t)["x"], x0, corrupted).mean()

    with torch.no_grad():
        before = sum(loss_at(1000 + i) for i in range(4)) / 4
    for step in range(50):
        opt.zero_grad()
        loss_at(step).backward()
        opt.step()
    with torch.no_grad():
        after = sum(loss_at(1000 + i) for i in range(4)) / 4
    assert after < 0.8 * before, (float(before), float(after))


def test_registered_and_buildable_from_a_config():
    config = polydiff.config_from_dict({
        "modality": {"name": "toy", "dataset": "gmm8", "n_train": 64, "n_validation": 16, "conditional": True},
        "corruption": {"name": "gaussian", "schedule": "vp-cosine"},
        "denoiser": {"name": "transformer", "width": 32, "depth": 1, "heads": 2},
    })
    experiment = polydiff.build_experiment(config, polydiff.make_plugin_manager(autoload=False))
    batch = torch.utils.data.default_collate([experiment.modality.dataset("train")[i] for i in range(8)])
    loss, parts = experiment.loss(experiment.denoiser, batch, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and set(parts) == {"loss/x"}
    loss.backward()
