"""Where the reviewed data (profiles/) lives: repository root in a checkout, qfit/_profiles in a wheel."""

from __future__ import annotations

import os
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


def overlay_dir() -> Path:
    """Where `qfit calibrate` writes, and the planner reads, per-engine speed overlays (never the repo's profiles)."""
    root = os.environ.get("QFIT_CONFIG_DIR")
    return (Path(root) if root else Path.home() / ".config" / "qfit") / "engines"
