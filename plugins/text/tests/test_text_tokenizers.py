"""Tokenisers (round trips, unknown characters, BPE size and determinism, save / load, cache)
and packing (sequence lengths, <eos> placement, document starts)."""
from __future__ import annotations

import numpy as np
import pytest

import polydiff
from polydiff_text import tokenizers as T
from polydiff_text.packing import pack

TRAIN = ["To be, or not to be: that is the question.", "Whether 'tis nobler in the mind to suffer"]
UNICODE = ["naïve café — 東京 🌸 ok", "Ελληνικά\tand\nnewlines  twice", "ascii only <eos> inside"]


@pytest.fixture(scope="module")
def bpe() -> T.BPETokenizer:
    return T.BPETokenizer.train(TRAIN * 20 + UNICODE, vocab_size=300)


def test_char_vocabulary_is_specials_then_sorted_training_characters():
    tok = T.CharTokenizer.train(["bca", "ab"])
    assert tok.vocab == ["<eos>", "<unk>", "a", "b", "c"]
    assert (tok.eos_id, tok.unk_id, tok.vocab_size) == (0, 1, 5)


def test_char_round_trip_is_exact_for_known_characters():
    tok = T.CharTokenizer.train(TRAIN)
    for text in TRAIN:
        ids = tok.encode(text)
        assert ids.dtype == np.int64 and len(ids) == len(text)
        assert tok.decode(ids) == text
    assert tok.chars_per_token(TRAIN[0]) == 1.0


def test_unknown_characters_become_unk():
    tok = T.CharTokenizer.train(["abc"])
    ids = tok.encode("aXb€")
    assert ids.tolist() == [2, tok.unk_id, 3, tok.unk_id]
    assert tok.decode(ids) == "a<unk>b<unk>"


def test_special_strings_are_read_back_only_when_asked():
    tok = T.CharTokenizer.train(["<eos>abc"])
    assert len(tok.encode("a<eos>b")) == 7
    ids = tok.encode("a<eos>b<unk>", special=True)
    assert ids.tolist() == [tok.vocab.index("a"), tok.eos_id, tok.vocab.index("b"), tok.unk_id]
    assert tok.encode(tok.decode(ids), special=True).tolist() == ids.tolist()


def test_decode_rejects_ids_outside_the_vocabulary():
    tok = T.CharTokenizer.train(["ab"])
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        tok.decode([0, 4])


def test_bpe_round_trip_on_arbitrary_unicode(bpe):
    for text in UNICODE + ["never seen: ŝ ∮ 𝔘 ☃", ""]:
        assert bpe.decode(bpe.encode(text)) == text


def test_bpe_has_no_unknown_and_respects_the_vocab_size(bpe):
    assert bpe.vocab_size <= 300
    assert bpe.vocab_size > T.BYTE_ALPHABET + 1, "merges were learned"
    assert bpe.eos_id == 0 and bpe.vocab[0] == "<eos>"
    assert len(set(bpe.vocab)) == bpe.vocab_size
    assert bpe.chars_per_token(TRAIN[0] * 3) > 1.5


def test_bpe_reads_eos_literally_unless_asked(bpe):
    text = "a <eos> b"
    assert bpe.eos_id not in bpe.encode(text).tolist()
    special = bpe.encode(text, special=True).tolist()
    assert special.count(bpe.eos_id) == 1
    assert bpe.decode(special) == text


def test_bpe_training_is_deterministic(bpe):
    again = T.BPETokenizer.train(TRAIN * 20 + UNICODE, vocab_size=300)
    assert again.backend.to_str() == bpe.backend.to_str()


def test_bpe_vocab_size_below_the_byte_alphabet_is_a_config_error():
    with pytest.raises(polydiff.ConfigError, match="vocab_size"):
        T.BPETokenizer.train(TRAIN, vocab_size=200)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_save_and_load_give_the_same_tokenizer(tmp_path, bpe, kind):
    tok = T.CharTokenizer.train(TRAIN) if kind == "char" else bpe
    loaded = T.load_tokenizer(tok.save(tmp_path / "tokenizer.json"))
    assert type(loaded) is type(tok) and loaded.vocab == tok.vocab
    for text in TRAIN:
        assert loaded.encode(text).tolist() == tok.encode(text).tolist()


def test_load_names_a_file_that_is_no_tokenizer(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text('{"something": "else"}')
    with pytest.raises(polydiff.CheckpointError, match="tokenizer.json"):
        T.load_tokenizer(path)


def test_bpe_cache_returns_the_trained_tokenizer_and_keys_on_the_corpus():
    first = T.train_bpe_cached(TRAIN * 5, 280)
    files = set(T.cache_dir().glob("bpe-280-*.json"))
    assert T.train_bpe_cached(TRAIN * 5, 280).backend.to_str() == first.backend.to_str()
    assert set(T.cache_dir().glob("bpe-280-*.json")) == files
    T.train_bpe_cached(TRAIN * 5 + ["another document"], 280)
    assert len(set(T.cache_dir().glob("bpe-280-*.json"))) == len(files) + 1


def test_encoded_documents_cache_gives_the_same_ids(bpe):
    first = T.encode_documents_cached(bpe, UNICODE)
    second = T.encode_documents_cached(bpe, UNICODE)
    assert [a.tolist() for a in first] == [a.tolist() for a in second] == [bpe.encode(t).tolist() for t in UNICODE]


def test_packing_puts_eos_after_each_document_and_drops_the_partial_tail():
    docs = [np.array([5, 6, 7]), np.array([8]), np.array([], dtype=np.int64), np.array([9, 9])]
    packed = pack(docs, seq_len=4, eos_id=0)
    # stream: 5 6 7 0 | 8 0 0 9 | 9 0  (the last two tokens are dropped)
    assert packed.sequences.tolist() == [[5, 6, 7, 0], [8, 0, 0, 9]]
    assert packed.starts.tolist() == [[True, False, False, False], [True, False, True, True]]
    assert packed.summary() == {"documents": 4, "tokens": 10, "sequences": 2, "seq_len": 4, "dropped_tokens": 2}


def test_packing_lengths_add_up_and_documents_start_after_each_eos():
    rng = np.random.default_rng(0)
    docs = [rng.integers(1, 50, size=int(n)) for n in rng.integers(0, 30, size=40)]
    packed = pack(docs, seq_len=16, eos_id=0)
    total = sum(len(d) + 1 for d in docs)
    assert packed.sequences.shape == (total // 16, 16)
    assert packed.dropped_tokens == total % 16
    flat, starts = packed.sequences.reshape(-1), packed.starts.reshape(-1)
    assert flat[:len(docs[0])].tolist() == docs[0].tolist() and bool(starts[0])
    assert starts[1:].tolist() == (flat[:-1] == 0).tolist()
