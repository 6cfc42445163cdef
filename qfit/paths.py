"""Every folder qfit reads from or writes to, decided here and nowhere else.

- reviewed data: profiles/ at the repository root in a checkout, qfit/_profiles in a wheel ($QFIT_PROFILES overrides);
- the cache: $QFIT_CACHE, else ~/.cache/qfit. It holds the parsed-profile JSON caches, hub metadata (hub/), GGUF
  files converted to float folders (gguf/), the host CPU's measured bandwidth (host.json) and compiled extensions
  (torch_extensions/, torchinductor/). Everything in it can be deleted: it is rebuilt on demand;
- the user's configuration: $QFIT_CONFIG_DIR, else ~/.config/qfit. `qfit calibrate` writes its overlays under
  engines/ there; the repository's profiles are never edited.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def profiles_dir() -> Path:
    env = os.environ.get("QFIT_PROFILES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "profiles", here / "_profiles"):
        if (candidate / "gpus").is_dir():
            return candidate
    return here.parent / "profiles"


def cache_dir(*parts: str) -> Path:
    """A folder (or file) inside qfit's cache; read at call time so tests and users can point it elsewhere."""
    root = os.environ.get("QFIT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "qfit").joinpath(*parts)


def config_dir(*parts: str) -> Path:
    root = os.environ.get("QFIT_CONFIG_DIR")
    return (Path(root) if root else Path.home() / ".config" / "qfit").joinpath(*parts)


def overlay_dir() -> Path:
    """Where `qfit calibrate` writes, and the planner reads, per-engine speed overlays."""
    return config_dir("engines")


def safe_name(text: str) -> str:
    """A name that came from the user or the hub, made safe as one path component ("org/model" -> "org--model")."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text.replace("/", "--")).strip(".-")
    return name[:200] or "unnamed"
