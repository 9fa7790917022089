"""build_experiment resolves names through the registry and reports bad pairings clearly."""
import pytest
import torch

import polydiff
from polydiff import (ConfigError, Continuous, Discrete, IncompatibleSpaceError, ModalitySpec,
                      UnknownComponentError)


class Pairs(torch.utils.data.Dataset):
    def __init__(self, n=64):
        self.x = torch.randn(n, 2)
        self.tok = torch.randint(0, 5, (n, 3))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "tok": self.tok[i]}


class MixedModality:
    """A continuous field and a discrete one."""

    name = "mixed"
    cond_spaces = {}

    def __init__(self, with_tokens: bool = True):
        self.spaces = {"x": Continuous((2,))}
        if with_tokens:
            self.spaces["tok"] = Discrete((3,), 5)

    def dataset(self, split):
        return Pairs()

    def decode(self, state):
        return state

    def encode(self, decoded):
        return decoded

    def write_artefacts(self, samples, out_dir):
        return []


class MixedPlugin:
    @polydiff.hookimpl
    def polydiff_modalities(self):
        yield ModalitySpec(name="mixed", summary="a continuous and a discrete field", factory=MixedModality)


def config(**tables):
    raw = {"modality": {"name": "mixed", "with_tokens": False}, "denoiser": {"name": "mlp", "width": 16, "depth": 1}}
    for table, values in tables.items():
        raw.setdefault(table, {}).update(values)
    return polydiff.config_from_dict(raw)


@pytest.fixture
def manager():
    return polydiff.make_plugin_manager(autoload=False, extra_plugins={"mixed": MixedPlugin()})


def test_builds_and_computes_a_finite_loss(manager):
    exp = polydiff.build_experiment(config(corruption={"schedule": "vp-cosine"}), manager)
    assert exp.processes["x"].parametrization == "eps"
    batch = {"x": torch.randn(8, 2)}
    loss, parts = exp.loss(exp.denoiser, batch, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss) and set(parts) == {"loss/x"}
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in exp.denoiser.parameters())


def test_edm_schedule_wraps_the_network_in_preconditioning(manager):
    exp = polydiff.build_experiment(config(corruption={"schedule": "edm"}), manager)
    assert isinstance(exp.denoiser, polydiff.EDMPreconditioning)


def test_unknown_names_suggest_close_matches(manager):
    with pytest.raises(UnknownComponentError, match=r"unknown schedule 'edn'.*Did you mean 'edm'"):
        polydiff.build_experiment(config(corruption={"schedule": "edn"}), manager)
    with pytest.raises(UnknownComponentError, match=r"unknown corruption 'gausian'.*'gaussian'"):
        polydiff.build_experiment(config(corruption={"name": "gausian"}), manager)
    with pytest.raises(UnknownComponentError, match=r"unknown modality 'mixd'"):
        polydiff.build_experiment(polydiff.config_from_dict({"modality": {"name": "mixd"}}), manager)


def test_process_paired_with_the_wrong_space_names_both(manager):
    cfg = config(modality={"with_tokens": True})
    with pytest.raises(IncompatibleSpaceError, match=r"corruption 'gaussian'.*field 'tok'.*discrete"):
        polydiff.build_experiment(cfg, manager)


def test_bad_factory_option_is_a_config_error_naming_the_component(manager):
    with pytest.raises(ConfigError, match=r"denoiser 'mlp'.*widht"):
        polydiff.build_experiment(config(denoiser={"widht": 3}), manager)
    with pytest.raises(ConfigError, match=r"fields \['y'\]"):
        polydiff.build_experiment(config(corruption={"fields": {"y": {"schedule": "ve"}}}), manager)


def test_per_field_override_changes_only_that_field(manager):
    exp = polydiff.build_experiment(config(corruption={"schedule": "vp-linear", "fields": {"x": {"schedule": "flow"}}}),
                                    manager)
    assert exp.processes["x"].schedule.name == "flow"
    assert exp.processes["x"].parametrization == "flow_velocity"


def test_classifier_free_dropout_uses_the_null_label(manager):
    exp = polydiff.build_experiment(config(), manager)
    exp.modality.cond_spaces = {"label": Discrete((1,), 4)}
    cond = {"label": torch.zeros(1000, 1, dtype=torch.long)}
    dropped = exp.drop_cond(cond, 0.25, torch.Generator().manual_seed(0))["label"]
    frac = (dropped == 4).float().mean().item()
    assert set(dropped.unique().tolist()) == {0, 4} and 0.2 < frac < 0.3


def test_sampler_option_typo_and_unknown_grid_are_config_errors(manager):
    exp = polydiff.build_experiment(config(corruption={"schedule": "vp-linear"}), manager)
    with pytest.raises(ConfigError, match=r"options \['etaa'\] are not options of sampler 'ddim'.*'eta'"):
        exp.sample(exp.denoiser, 4, sampler="ddim", steps=3, etaa=1.0)
    with pytest.raises(ConfigError, match=r"\[sampling\] grid: unknown grid 'karas'"):
        exp.sample(exp.denoiser, 4, sampler="ddim", steps=3, grid="karas")
    out = exp.sample(exp.denoiser, 4, sampler="ddim", steps=3, eta=1.0, generator=torch.Generator().manual_seed(0))
    assert out.nfe == 3 and out.state["x"].shape == (4, 2)


def test_inpainting_keeps_known_tokens_and_known_coordinates():
    import polydiff as pd_

    manager = pd_.make_plugin_manager(autoload=False)
    config = pd_.config_from_dict({"modality": {"name": "toy-tokens"}, "corruption": {"name": "masked"},
                                   "denoiser": {"name": "transformer", "width": 32, "depth": 1},
                                   "sampling": {"sampler": "masked_cached", "steps": 8}})
    exp = pd_.build_experiment(config, manager)
    known = {"tokens": torch.tensor([[2, 0, 0, 1]])}
    mask = {"tokens": torch.tensor([[1, 0, 0, 1]])}
    out = exp.sample(exp.denoiser.eval(), 50, known=known, mask=mask, generator=torch.Generator().manual_seed(0))
    tokens = out.state["tokens"]
    assert torch.equal(tokens[:, 0], torch.full((50,), 2)) and torch.equal(tokens[:, 3], torch.ones(50, dtype=torch.long))
    assert int(tokens.max()) < 4, "no mask id is left"
    with pytest.raises(ConfigError, match="expected \\(1, 4\\) or \\(50, 4\\)"):
        exp.sample(exp.denoiser.eval(), 50, known={"tokens": torch.zeros(1, 3, dtype=torch.long)},
                   mask={"tokens": torch.ones(1, 3)})
    with pytest.raises(ConfigError, match="not a diffused field"):
        exp.sample(exp.denoiser.eval(), 50, known={"label": torch.zeros(1, 4)}, mask={"label": torch.ones(1, 4)})
