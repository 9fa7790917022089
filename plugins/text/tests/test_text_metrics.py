"""The text metrics against cases with known answers: entropy of a uniform sequence, distinct-n
of a repeated string, a bigram judge by hand, and a trained causal judge that prefers the text
it was trained on to the same tokens shuffled."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.nn import functional as F

import polydiff
from polydiff_text import metrics as M
from polydiff_text.networks import TextCausal

V, L = 5, 10
SPACES = {"tokens": polydiff.Discrete((L,), V)}


def counting(n: int, seed: int) -> torch.Tensor:
    """Sequences ``x_i = (x_0 + i) mod V`` with a random start."""
    start = torch.randint(V, (n, 1), generator=torch.Generator().manual_seed(seed))
    return (start + torch.arange(L)) % V


def shuffled(ids: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The same tokens in a random order (same unigram law, no sequential structure)."""
    flat = ids.reshape(-1)
    return flat[torch.randperm(len(flat), generator=torch.Generator().manual_seed(seed))].view_as(ids)


class CountingCorpus:
    """A stand-in for the text modality: counting sequences, optionally as fixed embeddings."""

    name = "text"

    def __init__(self, judge: str | None = None, embedding_dim: int | None = None) -> None:
        self.judge, self.vocab = judge, [chr(ord("a") + i) for i in range(V)]
        self.train = counting(200, seed=1)
        self.embeddings = None if embedding_dim is None else torch.randn(V, embedding_dim)
        shape = (L,) if embedding_dim is None else (L, embedding_dim)
        self.spaces = {"tokens": polydiff.Discrete(shape, V) if embedding_dim is None else polydiff.Continuous(shape)}

    def dataset(self, split: str) -> list[dict[str, torch.Tensor]]:
        assert split == "train"
        return [{"tokens": row if self.embeddings is None else self.embeddings[row]} for row in self.train]

    def token_ids(self, state: polydiff.State) -> torch.Tensor:
        x = state["tokens"]
        return torch.cdist(x.reshape(-1, x.shape[-1]), self.embeddings).argmin(1).view(x.shape[:-1])


def one(rows: list[dict], metric: str) -> dict:
    found = [r for r in rows if r["metric"] == metric]
    assert len(found) == 1, rows
    return found[0]


def test_specs_are_for_text_and_the_kit_has_a_judge():
    specs = {s.name: s for s in M.metric_specs()}
    assert set(specs) == {"unigram_entropy", "distinct_n", "generative_perplexity"}
    assert all(s.modalities == {"text"} for s in specs.values())
    assert specs["generative_perplexity"].kit_options["judge"] == "bigram"
    assert not specs["generative_perplexity"].higher_is_better and specs["distinct_n"].higher_is_better


def test_entropy_of_a_uniform_sequence_is_log2_v():
    uniform = {"tokens": torch.arange(V).repeat(4, 2)}
    constant = {"tokens": torch.arange(4)[:, None].expand(4, L) % V}  # each sample one token, 4 tokens in all
    row = one(M.unigram_entropy(uniform, constant, spaces=SPACES), "unigram_entropy")
    assert row["field"] == "tokens"
    assert row["value"] == pytest.approx(math.log2(V))
    assert row["per_sequence"] == pytest.approx(math.log2(V))
    assert row["reference"] == pytest.approx(2.0)
    assert row["reference_per_sequence"] == 0.0
    other = {"x": torch.zeros(2)}
    assert M.unigram_entropy(other, other, spaces={"x": polydiff.Continuous((1,))}) == []


def test_distinct_n_of_a_repeated_string():
    repeated = {"tokens": torch.tensor([[0, 1] * (L // 2)] * 3)}
    fresh = {"tokens": torch.arange(3 * L).view(3, L)}
    rows = M.distinct_n(repeated, fresh, spaces={"tokens": polydiff.Discrete((L,), 3 * L)})
    assert [r["metric"] for r in rows] == ["distinct_1", "distinct_2", "distinct_3"]
    for n, row in zip((1, 2, 3), rows):
        assert row["value"] == pytest.approx(2 / (3 * (L - n + 1)))  # only "ab" / "ba" patterns
        assert row["reference"] == 1.0
    assert M.distinct_fraction(torch.zeros(2, 2, dtype=torch.long), 3) is None


def test_embedding_samples_are_rounded_to_tokens_first():
    corpus = CountingCorpus(embedding_dim=4)
    ids = counting(6, seed=2)
    noisy = {"tokens": corpus.embeddings[ids] + 0.01 * torch.randn(6, L, 4)}
    vectors = M.unigram_entropy(noisy, noisy, spaces=corpus.spaces, modality=corpus)
    tokens = M.unigram_entropy({"tokens": ids}, {"tokens": ids}, spaces=SPACES)
    assert vectors == tokens
    assert M.distinct_n(noisy, noisy, spaces=corpus.spaces) == []  # no modality: nothing to round with


def test_bigram_judge_by_hand():
    judge = M.BigramJudge(torch.tensor([[0, 1], [0, 1]]), vocab_size=2)
    # q(x_1 = 0) = (2 + 1) / (2 + 2), q(1 | 0) = (2 + 1) / (2 + 2): perplexity (3/4)^-1
    assert M.perplexity(judge, torch.tensor([[0, 1]])) == pytest.approx(4 / 3)
    # q(x_1 = 1) = 1/4, q(0 | 1) = 1/2 (no pair starts with 1)
    assert M.perplexity(judge, torch.tensor([[1, 0]])) == pytest.approx(math.sqrt(8))
    with pytest.raises(ValueError, match="outside"):
        judge.log_probs(torch.tensor([[0, 2]]))


def test_generative_perplexity_with_the_bigram_judge_prefers_real_text():
    corpus = CountingCorpus(judge="bigram")
    real, noise = {"tokens": counting(50, seed=3)}, {"tokens": shuffled(counting(50, seed=3))}
    row = one(M.generative_perplexity(real, noise, spaces=SPACES, modality=corpus), "generative_perplexity")
    assert row["judge"] == "bigram" and row["field"] == "tokens"
    assert row["value"] < 1.5 < row["reference"]  # counting text is (almost) deterministic under a bigram model
    assert M.generative_perplexity(real, noise, spaces=SPACES, modality=corpus)[0] == row  # the fit is cached


def test_no_judge_means_no_number_and_one_warning():
    M._warn_no_judge.cache_clear()
    real = {"tokens": counting(4, seed=4)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert M.generative_perplexity(real, real, spaces=SPACES, modality=CountingCorpus()) == []
        assert M.generative_perplexity(real, real, spaces=SPACES, modality=None) == []
    assert len(caught) == 1 and "judge" in str(caught[0].message)


def test_a_trained_causal_judge_prefers_its_training_text_to_shuffled_tokens():
    torch.manual_seed(0)
    net = TextCausal(SPACES, width=32, depth=1, heads=2)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(80):
        x = counting(32, seed=10 + step)
        loss = F.cross_entropy(net({"tokens": x})["tokens"].reshape(-1, V), x.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    judge = M.CausalJudge(net.eval(), "tokens", V, "test judge")
    text = counting(100, seed=5)
    own, scrambled = M.perplexity(judge, text), M.perplexity(judge, shuffled(text))
    assert own < 2.0 < scrambled, (own, scrambled)
    logp = judge.log_probs(text)
    assert logp.shape == (100, L) and bool((logp <= 0).all())
    with torch.no_grad():
        nll = F.cross_entropy(net({"tokens": text})["tokens"].reshape(-1, V).double(), text.reshape(-1))
    assert own == pytest.approx(math.exp(float(nll)), rel=1e-9)  # perplexity = exp of the mean NLL


def test_the_judge_must_share_the_vocabulary():
    judge = M.CausalJudge(TextCausal(SPACES, width=8, depth=1, heads=2), "tokens", V, "judge-run",
                          vocab=list("vwxyz"))
    with pytest.raises(polydiff.ConfigError, match="vocabulary"):
        M._check_vocab(judge, CountingCorpus())
    M._check_vocab(M.CausalJudge(judge.network, "tokens", V, "judge-run", vocab=list("abcde")), CountingCorpus())
