"""The toy-tokens modality: exact laws, splits, encode/decode, artefacts, metrics, the kit, the demo config."""
from __future__ import annotations

import copy
import csv

import matplotlib.image
import pytest
import torch

import polydiff
from polydiff.builtin.toy_tokens import DATASETS, DEMO_CONFIG, ToyTokensModality, markov_table
from polydiff.errors import ConfigError
from polydiff.evaluation.categorical import tv_to_law


def manager() -> polydiff.PluginManager:
    return polydiff.make_plugin_manager(autoload=False)


def test_markov_table_is_the_chain():
    table = markov_table(3, 4)
    assert table.shape == (4, 4, 4) and abs(float(table.sum()) - 1) < 1e-12
    # x = (a, b, b): first token a (0.7), a -> b (next: 0.6), b -> b (stay: 0.1)
    assert abs(float(table[0, 1, 1]) - 0.7 * 0.6 * 0.1) < 1e-12
    # x = (c, d, a): first token c (0.1), c -> d (0.6), d -> a (next wraps to 0 and reset: 0.9)
    assert abs(float(table[2, 3, 0]) - 0.1 * 0.6 * 0.9) < 1e-12
    assert float(table[0, 2, 0]) == 0.0  # a -> c is impossible
    assert int((markov_table(4, 4) > 0).sum()) == 58


@pytest.mark.parametrize("dataset", DATASETS)
def test_splits_are_seeded_draws_of_the_law(dataset):
    a, b = ToyTokensModality(dataset, n_train=20000), ToyTokensModality(dataset, n_train=20000)
    train = a.dataset("train").fields["tokens"]
    assert train.shape == (20000, 4) and train.dtype == torch.int64
    assert torch.equal(train, b.dataset("train").fields["tokens"])
    assert not torch.equal(train[:100], a.dataset("validation").fields["tokens"][:100])
    # 20000 samples over <= 256 sequences: the TV to the law has noise ~0.03-0.05
    assert tv_to_law(train, a.table) < 0.08
    polydiff.validate_state({"tokens": train}, a.spaces)
    fresh = a.reference(20000, torch.Generator().manual_seed(3))["tokens"]
    assert tv_to_law(fresh, a.table) < 0.08


def test_oracle_is_the_exact_law():
    modality = ToyTokensModality("dirichlet", length=3, vocab_size=3)
    oracle = modality.oracle()
    assert torch.allclose(oracle.table, modality.table)
    assert abs(oracle.entropy() - float(-torch.xlogy(modality.table, modality.table).sum())) < 1e-12


def test_encode_decode_roundtrip_with_letters():
    modality = ToyTokensModality(vocab_size=5)
    state = {"tokens": modality.dataset("validation").fields["tokens"][:50]}
    texts = modality.decode(state)
    assert all(len(t) == 4 and set(t) <= set("abcde") for t in texts)
    assert torch.equal(modality.encode(texts)["tokens"], state["tokens"])
    with pytest.raises(ValueError, match="letters"):
        modality.encode(["abz!"])


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="markov"):
        ToyTokensModality("zipf")
    with pytest.raises(ConfigError, match="exceeds"):
        ToyTokensModality(length=12, vocab_size=4)
    with pytest.raises(ValueError, match="'train', 'validation'"):
        ToyTokensModality().dataset("test")


def test_artefacts_are_text_csv_and_a_bar_chart(tmp_path):
    modality = ToyTokensModality()
    samples = modality.reference(300, torch.Generator().manual_seed(1))
    paths = {p.suffix: p for p in modality.write_artefacts(samples, tmp_path)}
    lines = paths[".txt"].read_text().splitlines()
    assert lines == modality.decode(samples)
    with paths[".csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 300 and rows[5]["text"] == lines[5] and int(rows[5]["t2"]) == int(samples["tokens"][5, 2])
    image = matplotlib.image.imread(paths[".png"])
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0


def test_the_builtin_discrete_metrics_score_toy_tokens():
    registry = manager().registry
    modality = ToyTokensModality()
    a = modality.reference(500, torch.Generator().manual_seed(1))
    b = modality.reference(500, torch.Generator().manual_seed(2))
    for name in ("sequence_tv", "token_tv"):
        function = registry.get("metric", name).function
        assert function(a, a, spaces=modality.spaces)[0]["value"] == 0.0
        assert 0.0 < function(a, b, spaces=modality.spaces)[0]["value"] < 0.5


def test_demo_config_trains_and_samples_with_the_cached_sampler(tmp_path):
    """The demo config, shortened to 40 steps: it builds, trains, samples and evaluates."""
    from polydiff.training.trainer import train

    raw = copy.deepcopy(dict(DEMO_CONFIG))
    raw["experiment"] = {**raw["experiment"], "device": "cpu"}
    raw["training"] = {**raw["training"], "steps": 40, "warmup_steps": 0, "log_every": 40, "checkpoint_every": 40,
                       "progress": False}
    mgr = manager()
    result = train(polydiff.config_from_dict(raw), run_dir=tmp_path / "run", manager=mgr)
    assert result.steps == 40
    exp = polydiff.build_experiment(polydiff.config_from_dict(raw), mgr)
    assert exp.processes["tokens"].family == "masked"
    out = exp.sample(exp.denoiser, 64, steps=16, generator=torch.Generator().manual_seed(0))
    assert out.nfe <= 16 and not bool((out.state["tokens"] == 4).any())
    rows = exp.evaluate(out.state, exp.modality.reference(64, torch.Generator().manual_seed(1)))
    assert {r["metric"] for r in rows} == {"sequence_tv", "token_tv"}
