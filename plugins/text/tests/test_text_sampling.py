"""Every text sampler with a tiny model, prompts and infilling, and the AR baseline's likelihood."""
from __future__ import annotations

import json
import math

import pytest
import torch

import polydiff
from polydiff_text import prompts

SMALL = {"name": "text", "max_chars": 20_000, "seq_len": 32}
TINY = {"width": 32, "depth": 1, "heads": 2}


def experiment(corruption: dict, denoiser: str, sampler: str, root, **modality) -> polydiff.Experiment:
    return polydiff.build_experiment(polydiff.config_from_dict({
        "experiment": {"name": "t", "run_root": str(root), "device": "cpu"},
        "modality": {**SMALL, **modality}, "corruption": corruption,
        "denoiser": {"name": denoiser, **TINY}, "sampling": {"sampler": sampler, "steps": 4},
        "training": {"steps": 2, "batch_size": 8, "log_every": 1, "checkpoint_every": 2, "progress": False,
                     "warmup_steps": 0}}))


@pytest.mark.parametrize("corruption, sampler", [
    ("masked", "masked"), ("masked", "masked_cached"), ("masked", "masked_confidence"),
    ("masked", "masked_semi_ar"), ("masked", "ancestral"), ("uniform", "ancestral"),
])
def test_discrete_samplers_return_texts_of_the_declared_space(corruption, sampler, tmp_path):
    exp = experiment({"name": corruption}, "text_transformer", sampler, tmp_path)
    out = exp.sample(exp.denoiser, 3, generator=torch.Generator().manual_seed(0))
    polydiff.validate_state(out.state, exp.spaces, where=sampler)
    assert 1 <= out.nfe <= 32 and len(exp.modality.decode(out.state)) == 3


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ddim"])
def test_embedding_diffusion_samples_round_to_tokens(sampler, tmp_path):
    exp = experiment({"name": "gaussian", "schedule": "vp-cosine"}, "text_transformer", sampler, tmp_path,
                     representation="embedding", embedding_dim=8)
    out = exp.sample(exp.denoiser, 3, generator=torch.Generator().manual_seed(0))
    ids = exp.modality.token_ids(out.state)
    assert ids.shape == (3, 32) and int(ids.max()) < exp.modality.vocab_size


def test_autoregressive_sampling_with_and_without_the_cache_agree(tmp_path):
    exp = experiment({"name": "autoregressive"}, "text_causal", "autoregressive", tmp_path)
    for p in exp.denoiser.parameters():
        torch.nn.init.normal_(p, std=0.2)
    cached = exp.sample(exp.denoiser, 4, top_k=1, generator=torch.Generator().manual_seed(0))
    full = exp.sample(exp.denoiser, 4, top_k=1, cache=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(cached.state["tokens"], full.state["tokens"])
    assert cached.nfe == 32 and cached.info["tokens_per_call"] == 1.0


@pytest.mark.parametrize("corruption, denoiser, sampler", [
    ("masked", "text_transformer", "masked"), ("masked", "text_transformer", "masked_confidence"),
    ("autoregressive", "text_causal", "autoregressive"),
])
def test_infilling_keeps_the_given_context_exactly(corruption, denoiser, sampler, tmp_path):
    exp = experiment({"name": corruption}, denoiser, sampler, tmp_path)
    templates = ["To be, or {{6}} that is", "ROMEO:"]
    known, mask = prompts.known_state(exp.modality, templates)
    out = exp.sample(exp.denoiser, 2, known=known, mask=mask, generator=torch.Generator().manual_seed(0))
    given = mask["tokens"].bool()
    assert torch.equal(out.state["tokens"][given], known["tokens"][given])
    texts = exp.modality.decode(out.state)
    assert texts[0].startswith("To be, or ") and texts[0][16:24] == " that is" and texts[1].startswith("ROMEO:")


def test_a_template_longer_than_the_sequence_is_a_clear_error(tmp_path):
    exp = experiment({"name": "masked"}, "text_transformer", "masked", tmp_path)
    with pytest.raises(polydiff.ConfigError, match=r"needs 40 tokens; .* seq_len 32"):
        prompts.template_ids(exp.modality, "x" * 30 + "{{10}}")


def test_the_autoregressive_perplexity_is_exp_of_its_loss(tmp_path):
    exp = experiment({"name": "autoregressive"}, "text_causal", "autoregressive", tmp_path)
    polydiff.train(exp.config, run_dir=tmp_path / "ar")
    run = polydiff.load_run(tmp_path / "ar")
    rows = {r["metric"]: r for r in polydiff.evaluate_run(tmp_path / "ar", n=4)}
    data = run.experiment.modality.dataset("validation")
    count = rows["perplexity_per_token"]["n"]
    batch = {"tokens": torch.stack([data[i]["tokens"] for i in range(count)])}
    with torch.no_grad():
        loss, _ = run.experiment.loss(run.model, batch)
    rows = {name: row["value"] for name, row in rows.items()}
    assert rows["perplexity_per_token"] == pytest.approx(math.exp(float(loss)), rel=1e-4)
    assert rows["nelbo_bits_per_char"] == pytest.approx(float(loss) / math.log(2) / exp.modality.chars_per_token,
                                                        rel=1e-4)


def test_prompt_file_and_polydiff_sample_write_the_prompts(tmp_path):
    exp = experiment({"name": "masked"}, "text_transformer", "masked_cached", tmp_path)
    run_dir = tmp_path / "run"
    polydiff.train(exp.config, run_dir=run_dir)
    path = tmp_path / "p.safetensors"
    assert prompts.main([str(run_dir), "ROMEO: {{5}} the king:", "--out", str(path)]) == 0
    folder = polydiff.sample_run(run_dir, n=1, inpaint=path, out=tmp_path / "samples")
    text = (folder / "samples.txt").read_text(encoding="utf-8")
    assert "[prompt] ROMEO: [...] the king:[...]" in text
    info = json.loads((folder / "info.json").read_text())
    assert info["tokens_per_call"] == pytest.approx((32 - 17) / info["nfe"])
