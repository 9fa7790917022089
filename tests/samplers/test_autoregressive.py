"""The autoregressive process and sampler against the exact causal conditionals of a known law."""
from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff.corruptions.autoregressive import AutoregressiveCorruption
from polydiff.denoisers.causal import CausalTransformer
from polydiff.errors import ConfigError, IncompatibleSpaceError
from polydiff.evaluation.nelbo import nelbo_bits
from polydiff.samplers.autoregressive import sample_autoregressive
from polydiff.testing.oracles import EnumeratedSequenceOracle
from polydiff.testing.problems import fixed_law

SPACE = polydiff.Discrete((3,), vocab_size=3)
GRID = torch.tensor([1.0, 0.0])


def _law() -> tuple[EnumeratedSequenceOracle, dict]:
    oracle = EnumeratedSequenceOracle(fixed_law().reshape(3, 3, 3))
    return oracle, {"x": AutoregressiveCorruption(SPACE, field="x")}


def _frequencies(samples: torch.Tensor) -> torch.Tensor:
    codes = samples[:, 0] * 9 + samples[:, 1] * 3 + samples[:, 2]
    return torch.bincount(codes, minlength=27).double() / len(samples)


class OracleDecoder:
    """A cached decoder over the oracle: feeds one token per step, like a key / value cache."""

    def __init__(self, oracle: EnumeratedSequenceOracle, n: int) -> None:
        self.oracle, self.prefix = oracle, torch.zeros(n, 0, dtype=torch.long)

    def step(self, prev):
        if prev is not None:
            self.prefix = torch.cat([self.prefix, prev[:, None]], dim=1)
        i = self.prefix.shape[1]
        padded = torch.cat([self.prefix, torch.zeros(len(self.prefix), 3 - i, dtype=torch.long)], dim=1)
        return self.oracle.causal_conditionals(padded)[:, i].log().clamp(min=-1e4)


def test_sampling_with_the_exact_conditionals_reproduces_the_law():
    oracle, processes = _law()
    x = {"x": processes["x"].prior(20000)}
    out = sample_autoregressive(oracle.predict_fn(processes), processes, x, GRID, generator=torch.Generator().manual_seed(0))
    tv = 0.5 * (_frequencies(out.state["x"]) - oracle.table.flatten()).abs().sum()
    assert tv < 0.02
    assert out.nfe == 3 and out.info["tokens_per_call"] == 1.0


def test_cached_decoding_draws_the_same_samples_as_full_evaluation():
    oracle, processes = _law()
    full = oracle.predict_fn(processes)

    def cached(x, t):
        return full(x, t)

    cached.network = type("Net", (), {"decoder": lambda self, n, cond: OracleDecoder(oracle, n)})()
    x = {"x": processes["x"].prior(500)}
    a = sample_autoregressive(full, processes, x, GRID, generator=torch.Generator().manual_seed(3))
    b = sample_autoregressive(cached, processes, x, GRID, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.state["x"], b.state["x"])
    c = sample_autoregressive(cached, processes, x, GRID, generator=torch.Generator().manual_seed(3), cache=False)
    assert torch.equal(a.state["x"], c.state["x"])


def test_a_prompt_is_kept_and_the_rest_follows_the_conditional_law():
    oracle, processes = _law()
    x = {"x": processes["x"].prior(20000)}
    x["x"][:, 0] = 1
    out = sample_autoregressive(oracle.predict_fn(processes), processes, x, GRID, generator=torch.Generator().manual_seed(1))
    assert bool((out.state["x"][:, 0] == 1).all())
    conditional = oracle.table[1].flatten() / oracle.table[1].sum()
    freq = _frequencies(out.state["x"]).reshape(3, 9)[1]
    assert 0.5 * (freq - conditional).abs().sum() < 0.02
    assert out.nfe == 2


def test_temperature_towards_zero_is_greedy_and_top_k_one_is_argmax():
    oracle, processes = _law()
    x = {"x": processes["x"].prior(50)}
    out = sample_autoregressive(oracle.predict_fn(processes), processes, x, GRID, top_k=1,
                                generator=torch.Generator().manual_seed(0))
    assert len(torch.unique(out.state["x"], dim=0)) == 1
    with pytest.raises(ValueError, match="temperature"):
        sample_autoregressive(oracle.predict_fn(processes), processes, x, GRID, temperature=0.0)


def test_nelbo_is_the_exact_entropy_of_the_law():
    """Averaged over every sequence with its probability, the NLL of the exact conditionals is H(p)
    (to float32 precision: the loss is computed in float32, as in training)."""
    oracle, processes = _law()
    support = oracle.table.flatten() > 0
    sequences = oracle.sequences[support]
    bits = nelbo_bits(oracle.predict_fn(processes), processes, {"x": sequences}, n_times=2)["x"]
    expected = oracle.entropy() / 3 / math.log(2)
    assert float((bits * oracle.table.flatten()[support]).sum()) == pytest.approx(expected, rel=1e-6)


def test_the_causal_transformer_reads_only_earlier_positions():
    torch.manual_seed(0)
    net = CausalTransformer({"x": polydiff.Discrete((6,), vocab_size=5)}, width=16, depth=2, heads=2)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randint(0, 5, (4, 6))
    y = x.clone()
    y[:, 3:] = torch.randint(0, 5, (4, 3))
    a, b = net({"x": x}, torch.zeros(4))["x"], net({"x": y}, torch.zeros(4))["x"]
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-6)
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-4)


def _config(denoiser: str, sampler: str) -> dict:
    return polydiff.config_from_dict({
        "experiment": {"name": "ar", "run_root": "/tmp/unused", "device": "cpu"},
        "modality": {"name": "toy-tokens"}, "corruption": {"name": "autoregressive"},
        "denoiser": {"name": denoiser, "width": 16, "depth": 1},
        "sampling": {"sampler": sampler}, "training": {"steps": 1}})


def test_a_bidirectional_denoiser_or_a_time_stepping_sampler_is_refused_at_build():
    with pytest.raises(IncompatibleSpaceError, match="causal"):
        polydiff.build_experiment(_config("transformer", "autoregressive"))
    with pytest.raises(ConfigError, match="autoregressive"):
        polydiff.build_experiment(_config("causal_transformer", "ancestral"))
    experiment = polydiff.build_experiment(_config("causal_transformer", "autoregressive"))
    out = experiment.sample(experiment.denoiser, 8, generator=torch.Generator().manual_seed(0))
    assert out.state["tokens"].shape == (8, 4) and int(out.state["tokens"].max()) < 4 and out.nfe == 4
