"""The ``tabular_mlp`` denoiser: output shapes per field, the mask id as input, the core's
``toy-mixed`` fields, label conditioning (null id == dropped == absent) and that a few
optimiser steps with the core's composite process (Gaussian + masked) lower the loss."""
from __future__ import annotations

import pytest
import torch

import polydiff
from polydiff_tabular.networks import TabularMLP, denoiser_specs

ROW = {"num": polydiff.Continuous((3,)), "c_island": polydiff.Discrete((1,), 3),
       "c_sex": polydiff.Discrete((1,), 2), "m_bill": polydiff.Discrete((1,), 2)}
SMALL = {"hidden": [32, 32], "time_dim": 16, "embed_dim": 4}


def batch(spaces: dict[str, polydiff.Space], n: int, seed: int = 0, *, masked: bool = False) -> dict[str, torch.Tensor]:
    """Random inputs of every field; with ``masked`` the discrete ids include the mask id K."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, space in spaces.items():
        if space.kind == "discrete":
            out[name] = torch.randint(space.vocab_size + int(masked), (n, *space.shape), generator=g)
        else:
            out[name] = torch.rand((n, *space.shape), generator=g)
    return out


def test_the_spec_declares_mixed_fields_and_guidance():
    (spec,) = denoiser_specs()
    assert spec.name == "tabular_mlp" and spec.conditional and not spec.causal
    assert spec.spaces == {"continuous", "bounded", "discrete"} and not spec.modalities
    net = spec.factory(ROW, None, **spec.kit_options)
    assert net.parameter_count == sum(p.numel() for p in net.parameters()) < 50_000


def test_outputs_a_vector_and_logits_per_field(capsys):
    net = TabularMLP(ROW, **SMALL)
    assert f"tabular_mlp: {net.parameter_count / 1e6:.2f} M parameters" in capsys.readouterr().err
    out = net(batch(ROW, 5, masked=True), torch.rand(5))
    assert set(out) == set(ROW)
    assert out["num"].shape == (5, 3)
    assert out["c_island"].shape == (5, 1, 3) and out["c_sex"].shape == (5, 1, 2) and out["m_bill"].shape == (5, 1, 2)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_every_field_and_the_time_reach_every_output():
    net = TabularMLP(ROW, **SMALL).eval()
    x, t = batch(ROW, 4), torch.full((4,), 0.3)
    base = net(x, t)
    for name in ROW:
        changed = dict(x)
        changed[name] = (x[name] + 1) % ROW[name].vocab_size if ROW[name].kind == "discrete" else x[name] + 1.0
        out = net(changed, t)
        assert all(not torch.allclose(out[f], base[f]) for f in ROW), f"changing {name!r} leaves an output unchanged"
    later = net(x, torch.full((4,), 0.9))
    assert all(not torch.allclose(later[f], base[f]) for f in ROW)


def test_a_bounded_numeric_field_and_the_core_toy_mixed_fields():
    bounded = {"num": polydiff.Bounded((2,), 0.0, 1.0), "c_a": polydiff.Discrete((1,), 4)}
    out = TabularMLP(bounded, **SMALL)(batch(bounded, 3), torch.rand(3))
    assert out["num"].shape == (3, 2) and out["c_a"].shape == (3, 1, 4)
    toy_mixed = polydiff.make_plugin_manager(autoload=False).registry.get("modality", "toy-mixed").factory(
        n_train=64, n_validation=16)
    items = toy_mixed.dataset("train")
    x = {f: torch.stack([items[i][f] for i in range(6)]) for f in toy_mixed.spaces}
    out = TabularMLP(toy_mixed.spaces, **SMALL)(x, torch.rand(6))
    assert out["x"].shape == (6, 2) and out["label"].shape == (6, 1, toy_mixed.spaces["label"].vocab_size)


def test_token_sequences_get_logits_per_position():
    tokens = {"tokens": polydiff.Discrete((4,), 5)}
    out = TabularMLP(tokens, **SMALL)(batch(tokens, 2, masked=True), torch.rand(2))
    assert out["tokens"].shape == (2, 4, 5)


def test_labels_condition_the_output_and_the_null_id_equals_dropping_them():
    cond_spaces = {"c_species": polydiff.Discrete((1,), 3)}
    net = TabularMLP(ROW, cond_spaces, **SMALL).eval()
    x, t = batch(ROW, 2), torch.full((2,), 0.5)
    with torch.no_grad():
        first = net(x, t, {"c_species": torch.tensor([[0], [0]])})
        second = net(x, t, {"c_species": torch.tensor([[2], [2]])})
        null = net(x, t, {"c_species": torch.full((2, 1), 3)})
        absent, none = net(x, t, {}), net(x, t, None)
    for name in ROW:
        assert not torch.allclose(first[name], second[name]), f"the label does not change field {name!r}"
        assert not torch.allclose(first[name], null[name])
        assert torch.equal(null[name], absent[name]) and torch.equal(null[name], none[name])


def test_rejects_what_it_cannot_take():
    with pytest.raises(ValueError, match="hidden"):
        TabularMLP(ROW, hidden=[])
    with pytest.raises(ValueError, match="c_big"):
        TabularMLP(ROW, {"c_big": polydiff.Discrete((3,), 4)}, **SMALL)
    net = TabularMLP(ROW, **SMALL)
    x = batch(ROW, 2)
    x["num"] = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="'num'.*\\(4,\\)"):
        net(x, torch.rand(2))


class _Networks:
    """Registers the denoiser in-process, so the test runs before the plugin is installed."""

    @staticmethod
    @polydiff.hookimpl
    def polydiff_denoisers():
        yield from denoiser_specs()


def test_a_few_steps_on_toy_mixed_lower_the_composite_loss():
    manager = polydiff.make_plugin_manager(autoload=False, extra_plugins={"tabular-networks": _Networks})
    config = polydiff.config_from_dict({
        "experiment": {"name": "tabular-mlp-toy-mixed", "seed": 0, "device": "cpu"},
        "modality": {"name": "toy-mixed", "n_train": 2048, "n_validation": 512},
        "corruption": {"name": "gaussian", "schedule": "vp-cosine", "fields": {"label": {"name": "masked"}}},
        "denoiser": {"name": "tabular_mlp", "hidden": [64, 64], "time_dim": 32},
        "training": {"steps": 1, "batch_size": 256},
        "sampling": {"sampler": "ancestral"},
    }, source="test_tabular_networks")
    exp = polydiff.build_experiment(config, manager)
    train, held_out = exp.modality.dataset("train"), exp.modality.reference(512, torch.Generator().manual_seed(5))

    def held_out_loss() -> float:
        with torch.no_grad():
            return float(exp.loss(exp.denoiser, held_out, generator=torch.Generator().manual_seed(9))[0])

    before = held_out_loss()
    optimiser = torch.optim.Adam(exp.denoiser.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(150):
        rows = torch.randint(len(train), (256,), generator=g)
        loss = exp.loss(exp.denoiser, {"x": train.fields["x"][rows], "label": train.fields["label"][rows]}, generator=g)[0]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = held_out_loss()
    assert after < 0.8 * before, f"held-out loss {before:.4f} -> {after:.4f}"


def test_a_few_steps_on_penguins_conditioned_on_species_lower_the_tabddpm_loss():
    manager = polydiff.make_plugin_manager(load_only=["tabular"])
    config = polydiff.config_from_dict({
        "experiment": {"name": "tabular-mlp-penguins", "seed": 0, "device": "cpu"},
        "modality": {"name": "tabular", "dataset": "penguins", "condition_on": ["species"]},
        "corruption": {"name": "masked",
                       "fields": {"num": {"name": "gaussian", "schedule": "vp-cosine", "parametrization": "v"}}},
        "denoiser": {"name": "tabular_mlp", "hidden": [64, 64], "time_dim": 64},
        "training": {"steps": 1, "batch_size": 128, "cond_dropout": 0.1},
        "sampling": {"sampler": "ancestral"},
    }, source="test_tabular_networks")
    exp = polydiff.build_experiment(config, manager)
    assert set(exp.cond_spaces) == {"c_species"} and "num" in exp.spaces
    train, validation = exp.modality.dataset("train"), exp.modality.dataset("validation")
    stack = lambda data: {f: torch.stack([data[i][f] for i in range(len(data))]) for f in data[0]}
    rows, held_out = stack(train), stack(validation)

    def held_out_loss() -> float:
        with torch.no_grad():
            return float(exp.loss(exp.denoiser, held_out, generator=torch.Generator().manual_seed(9))[0])

    before = held_out_loss()
    optimiser = torch.optim.Adam(exp.denoiser.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(100):
        pick = torch.randint(len(train), (128,), generator=g)
        loss = exp.loss(exp.denoiser, {f: v[pick] for f, v in rows.items()}, generator=g)[0]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = held_out_loss()
    assert after < 0.8 * before, f"held-out loss {before:.4f} -> {after:.4f}"
