"""What the user typed for a model, classified once for every command: an existing folder (or its config.json), a
.gguf file, a catalog name or alias, or a hub id. No network: a hub id is only recognised here; fetching metadata
(qfit plan) or weights (qfit quantize / profile) happens in the sources that need it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from qfit.errors import QfitError
from qfit.paths import profiles_dir
from qfit.yamlcache import cached

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelRef:
    kind: str                  # folder | gguf | catalog | hub
    location: str              # folder or file path, catalog file, or hub id


def _build_index(files: list[Path]) -> dict[str, str]:
    index: dict[str, str] = {}
    for path in files:
        entry = json.loads(path.read_text())
        keys = [path.stem, entry.get("name"), entry.get("hub_id"), *(entry.get("aliases") or [])]
        for key in filter(None, keys):
            index[key.lower()] = path.name
            if "/" in key:
                index.setdefault(key.split("/", 1)[1].lower(), path.name)
    return index


@lru_cache(maxsize=1)
def catalog_index() -> dict[str, Path]:
    """Lower-cased name / slug / hub id / alias -> catalog file (index cached on disk until an entry changes)."""
    folder = profiles_dir() / "models"
    return {key: folder / name for key, name in cached(folder, "*.json", _build_index, kind="index").items()}


def model_ref(text: str | Path) -> ModelRef:
    """Classify --model / MODEL; one-line errors for missing paths and names that are nothing qfit knows."""
    text = str(text or "").strip()
    if not text:
        raise QfitError("--model is empty")
    path = Path(text).expanduser()
    if len(path.name.encode()) > 255:
        raise QfitError(f"model {text[:40]}...: a file name longer than 255 bytes is no model")
    if path.exists():
        if path.is_dir():
            return ModelRef("folder", str(path))
        if path.suffix.lower() == ".gguf":
            return ModelRef("gguf", str(path))
        if path.name == "config.json":
            return ModelRef("folder", str(path.parent))
        raise QfitError(f"{text} is a file but not a .gguf: expected a model folder, a config.json or a .gguf file")
    entry = catalog_index().get(text.lower())
    if entry is not None:
        return ModelRef("catalog", str(entry))
    if text.lower().endswith(".gguf") or text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1:
        raise QfitError(f"model {text} does not exist (no such file or folder)")
    if HUB_ID.match(text):
        return ModelRef("hub", text)
    raise QfitError(f"unknown model {text!r}: not a local path, a catalog name or a hub id (org/name); "
                    f"{_suggest(text)}")


def _suggest(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name.lower(), list(catalog_index()), n=3, cutoff=0.5)
    return f"did you mean: {', '.join(close)}?" if close else "see `qfit models`"
