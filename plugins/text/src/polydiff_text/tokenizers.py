"""Tokenisers: character level, and byte-level BPE trained with Hugging Face ``tokenizers``.

Both map text to int64 token ids and back, have ``<eos>`` (the document boundary) as id 0,
save themselves as JSON (:func:`load_tokenizer` reads either) and report
``chars_per_token(text)``, which turns bits per token into bits per character.

``encode(text)`` reads the text literally; ``encode(text, special=True)`` also turns the
strings ``"<eos>"`` (and ``"<unk>"`` for characters) into their special ids, which is how
``decode`` writes them, so ``encode(decode(ids), special=True) == ids``.

- :class:`CharTokenizer`: ids ``<eos>`` = 0, ``<unk>`` = 1, then the sorted characters of
  the training text; any other character encodes as ``<unk>``.
- :class:`BPETokenizer`: byte-level BPE (Sennrich et al. 2016, with GPT-2's byte-level
  alphabet, Radford et al. 2019): the ByteLevel pre-tokenizer and decoder, a ``BpeTrainer``
  at a given vocabulary size with ``<eos>`` as its special token and the 256 byte symbols as
  its initial alphabet, so that every text encodes and nothing is unknown.
  :func:`train_bpe_cached` caches trained tokenizers under ``$POLYDIFF_CACHE/tokenizers``.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import polydiff

EOS, UNK = "<eos>", "<unk>"
FORMAT_KEY = "polydiff_text_tokenizer"
BYTE_ALPHABET = 256
MAX_CODEPOINT = 0x110000


class Tokenizer(Protocol):
    """What the modality needs of a tokeniser (both classes of this module provide it)."""

    kind: str
    vocab: list[str]
    eos_id: int

    def encode(self, text: str, *, special: bool = False) -> np.ndarray:
        """Token ids (int64) of ``text``; ``special``: the strings of special tokens become their ids."""

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of ``ids`` (special tokens written as their strings)."""

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer as JSON to ``path``; return the path."""


def chars_per_token(tokenizer: Tokenizer, text: str) -> float:
    """``len(text) / len(tokenizer.encode(text))`` (0.0 for an empty text)."""
    n = len(tokenizer.encode(text))
    return len(text) / n if n else 0.0


def _check_ids(ids: Sequence[int] | np.ndarray, size: int, who: str) -> list[int]:
    out = np.asarray(ids, dtype=np.int64).reshape(-1)
    if out.size and (out.min() < 0 or out.max() >= size):
        raise ValueError(f"{who}: token ids must be in [0, {size}), got min {out.min()}, max {out.max()}")
    return out.tolist()


class CharTokenizer:
    """Character-level tokens: ``<eos>``, ``<unk>`` and the characters seen in training.

    Args:
        characters: the distinct characters of the vocabulary (sorted here; duplicates or
            multi-character strings are a ValueError).

    Attributes:
        vocab: ``["<eos>", "<unk>", *sorted(characters)]``; id = index.
        eos_id (0), unk_id (1), kind (``"char"``).
    """

    kind = "char"
    eos_id, unk_id = 0, 1

    def __init__(self, characters: Iterable[str]) -> None:
        chars = sorted(characters)
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer: characters must be distinct single characters")
        self.vocab: list[str] = [EOS, UNK, *chars]
        self._codepoints = np.array([ord(c) for c in chars], dtype=np.int64)
        self._special = re.compile(f"({re.escape(EOS)}|{re.escape(UNK)})")

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        """The tokenizer whose characters are those of ``texts``."""
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        return cls(seen)

    @property
    def vocab_size(self) -> int:
        """V: every id, special tokens included."""
        return len(self.vocab)

    def _encode_plain(self, text: str) -> np.ndarray:
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        if not self._codepoints.size:
            return np.full(points.shape, self.unk_id, dtype=np.int64)
        pos = np.searchsorted(self._codepoints, points).clip(max=self._codepoints.size - 1)
        known = self._codepoints[pos] == points
        return np.where(known, pos + 2, self.unk_id).astype(np.int64)

    def encode(self, text: str, *, special: bool = False) -> np.ndarray:
        """Ids ``(len(text),)`` int64 of ``text`` (``special``: ``"<eos>"``/``"<unk>"`` as one id each)."""
        if not special:
            return self._encode_plain(text)
        parts = [np.array([self.vocab.index(p)], dtype=np.int64) if p in (EOS, UNK) else self._encode_plain(p)
                 for p in self._special.split(text) if p]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of ``ids`` (special tokens written as ``"<eos>"`` and ``"<unk>"``).

        Raises:
            ValueError: an id outside ``[0, vocab_size)``.
        """
        return "".join(self.vocab[i] for i in _check_ids(ids, self.vocab_size, "CharTokenizer.decode"))

    def chars_per_token(self, text: str) -> float:
        """Characters per token of ``text``: 1.0 for any non-empty text."""
        return chars_per_token(self, text)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form ``{"polydiff_text_tokenizer": "char", "vocab": [...]}``."""
        return {FORMAT_KEY: self.kind, "vocab": self.vocab}

    def save(self, path: str | Path) -> Path:
        """Write the JSON form to ``path`` (atomically) and return it."""
        return _atomic_write_text(Path(path), json.dumps(self.to_dict(), ensure_ascii=False, indent=1))


class BPETokenizer:
    """Byte-level BPE around a Hugging Face ``tokenizers.Tokenizer``.

    Args:
        tokenizer: a trained ``tokenizers.Tokenizer`` with ``<eos>`` as a special token.

    Attributes:
        vocab: token strings by id, in the byte-level alphabet (``"Ġthe"`` is " the").
        eos_id (0 when trained here), kind (``"bpe"``), backend (the wrapped tokenizer).
    """

    kind = "bpe"

    def __init__(self, tokenizer: Any) -> None:
        eos = tokenizer.token_to_id(EOS)
        if eos is None:
            raise ValueError(f"BPETokenizer: the tokenizer has no {EOS!r} token")
        tokenizer.encode_special_tokens = True  # text is read literally; encode(special=True) splits at "<eos>"
        self.backend, self.eos_id = tokenizer, int(eos)
        self._special = re.compile(f"({re.escape(EOS)})")
        self.vocab: list[str] = [tokenizer.id_to_token(i) for i in range(tokenizer.get_vocab_size())]

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int) -> BPETokenizer:
        """Train on ``texts`` (deterministic for the same texts and size).

        Raises:
            polydiff.ConfigError: ``vocab_size`` below 257 (the 256 bytes and ``<eos>``).
        """
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if not (isinstance(vocab_size, int) and vocab_size > BYTE_ALPHABET):
            raise polydiff.ConfigError(f"modality 'text': vocab_size = {vocab_size!r} is not allowed; byte-level "
                                       f"BPE needs an integer > {BYTE_ALPHABET} (the bytes and {EOS})")
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        backend.train_from_iterator(list(texts), trainer=trainer, length=len(texts))
        return cls(backend)

    @classmethod
    def from_file(cls, path: str | Path) -> BPETokenizer:
        """Read a tokenizer saved by :meth:`save` (a Hugging Face ``tokenizer.json``)."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    @property
    def vocab_size(self) -> int:
        """V: every id, ``<eos>`` included (at most the trained ``vocab_size``)."""
        return len(self.vocab)

    def encode(self, text: str, *, special: bool = False) -> np.ndarray:
        """Ids int64 of ``text`` (``special``: the string ``"<eos>"`` as the eos id)."""
        pieces = self._special.split(text) if special else [text]
        ids = [[self.eos_id] if special and p == EOS else self.backend.encode(p, add_special_tokens=False).ids
               for p in pieces if p]
        return np.asarray([i for part in ids for i in part], dtype=np.int64)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """``[encode(t) for t in texts]``, in parallel threads (texts read literally)."""
        return [np.asarray(e.ids, dtype=np.int64)
                for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of ``ids`` (``<eos>`` written as ``"<eos>"``; bytes that do not form UTF-8
        become U+FFFD).

        Raises:
            ValueError: an id outside ``[0, vocab_size)``.
        """
        return self.backend.decode(_check_ids(ids, self.vocab_size, "BPETokenizer.decode"),
                                   skip_special_tokens=False)

    def chars_per_token(self, text: str) -> float:
        """Characters per token of ``text``."""
        return chars_per_token(self, text)

    def save(self, path: str | Path) -> Path:
        """Write the Hugging Face ``tokenizer.json`` form to ``path`` (atomically) and return it."""
        return _atomic_write_text(Path(path), self.backend.to_str(pretty=True))


def load_tokenizer(path: str | Path) -> CharTokenizer | BPETokenizer:
    """Read a tokenizer saved by either class's ``save``.

    Raises:
        polydiff.CheckpointError: the file is missing or is neither format (file named).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise polydiff.CheckpointError(f"tokenizer file {path}: cannot be read as JSON ({exc})") from None
    if data.get(FORMAT_KEY) == CharTokenizer.kind and isinstance(data.get("vocab"), list):
        vocab = data["vocab"]
        if vocab[:2] != [EOS, UNK]:
            raise polydiff.CheckpointError(f"tokenizer file {path}: a char vocabulary must start with {EOS}, {UNK}")
        return CharTokenizer(vocab[2:])
    if isinstance(data.get("model"), dict) and data["model"].get("type") == "BPE":
        return BPETokenizer.from_file(path)
    raise polydiff.CheckpointError(f"tokenizer file {path}: neither a char tokenizer ({FORMAT_KEY!r} key) "
                                   f"nor a Hugging Face BPE tokenizer.json")


def cache_dir() -> Path:
    """``$POLYDIFF_CACHE/tokenizers`` (default ``~/.cache/polydiff/tokenizers``)."""
    return polydiff.cache_dir("tokenizers")


def corpus_key(texts: Sequence[str], **settings: Any) -> str:
    """SHA-256 of the texts (length-prefixed, so boundaries count) and the settings."""
    import tokenizers

    h = hashlib.sha256(json.dumps({"settings": settings, "tokenizers": tokenizers.__version__},
                                  sort_keys=True).encode())
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def train_bpe_cached(texts: Sequence[str], vocab_size: int) -> BPETokenizer:
    """:meth:`BPETokenizer.train`, cached as ``bpe-<vocab_size>-<key>.json`` in :func:`cache_dir`
    (key: :func:`corpus_key` of the texts and settings); an unreadable cache file is re-trained."""
    path = cache_dir() / f"bpe-{vocab_size}-{corpus_key(texts, kind='bpe', vocab_size=vocab_size)[:20]}.json"
    if path.is_file():
        try:
            return BPETokenizer.from_file(path)
        except Exception:  # a damaged cache file (tokenizers raises its own Exception type): train again
            pass
    tokenizer = BPETokenizer.train(texts, vocab_size)
    tokenizer.save(path)
    return tokenizer


def encode_documents_cached(tokenizer: BPETokenizer, texts: Sequence[str]) -> list[np.ndarray]:
    """``tokenizer.encode_batch(texts)``, cached in :func:`cache_dir` as ``ids-<key>.npz`` (the
    ids of all texts concatenated, and their lengths; key: the tokenizer's JSON and the texts),
    because encoding millions of characters takes seconds; an unreadable cache file is redone."""
    key = corpus_key(texts, kind="ids", tokenizer=hashlib.sha256(tokenizer.backend.to_str().encode()).hexdigest())
    path = cache_dir() / f"ids-{key[:20]}.npz"
    if path.is_file():
        try:
            with np.load(path) as data:
                ids, lengths = data["ids"].astype(np.int64), data["lengths"]
            if len(lengths) == len(texts) and int(lengths.sum()) == len(ids):
                return np.split(ids, np.cumsum(lengths)[:-1]) if len(texts) else []
        except (OSError, ValueError, KeyError):
            pass
    out = tokenizer.encode_batch(texts)
    lengths = np.array([len(a) for a in out], dtype=np.int64)
    ids = np.concatenate(out).astype(np.uint32) if out else np.zeros(0, np.uint32)
    def save(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # a file object: np.savez would append ".npz" to a path
            np.savez(fh, ids=ids, lengths=lengths)

    polydiff.write_atomic(path, save)
    return out


def _atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    return polydiff.write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
