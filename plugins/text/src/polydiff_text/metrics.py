"""Text sample-quality metrics: unigram entropy, distinct-n and generative perplexity.

Every metric has the core signature ``fn(samples, reference, *, spaces, generator=None,
modality=None) -> list[row]`` with tidy rows ``{"metric": name, "field": "tokens", "value":
float, ...}``, the reference's value under the same metric in the row's ``"reference"`` key.
Scores are per token; the conversion to characters (``modality.chars_per_token``) is left
to the reports. Token ids are the ``"tokens"`` field itself, or for the ``embedding``
representation its vectors rounded to the nearest token embedding (``modality.token_ids``);
no rows when the field is missing, or is continuous and no modality is given.

Notation:
    ========= ================================================================
    x^(s)     sample s, ids ``x^(s)_1 .. x^(s)_L`` in [0, V)
    p_hat     the empirical unigram law of all tokens of a set of samples
    q         a judge language model, ``q(x_i | x_<i)``
    ========= ================================================================

Generative perplexity needs a judge, named by the text modality's option ``judge``:

- a run folder of ``text_causal`` trained with the ``autoregressive`` process (the AR
  baseline): q is that network, loaded with its EMA weights (safetensors) via the core;
- ``"bigram"``: q is an add-one smoothed bigram model of the modality's training split,
  a cheap judge for smoke runs and the conformance kit, named as such in the rows;
- unset: no judge, so no number: the metric returns no rows and warns once.
"""
from __future__ import annotations

import functools
import math
import warnings
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import polydiff
import torch
from torch.nn import functional as F

FIELD = "tokens"
DISTINCT_ORDERS = (1, 2, 3)
BIGRAM = "bigram"
BIGRAM_MAX_SEQUENCES = 20_000
"""The bigram judge counts the first this many training sequences (plenty for its V^2 counts)."""
JUDGE_BATCH = 64
KIT_MODALITY = {"max_chars": 40_000, "seq_len": 32}
"""Modality options of the conformance kit's metric checks: a small corpus, short sequences."""


def _row(metric: str, value: float, **extra: Any) -> dict[str, Any]:
    return {"metric": metric, "field": FIELD, "value": float(value), **extra}


def token_ids(state: Mapping[str, torch.Tensor], spaces: Mapping[str, polydiff.Space],
              modality: Any = None) -> torch.Tensor | None:
    """The ``"tokens"`` field of ``state`` as ids ``(N, L)`` int64 on the CPU, or None.

    Discrete fields are taken as they are; a continuous field (the ``embedding``
    representation) is rounded by ``modality.token_ids``, so it needs the modality.
    """
    space = spaces.get(FIELD)
    if space is None or FIELD not in state:
        return None
    if space.kind == "discrete":
        x = state[FIELD].detach().cpu().long()
        return x.reshape(x.shape[0], -1)
    return None if modality is None else modality.token_ids({FIELD: state[FIELD]})


# ---------------------------------------------------------------------------
# Unigram entropy and distinct-n
# ---------------------------------------------------------------------------

def entropy_bits(ids: torch.Tensor) -> float:
    """Entropy in bits of the empirical law of the ids in ``ids`` (any shape):
    ``H = -sum_v p_hat(v) log2 p_hat(v)``; ``log2 V`` when all V ids are equally frequent."""
    counts = torch.unique(ids.reshape(-1), return_counts=True)[1].double()
    p = counts / counts.sum()
    return float(-(p * torch.log2(p)).sum())


def unigram_entropy(samples: polydiff.State, reference: polydiff.State, *, spaces: Mapping[str, polydiff.Space],
                    generator: torch.Generator | None = None, modality: Any = None) -> list[dict[str, Any]]:
    """Entropy (bits) of the unigram law of all sample tokens, next to the reference's.

    Low entropy flags the repetitive samples that make generative perplexity look good
    (Zheng et al. 2024, "Masked diffusion models are secretly time-agnostic masked models
    and exploit inaccurate categorical sampling", Sec. 5). Also the mean over samples of the
    entropy of each sample's own tokens (``per_sequence``), which catches a sample that
    repeats itself even when the samples differ from each other.

    Args:
        samples, reference: States with ``"tokens"``; spaces: their spaces.
        generator: unused (deterministic); modality: rounds the embedding representation.

    Returns:
        One row ``unigram_entropy`` with keys ``reference``, ``per_sequence`` and
        ``reference_per_sequence``; none without token ids.
    """
    a, b = token_ids(samples, spaces, modality), token_ids(reference, spaces, modality)
    if a is None or b is None:
        return []

    def per_sequence(ids: torch.Tensor) -> float:
        return sum(entropy_bits(row) for row in ids) / len(ids)

    return [_row("unigram_entropy", entropy_bits(a), reference=entropy_bits(b), per_sequence=per_sequence(a),
                 reference_per_sequence=per_sequence(b))]


def distinct_fraction(ids: torch.Tensor, n: int) -> float | None:
    """Distinct-n (Li et al. 2016, "A diversity-promoting objective function for neural
    conversation models", Sec. 4.3): unique n-grams over all n-grams of the sequences
    ``ids`` ``(N, L)``, counted within each sequence; None when ``L < n``."""
    if ids.shape[1] < n:
        return None
    grams = ids.unfold(1, n, 1).reshape(-1, n)
    return torch.unique(grams, dim=0).shape[0] / grams.shape[0]


def distinct_n(samples: polydiff.State, reference: polydiff.State, *, spaces: Mapping[str, polydiff.Space],
               generator: torch.Generator | None = None, modality: Any = None) -> list[dict[str, Any]]:
    """Distinct-1, -2 and -3 of the samples (``distinct_fraction``), each next to the reference's.

    The value grows as the sample set gets smaller, so compare equal numbers of samples (the
    reference has as many items as the samples in an evaluation).

    Returns:
        One row per order n, named ``distinct_<n>``, with key ``reference``.
    """
    a, b = token_ids(samples, spaces, modality), token_ids(reference, spaces, modality)
    if a is None or b is None:
        return []
    rows = []
    for n in DISTINCT_ORDERS:
        value, ref = distinct_fraction(a, n), distinct_fraction(b, n)
        if value is not None and ref is not None:
            rows.append(_row(f"distinct_{n}", value, reference=ref))
    return rows


# ---------------------------------------------------------------------------
# Generative perplexity
# ---------------------------------------------------------------------------

def _check_ids(ids: torch.Tensor, vocab_size: int, judge: str) -> None:
    bad = (ids < 0) | (ids >= vocab_size)
    if bool(bad.any()):
        raise ValueError(f"generative_perplexity: {int(bad.sum())} token(s) lie outside [0, {vocab_size}) (e.g. "
                         f"the mask id {vocab_size} of an unfinished sample); the judge {judge} scores finished "
                         f"samples only")


class BigramJudge:
    """An add-one (Laplace) smoothed bigram language model (Jurafsky & Martin, "Speech and
    Language Processing", Sec. 3.5): ``q(x_1 = v) = (c(v) + 1) / (N + V)`` from the first
    tokens and ``q(x_i = w | x_{i-1} = v) = (c(v, w) + 1) / (c(v) + V)`` from the pairs.

    Args:
        sequences: training ids ``(N, L)`` in [0, V).
        vocab_size: V.
    """

    name = BIGRAM

    def __init__(self, sequences: torch.Tensor, vocab_size: int) -> None:
        ids = sequences.long()
        _check_ids(ids, vocab_size, "'bigram' (training data)")
        self.vocab_size = vocab_size
        first = torch.bincount(ids[:, 0], minlength=vocab_size).double() + 1.0
        self.first = (first / first.sum()).log()
        pairs = torch.bincount((ids[:, :-1] * vocab_size + ids[:, 1:]).reshape(-1), minlength=vocab_size ** 2)
        pairs = pairs.double().view(vocab_size, vocab_size) + 1.0
        self.next = (pairs / pairs.sum(dim=1, keepdim=True)).log()

    def log_probs(self, ids: torch.Tensor) -> torch.Tensor:
        """``log q(x_i | x_{i-1})`` of every token of ``ids`` ``(N, L)``, float64 ``(N, L)``."""
        ids = ids.long()
        _check_ids(ids, self.vocab_size, "'bigram'")
        return torch.cat([self.first[ids[:, :1]], self.next[ids[:, :-1], ids[:, 1:]]], dim=1)


class CausalJudge:
    """A trained causal network (``text_causal``) as the judge: its raw output at position i
    are the logits of ``q(x_i | x_<i)`` (the contract of ``DenoiserSpec(causal=True)``).

    Args:
        network: the causal network; field: its one field; vocab_size: V; name: for the rows.
        vocab: the token strings it was trained on, where known (checked against the modality's).
    """

    def __init__(self, network: torch.nn.Module, field: str, vocab_size: int, name: str,
                 vocab: list[str] | None = None) -> None:
        self.network, self.field, self.vocab_size, self.name = network, field, vocab_size, name
        self.vocab = vocab

    @classmethod
    def from_run(cls, run_dir: str | Path) -> CausalJudge:
        """The EMA network of a run folder of a causal network trained with the ``autoregressive`` process.

        Raises:
            polydiff.CheckpointError: not a run folder, or a missing / corrupt checkpoint.
            polydiff.ConfigError: the run's denoiser is not causal or its process is not autoregressive.
        """
        loaded = polydiff.load_run(run_dir)
        exp = loaded.experiment
        name = exp.config["denoiser"]["name"]
        where = f"modality option judge = {str(run_dir)!r}"
        if not exp.manager.registry.get("denoiser", name).causal:
            raise polydiff.ConfigError(f"{where}: the run's denoiser {name!r} is not causal; train 'text_causal' "
                                       f"with the 'autoregressive' corruption and pass that run folder")
        (field, process), = exp.processes.items()
        if process.family != "autoregressive":
            raise polydiff.ConfigError(f"{where}: the run trained the {process.family!r} process, not "
                                       f"'autoregressive', so its network is no language model")
        return cls(loaded.model, field, exp.spaces[field].vocab_size, str(run_dir),
                   getattr(exp.modality, "vocab", None))

    @torch.no_grad()
    def log_probs(self, ids: torch.Tensor) -> torch.Tensor:
        """``log q(x_i | x_<i)`` of every token of ``ids`` ``(N, L)``, float64 ``(N, L)``, in batches."""
        ids = ids.long()
        _check_ids(ids, self.vocab_size, self.name)
        device = next(self.network.parameters()).device
        out = []
        for batch in ids.split(JUDGE_BATCH):
            batch = batch.to(device)
            logits = self.network({self.field: batch}, torch.zeros(len(batch), device=device))[self.field]
            logp = F.log_softmax(logits.double(), dim=-1).gather(-1, batch[..., None])[..., 0]
            out.append(logp.cpu())
        return torch.cat(out)


def perplexity(judge: BigramJudge | CausalJudge, ids: torch.Tensor) -> float:
    """``exp(-mean_{s, i} log q(x^(s)_i | x^(s)_<i))`` over every token of ``ids`` ``(N, L)``."""
    return math.exp(-float(judge.log_probs(ids).mean()))


_BIGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""The bigram judge of each modality object, fitted once."""


@functools.lru_cache(maxsize=4)
def _run_judge(run_dir: str) -> CausalJudge:
    return CausalJudge.from_run(run_dir)


def _check_vocab(judge: CausalJudge, modality: Any) -> None:
    """ConfigError when the judge's vocabulary differs from the modality's (another tokenizer)."""
    own = getattr(modality, "vocab", None)
    if own is None:
        return
    if judge.vocab_size != len(own) or (judge.vocab is not None and list(judge.vocab) != list(own)):
        raise polydiff.ConfigError(f"modality option judge = {judge.name!r}: the judge was trained with another "
                                   f"vocabulary ({judge.vocab_size} tokens) than this modality's ({len(own)}); "
                                   f"train the judge with the same tokenizer options")


def resolve_judge(setting: str, modality: Any) -> BigramJudge | CausalJudge:
    """The judge named by the modality option ``judge``: ``"bigram"`` or a run folder (module docstring)."""
    if setting == BIGRAM:
        if modality not in _BIGRAMS:
            train = modality.dataset("train")
            count = min(len(train), BIGRAM_MAX_SEQUENCES)
            state = {FIELD: torch.stack([train[i][FIELD] for i in range(count)])}
            _BIGRAMS[modality] = BigramJudge(token_ids(state, modality.spaces, modality), len(modality.vocab))
        return _BIGRAMS[modality]
    judge = _run_judge(str(Path(setting).resolve()))
    _check_vocab(judge, modality)
    return judge


@functools.cache
def _warn_no_judge() -> None:
    warnings.warn("generative_perplexity: no judge is configured, so it reports nothing; set the text modality "
                  "option judge = '<run folder of text_causal trained with the autoregressive process>' "
                  "(or 'bigram' for a smoothed bigram model of the training split)", stacklevel=3)


def generative_perplexity(samples: polydiff.State, reference: polydiff.State, *,
                          spaces: Mapping[str, polydiff.Space], generator: torch.Generator | None = None,
                          modality: Any = None) -> list[dict[str, Any]]:
    """Generative perplexity (as reported by MDLM, Sahoo et al. 2024, Sec. 4.1, with GPT-2 as
    the judge): ``perplexity(q, samples)`` under the judge q of the modality option ``judge``.

    A low value alone is no proof of quality: repetitive samples score well, so read it next
    to ``unigram_entropy``.

    Args:
        samples, reference: States with ``"tokens"``; spaces: their spaces.
        generator: unused; modality: the text modality (its ``judge`` option and training split).

    Returns:
        One row ``generative_perplexity`` with keys ``judge`` (the run folder or ``"bigram"``)
        and ``reference`` (the judge's perplexity of the reference); no rows, and a warning
        the first time, when no judge is configured.

    Raises:
        polydiff.ConfigError: the judge run is not an autoregressive causal model or has another vocabulary.
        ValueError: samples hold ids outside [0, V), such as leftover mask ids.
    """
    setting = getattr(modality, "judge", None)
    if setting is None:
        _warn_no_judge()
        return []
    a, b = token_ids(samples, spaces, modality), token_ids(reference, spaces, modality)
    if a is None or b is None:
        return []
    judge = resolve_judge(setting, modality)
    return [_row("generative_perplexity", perplexity(judge, a), judge=judge.name, reference=perplexity(judge, b))]


def metric_specs() -> Iterator[polydiff.MetricSpec]:
    """The ``unigram_entropy``, ``distinct_n`` and ``generative_perplexity`` specs for the ``text`` modality."""
    text = frozenset({"text"})
    yield polydiff.MetricSpec(name="unigram_entropy", summary="entropy (bits) of the samples' token unigram law, "
                              "pooled and per sequence, next to the reference's", function=unigram_entropy,
                              modalities=text, higher_is_better=True, kit_options=KIT_MODALITY)
    yield polydiff.MetricSpec(name="distinct_n", summary="distinct-1/2/3: unique over all n-grams (Li et al. 2016)",
                              function=distinct_n, modalities=text, higher_is_better=True,
                              kit_options=KIT_MODALITY)
    yield polydiff.MetricSpec(name="generative_perplexity", summary="perplexity of the samples under a judge LM "
                              "(modality option judge: an AR run folder, or 'bigram')", function=generative_perplexity,
                              modalities=text, kit_options={**KIT_MODALITY, "judge": BIGRAM})
