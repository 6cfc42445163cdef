"""Reviewed profile files, read through a JSON cache so the planner starts fast.

Parsing ~90 YAML files costs ~120 ms and importing PyYAML more; reading every catalog JSON to index its aliases costs
tens of ms. The cache (qfit.paths.cache_dir: <dir>-<kind>-<crc>.json) holds the parsed (and validated) result keyed
by every file's name, size and mtime, so editing a profile invalidates it. JSON only (no pickle). A missing, stale or unreadable cache
just means the files are read again; a read-only home means no cache.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Callable

from qfit.atomic import try_write_json
from qfit.errors import QfitError
from qfit.paths import cache_dir


def read_yaml_files(files: list[Path]) -> dict[str, dict]:
    import yaml  # only on a cache miss

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    records = {}
    for path in files:
        try:
            with open(path, encoding="utf-8") as fh:
                records[path.stem] = yaml.load(fh, Loader=loader)
        except yaml.YAMLError as exc:
            raise QfitError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from None
    return records


def _cache_path(directory: Path, kind: str) -> Path:
    # one cache file per profile directory, so two checkouts do not keep invalidating each other
    tag = f"{zlib.crc32(str(directory.resolve()).encode()):08x}"
    return cache_dir(f"{directory.name}-{kind}-{tag}.json")


def cached(directory: Path, pattern: str, build: Callable[[list[Path]], dict], kind: str = "records") -> dict:
    """build(files) for the files matching `pattern`, memoised on disk until any of them changes."""
    files = sorted(directory.glob(pattern))
    signature = [str(directory.resolve())] + [[p.name, st.st_size, st.st_mtime_ns] for p in files for st in [p.stat()]]
    cache = _cache_path(directory, kind)
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data.get("signature") == signature:
            return data["value"]
    except (OSError, ValueError, AttributeError):
        pass
    value = build(files)
    try_write_json(cache, {"signature": signature, "value": value})   # best effort: a read-only home means no cache
    return value


def load_records(directory: Path, validate: Callable[[dict, str], None] | None = None) -> dict[str, dict]:
    """{file stem: parsed YAML} for every *.yaml in `directory`; `validate(record, stem)` runs on a cache miss only
    (a cached result was validated when it was written) and raises to refuse a bad profile."""

    def build(files: list[Path]) -> dict:
        records = read_yaml_files(files)
        if validate:
            for stem, record in records.items():
                validate(record, stem)
        return records

    return cached(directory, "*.yaml", build)
