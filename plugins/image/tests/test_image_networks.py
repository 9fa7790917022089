"""The image plugin's U-Net and DiT: shapes, conditioning, gradients, fitting, errors, and the core."""
from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff import Bounded, Continuous, Discrete
from polydiff_image.networks import DiT, UNet, denoiser_specs, sincos_positions_2d
from polydiff_image.networks import AttentionBlock

TINY = {
    "unet": lambda s, c=None, **kw: UNet(s, c, **{"channels": 8, "channel_mults": [1, 2], "blocks_per_level": 1,
                                                   "groups": 4, "head_channels": 8, "embed_dim": 4, **kw}),
    "dit": lambda s, c=None, **kw: DiT(s, c, **{"patch": 2, "width": 16, "depth": 2, "heads": 2, "embed_dim": 4,
                                                 **kw}),
}
NETS = sorted(TINY)
LABEL = Discrete((1,), 3)


def _batch(space, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    if space.kind == "discrete":
        return torch.randint(0, space.vocab_size + 1, (n, *space.shape), generator=g)
    return torch.randn(n, *space.shape, generator=g)


def _perturb(net, seed=0):
    """Move every parameter off its (often zero) initial value so that every path carries gradient."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def _expected(space, n):
    tail = (space.vocab_size,) if space.kind == "discrete" else ()
    return (n, *space.shape, *tail)


SPACES = [Continuous((1, 8, 8)), Continuous((3, 16, 16)), Discrete((1, 8, 8), 17), Bounded((1, 8, 8), 0.0, 1.0)]


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("space", SPACES, ids=str)
@pytest.mark.parametrize("conditioning", ["none", "label", "degraded", "both"])
def test_output_shape_with_and_without_conditioning(name, space, conditioning):
    cond_spaces = {}
    if conditioning in ("label", "both"):
        cond_spaces["label"] = LABEL
    if conditioning in ("degraded", "both"):
        cond_spaces["degraded"] = space
    net = TINY[name]({"image": space}, cond_spaces)
    x, t = {"image": _batch(space)}, torch.rand(3)
    cond = {"label": torch.tensor([[0], [2], [3]])} if "label" in cond_spaces else {}
    if "degraded" in cond_spaces:
        cond["degraded"] = _batch(space, seed=1)
    for c in (cond or None, None, {}):
        out = net(x, t, c)
        assert set(out) == {"image"} and out["image"].shape == _expected(space, 3)
        assert torch.isfinite(out["image"]).all()


@pytest.mark.parametrize("name", NETS)
def test_missing_cond_is_the_null_label_and_zero_degraded_image(name):
    space = Continuous((1, 8, 8))
    net = TINY[name]({"image": space}, {"label": LABEL, "degraded": space})
    _perturb(net)
    x, t = {"image": _batch(space)}, torch.rand(3)
    null = {"label": torch.full((3, 1), LABEL.vocab_size), "degraded": torch.zeros(3, *space.shape)}
    torch.testing.assert_close(net(x, t, None)["image"], net(x, t, null)["image"], rtol=0, atol=0)
    torch.testing.assert_close(net(x, t, {"label": null["label"]})["image"], net(x, t, null)["image"], rtol=0, atol=0)
    other = {"label": torch.zeros(3, 1, dtype=torch.long), "degraded": torch.randn(3, *space.shape)}
    assert (net(x, t, other)["image"] - net(x, t, null)["image"]).abs().max() > 1e-4


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("space", [Continuous((1, 8, 8)), Discrete((1, 8, 8), 17)], ids=str)
def test_gradients_reach_every_parameter(name, space):
    """After perturbing the zero-initialised layers, one backward reaches every parameter
    (none is documented as unused)."""
    net = TINY[name]({"image": space}, {"label": LABEL, "degraded": space})
    _perturb(net)
    x = {"image": _batch(space)}
    cond = {"label": torch.tensor([[0], [1], [2]]), "degraded": _batch(space, seed=1)}
    net(x, torch.rand(3), cond)["image"].square().sum().backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert dead == []


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("space", [Continuous((3, 16, 16)), Discrete((1, 8, 8), 17)], ids=str)
def test_zero_initialised_output(name, space):
    net = TINY[name]({"image": space}, {"label": LABEL})
    out = net({"image": _batch(space)}, torch.rand(3), None)["image"]
    assert out.abs().max() == 0


@pytest.mark.parametrize("name", NETS)
def test_fits_a_fixed_batch(name):
    """150 Adam steps of x0-regression from x_t = 0.7 x0 + 0.7 eps at fixed t on 8 images
    bring the MSE (mean of the last 10 steps) below 1/20 of its initial value (about 1, the
    data variance; the zero-initialised output predicts 0). Measured: ~1e-4 (unet) and
    ~5e-3 (dit) of the initial value, so the factor 20 leaves a wide margin."""
    torch.manual_seed(0)
    space = Continuous((1, 8, 8))
    net = TINY[name]({"image": space})
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(8, *space.shape, generator=g)
    x_t = {"image": 0.7 * x0 + 0.7 * torch.randn(8, *space.shape, generator=g)}
    t = torch.full((8,), 0.5)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = (net(x_t, t)["image"] - x0).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < losses[0] / 20


def test_attention_resolutions_place_attention_blocks():
    space = Continuous((1, 16, 16))

    def count(net):
        return sum(isinstance(m, AttentionBlock) for m in net.modules())

    base = dict(channels=8, channel_mults=[1, 2, 2], blocks_per_level=2, groups=4, head_channels=8)
    middle_only = count(UNet({"image": space}, attention_resolutions=[], **base))
    at_8 = count(UNet({"image": space}, attention_resolutions=[8], **base))
    default = count(UNet({"image": space}, **base))
    assert middle_only == 1
    assert at_8 == 1 + 2 + 3  # middle, two encoder blocks and three decoder blocks at 8 x 8
    assert default == 1 + 2 + 3  # default: the lowest resolution, 4 x 4


def test_unet_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"field shape \(1, 10, 10\).*2\^\(levels - 1\) = 4.*fewer levels"):
        UNet({"image": Continuous((1, 10, 10))}, channels=8, groups=4, channel_mults=[1, 2, 2])
    with pytest.raises(ValueError, match=r"groups=3 must divide.*widths \[8, 16\]"):
        UNet({"image": Continuous((1, 8, 8))}, channels=8, groups=3, channel_mults=[1, 2])
    with pytest.raises(ValueError, match=r"exactly one diffused image field"):
        TINY["unet"]({"a": Continuous((1, 8, 8)), "b": Continuous((1, 8, 8))})
    with pytest.raises(ValueError, match=r"field 'image' is Continuous.*\(C, H, W\)"):
        TINY["unet"]({"image": Continuous((64,))})
    with pytest.raises(ValueError, match=r"conditioning field 'extra'"):
        TINY["unet"]({"image": Continuous((1, 8, 8))}, {"extra": Continuous((5,))})
    net = TINY["unet"]({"image": Continuous((1, 8, 8))})
    with pytest.raises(ValueError, match=r"shape \(1, 16, 16\).*built for \(1, 8, 8\)"):
        net({"image": torch.zeros(2, 1, 16, 16)}, torch.rand(2))


def test_dit_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"patch=3 must divide.*\(1, 8, 8\)"):
        TINY["dit"]({"image": Continuous((1, 8, 8))}, patch=3)
    with pytest.raises(ValueError, match=r"width=16 must be divisible by heads=3"):
        TINY["dit"]({"image": Continuous((1, 8, 8))}, heads=3)
    with pytest.raises(ValueError, match=r"positions 'fixed'"):
        TINY["dit"]({"image": Continuous((1, 8, 8))}, positions="fixed")


def test_sinusoidal_positions_are_distinct_and_bounded():
    pos = sincos_positions_2d(4, 4, 16)
    assert pos.shape == (16, 16) and pos.abs().max() <= 1
    assert torch.cdist(pos, pos).add(torch.eye(16)).min() > 1e-3
    out = TINY["dit"]({"image": Continuous((1, 8, 8))}, positions="sinusoidal")(
        {"image": torch.randn(2, 1, 8, 8)}, torch.rand(2))
    assert out["image"].shape == (2, 1, 8, 8)


def test_parameter_count_is_printed_once(capsys):
    net = TINY["unet"]({"image": Continuous((1, 8, 8))})
    err = capsys.readouterr().err.strip().splitlines()
    count = sum(p.numel() for p in net.parameters())
    assert err == [f"unet: {count / 1e6:.2f} M parameters"]


def test_specs():
    specs = {s.name: s for s in denoiser_specs()}
    assert set(specs) == {"unet", "dit"}
    for spec in specs.values():
        assert spec.spaces == {"continuous", "bounded", "discrete"} and spec.modalities == {"image"}
        assert spec.conditional and spec.problems() == []


# ----------------------------------------------------------------------------- through the core


class _Items(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return next(iter(self.items.values())).shape[0]

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.items.items()}


class FakeImageModality:
    """Random 8 x 8 single-channel images in the space a test asks for, optionally with a
    label and a paired degraded image."""

    name = "image"

    def __init__(self, kind: str = "continuous", label: bool = False, degraded: bool = False) -> None:
        shape = (1, 8, 8)
        space = {"continuous": Continuous(shape), "bounded": Bounded(shape, 0.0, 1.0),
                 "discrete": Discrete(shape, 5)}[kind]
        self.spaces = {"image": space}
        self.cond_spaces = {}
        if label:
            self.cond_spaces["label"] = Discrete((1,), 3)
        if degraded:
            self.cond_spaces["degraded"] = space
            self.pairs = {"image": "degraded"}

    def batch(self, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        out = {}
        for name, space in {**self.spaces, **self.cond_spaces}.items():
            if space.kind == "discrete":
                out[name] = torch.randint(0, space.vocab_size, (n, *space.shape), generator=g)
            elif space.kind == "bounded":
                out[name] = torch.rand(n, *space.shape, generator=g)
            else:
                out[name] = torch.randn(n, *space.shape, generator=g)
        return out

    def dataset(self, split):
        return _Items(self.batch(16, seed=0 if split == "train" else 1))

    def decode(self, state):
        return state

    def encode(self, decoded):
        return decoded

    def write_artefacts(self, samples, out_dir):
        return []


class FakeImagePlugin:
    @polydiff.hookimpl
    def polydiff_modalities(self):
        yield polydiff.ModalitySpec(name="image", summary="random test images", factory=FakeImageModality)

    @polydiff.hookimpl
    def polydiff_denoisers(self):
        yield from denoiser_specs()


FAMILIES = {
    "gaussian": ("continuous", {"name": "gaussian"}, "heun", False),
    "reflected": ("bounded", {"name": "reflected"}, "reflected_ode", False),
    "masked": ("discrete", {"name": "masked"}, "masked", False),
    "bridge": ("continuous", {"name": "bridge"}, "bridge_sde", True),
}
DENOISERS = {"unet": {"channels": 8, "channel_mults": [1, 2], "blocks_per_level": 1, "groups": 4, "head_channels": 8},
             "dit": {"patch": 2, "width": 16, "depth": 1, "heads": 2}}


@pytest.mark.parametrize("denoiser", sorted(DENOISERS))
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_through_the_core(family, denoiser):
    kind, corruption, sampler, paired = FAMILIES[family]
    manager = polydiff.make_plugin_manager(autoload=False, extra_plugins={"fakeimage": FakeImagePlugin()})
    cfg = polydiff.config_from_dict({
        "modality": {"name": "image", "kind": kind, "label": not paired, "degraded": paired},
        "corruption": corruption, "denoiser": {"name": denoiser, **DENOISERS[denoiser]},
        "sampling": {"sampler": sampler}})
    exp = polydiff.build_experiment(cfg, manager)
    batch = exp.modality.batch(4)
    loss, _ = exp.loss(exp.denoiser, batch, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in exp.denoiser.parameters())
    cond = {"degraded": batch["degraded"]} if paired else None
    out = exp.sample(exp.denoiser, 4, steps=2, generator=torch.Generator().manual_seed(0), cond=cond)
    assert out.state["image"].shape == (4, 1, 8, 8)
    assert torch.isfinite(out.state["image"].float()).all()
