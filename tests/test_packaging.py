"""The wheel ships every qfit package and every profiles/ folder (packages are listed by hand in pyproject.toml
because profiles/ is mapped to qfit/_profiles; a forgotten entry would install a planner without its catalog)."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package_and_profile_folder():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    code = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "qfit").rglob("__init__.py")}
    data = {"qfit._profiles" + "".join("." + part for part in d.relative_to(ROOT / "profiles").parts)
            for d in [ROOT / "profiles", *(p for p in (ROOT / "profiles").rglob("*") if p.is_dir())]
            if d.name != "__pycache__"}
    assert code | data == listed
