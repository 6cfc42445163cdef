"""Atomic writes: a file or folder appears complete under its name, or not at all.

Every writer in qfit goes through here. Data is written to a hidden temporary sibling (same folder, so the final
os.replace is a rename on one file system) and renamed into place; a crash leaves at most a `.NAME.tmp-PID` file that
the next write of that name ignores. `overwrite=False` refuses to replace an existing file with a one-line error.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from qfit.errors import QfitError


def temp_sibling(path: Path, suffix: str = "") -> Path:
    """A hidden temporary name next to `path`; `suffix` keeps an extension writers look at (matplotlib's .png)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


def refuse_existing(path: Path) -> None:
    check_writable(path)
    if path.exists():
        raise QfitError(f"{path} exists; pass --force to overwrite")


def refuse_overlap(output: Path, inputs: list[Path | str]) -> None:
    """Nothing the user owns is lost: an output may not be an input, sit inside an input folder, or be a folder that
    holds an input (which --force would replace)."""
    out = Path(output).expanduser().resolve()
    for item in inputs:
        src = Path(item).expanduser()
        if not src.exists():
            continue
        src = src.resolve()
        if out == src or src in out.parents:
            raise QfitError(f"refusing to write {out}: it is {'the input' if out == src else 'inside the input'} {src}")
        if out in src.parents:
            raise QfitError(f"refusing to write {out}: the input {src} is inside it")


def check_writable(path: Path) -> None:
    """Before long work: the folder a result will be written to exists and is writable, and the name fits."""
    path = Path(path).expanduser()
    parent = path.parent if str(path.parent) else Path(".")
    if len(path.name.encode()) > 255:
        raise QfitError(f"cannot write {path.name[:40]}...: file name longer than 255 bytes")
    if not parent.is_dir():
        raise QfitError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise QfitError(f"cannot write {path}: folder {parent} is not writable")


def write_with(path: str | Path, writer: Callable[[Path], None], *, overwrite: bool = True, suffix: str = "",
               mkdir: bool = False) -> Path:
    """writer(tmp) fills a temporary sibling; it then replaces `path` in one rename (removed on any failure)."""
    path = Path(path)
    if mkdir:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QfitError(f"cannot create folder {path.parent}: {exc.strerror or exc}") from None
    if not overwrite:
        refuse_existing(path)
    tmp = temp_sibling(path, suffix)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except OSError as exc:       # read-only folder, name too long, disk full: one line, nothing half-written
        raise QfitError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text(path: str | Path, text: str, *, overwrite: bool = True, mkdir: bool = False) -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite, mkdir=mkdir)


def write_json(path: str | Path, data, *, overwrite: bool = True, mkdir: bool = False, indent: int | None = 2) -> Path:
    text = json.dumps(data, indent=indent, default=str) + "\n"
    return write_text(path, text, overwrite=overwrite, mkdir=mkdir)


def write_report_pair(out: Path, json_name: str, md_name: str, data, markdown: str, force: bool) -> list[Path]:
    """A command's `--out DIR` report: DIR/json_name and DIR/md_name, both refused up front when either exists and
    not `force` (so a refusal writes nothing)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / json_name, out / md_name]
    if not force:
        for p in paths:
            refuse_existing(p)
    write_json(paths[0], data)
    write_text(paths[1], markdown)
    return paths


def try_write_json(path: Path, data) -> bool:
    """Best effort (caches): False instead of an error when the folder is read-only or the disk is full."""
    try:
        write_json(path, data, mkdir=True, indent=None)
        return True
    except OSError:
        return False


def publish_dir(tmp: Path, out: Path, force: bool) -> None:
    """Move a finished temporary folder into place. With force an existing OUT is moved aside first and removed only
    after the new one is in place, so a crash never leaves neither."""
    old = None
    if out.exists():
        if not force:
            raise QfitError(f"{out} already exists: pass --force to replace it")
        old = out.with_name(f"{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
