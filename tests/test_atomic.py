"""One helper for atomic writes, one module for paths: a file appears whole or not at all, nothing is overwritten
without --force, names from users and the hub become safe file names."""

from __future__ import annotations

from pathlib import Path

import pytest

from qfit import paths
from qfit.atomic import publish_dir, write_json, write_text, write_with
from qfit.errors import QfitError


def test_write_replaces_in_one_step_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_refuses_to_overwrite_without_force(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(QfitError, match="exists; pass --force"):
        write_json(target, {"a": 2}, overwrite=False)
    assert target.read_text() == '{\n  "a": 1\n}\n'


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_with(target, broken, suffix=".png")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_publish_dir_keeps_one_of_old_or_new(tmp_path):
    out, new = tmp_path / "ckpt", tmp_path / "ckpt.tmp-1"
    out.mkdir()
    (out / "old").write_text("x")
    new.mkdir()
    (new / "new").write_text("y")
    with pytest.raises(QfitError, match="--force"):
        publish_dir(new, out, force=False)
    publish_dir(new, out, force=True)
    assert [p.name for p in out.iterdir()] == ["new"] and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_one_cache_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("QFIT_CACHE", str(tmp_path))
    assert paths.cache_dir("hub", "x") == tmp_path / "hub" / "x"
    monkeypatch.delenv("QFIT_CACHE")
    assert paths.cache_dir() == Path.home() / ".cache" / "qfit"
    monkeypatch.setenv("QFIT_CONFIG_DIR", str(tmp_path / "cfg"))
    assert paths.overlay_dir() == tmp_path / "cfg" / "engines"


@pytest.mark.parametrize("name,safe", [
    ("Qwen/Qwen2.5-72B-Instruct", "Qwen--Qwen2.5-72B-Instruct"), ("../../etc/passwd", "etc--passwd"),
    ("a b:c", "a-b-c"), ("...", "unnamed"),
])
def test_names_that_become_file_names_are_sanitised(name, safe):
    assert paths.safe_name(name) == safe
