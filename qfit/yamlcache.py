"""Reviewed YAML profiles, read through a JSON cache so the planner starts fast.

Parsing ~90 YAML files costs ~120 ms and importing PyYAML more; the cache (~/.cache/qfit/<dir>-<crc>.json) is keyed by
every file's name, size and mtime, so editing a profile invalidates it. JSON only (no pickle). A missing, stale or
unreadable cache just means the YAML is parsed again; a read-only home means no cache.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

from qfit.errors import QfitError


def _read_records(files: list[Path]) -> dict[str, dict]:
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


def _cache_path(directory: Path) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    # one cache file per profile directory, so two checkouts do not keep invalidating each other
    tag = f"{zlib.crc32(str(directory.resolve()).encode()):08x}"
    return Path(base) / "qfit" / f"{directory.name}-{tag}.json"


def load_records(directory: Path) -> dict[str, dict]:
    """{file stem: parsed YAML} for every *.yaml in `directory`."""
    files = sorted(directory.glob("*.yaml"))
    signature = [str(directory.resolve())] + [[p.name, st.st_size, st.st_mtime_ns] for p in files for st in [p.stat()]]
    cache = _cache_path(directory)
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("signature") == signature:
            return cached["records"]
    except (OSError, ValueError, AttributeError):
        pass
    records = _read_records(files)
    try:  # best effort, written atomically
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"signature": signature, "records": records}, default=str), encoding="utf-8")
        os.replace(tmp, cache)
    except OSError:
        pass
    return records
