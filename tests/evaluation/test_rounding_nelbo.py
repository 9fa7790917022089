"""The discrete bound of Gaussian diffusion on token embeddings (Diffusion-LM) against a known law."""
from __future__ import annotations

import math

import pytest
import torch

import polydiff
from polydiff import Prediction
from polydiff.evaluation.likelihood import nearest_tokens, rounding_nelbo_bits
from polydiff.testing.oracles import PointCloudOracle

EMBEDDINGS = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.5]], dtype=torch.float64)
PROBS = (0.5, 0.3, 0.2)
ENTROPY_BITS = -sum(p * math.log2(p) for p in PROBS)


def _setup():
    process = polydiff.GaussianCorruption(polydiff.Continuous((1, 2)), polydiff.VPCosine())
    oracle = PointCloudOracle(EMBEDDINGS.repeat_interleave(torch.tensor([5, 3, 2]), dim=0))
    flat = oracle.predict_fn({"x": polydiff.GaussianCorruption(polydiff.Continuous((2,)), polydiff.VPCosine())})

    def predict(x, t):
        out = flat({"x": x["x"].reshape(-1, 2)}, t)["x"]
        return {"x": Prediction(raw=out.raw.reshape(-1, 1, 2), x0=out.x0.reshape(-1, 1, 2))}

    words = torch.multinomial(torch.tensor(PROBS), 4000, replacement=True, generator=torch.Generator().manual_seed(0))
    return {"x": process}, predict, {"x": EMBEDDINGS[words][:, None, :].float()}, words


def test_the_bound_of_the_exact_denoiser_is_the_entropy_of_the_tokens():
    processes, predict, x0, _ = _setup()
    bits = rounding_nelbo_bits(predict, processes, x0, {"x": EMBEDDINGS}, generator=torch.Generator().manual_seed(1))
    assert float(bits.mean()) == pytest.approx(ENTROPY_BITS, abs=0.05)
    assert float(bits.mean()) > ENTROPY_BITS - 3 * float(bits.std()) / math.sqrt(len(bits))


def test_a_worse_denoiser_has_a_larger_bound():
    processes, predict, x0, _ = _setup()

    def blind(x, t):
        zero = torch.zeros_like(x["x"])
        return {"x": Prediction(raw=zero, x0=zero)}

    good = rounding_nelbo_bits(predict, processes, x0, {"x": EMBEDDINGS}, generator=torch.Generator().manual_seed(1))
    bad = rounding_nelbo_bits(blind, processes, x0, {"x": EMBEDDINGS}, generator=torch.Generator().manual_seed(1))
    assert float(bad.mean()) > float(good.mean()) + 0.5


def test_nearest_tokens_rounds_each_vector_to_its_embedding():
    _, _, x0, words = _setup()
    assert torch.equal(nearest_tokens(x0["x"][:, 0] + 0.1, EMBEDDINGS), words)
