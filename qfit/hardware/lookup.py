"""Forgiving accelerator names: "A6000", "rtx a6000", "NVIDIA RTX A6000", "M3 Max 96GB", "a100-80gb" -> catalog
entries. Pure string handling over the catalog (the spelling index is cached on disk with the records it derives from).
The host CPU is not here: qfit.resolve measures it when `cpu` is asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from qfit.errors import QfitError
from qfit.hardware.catalog import gpu_dir, load_catalog
from qfit.hardware.device import Accelerator
from qfit.yamlcache import cached, load_records

HOST_NAMES = frozenset({"cpu", "host", "host cpu"})

# Words that carry no identity ("NVIDIA GeForce RTX 4090" == "RTX 4090"); form words separate siblings of one family.
_NOISE = {"nvidia", "geforce", "tesla", "amd", "instinct", "radeon", "intel", "apple", "quadro", "gpu", "graphics", "card"}
_FORMS = {"sxm", "pcie", "nvl", "oam", "workstation", "server", "edition"}
_MEM_RE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s*(?:gb|gib|g)\b")
_CORES_RE = re.compile(r"(?<![a-z0-9.])(\d+)\s*-?\s*(?:c|cores?)\b")


def _tokens(text: str) -> list[str]:
    toks = [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t and t not in _NOISE]
    return ["sxm" if re.fullmatch(r"sxm\d?", t) else t for t in toks]


def compact(text: str) -> str:
    return "".join(_tokens(text))


@dataclass(frozen=True)
class _Query:
    memory_gib: float | None
    cores: int | None
    forms: frozenset
    family: str  # compact text without memory, core count and form words


def _parse(text: str) -> _Query:
    low = text.lower()
    mem = _MEM_RE.search(low)
    cores = _CORES_RE.search(low)
    rest = _CORES_RE.sub(" ", _MEM_RE.sub(" ", low))
    toks = _tokens(rest)
    return _Query(float(mem.group(1)) if mem else None, int(cores.group(1)) if cores else None,
                  frozenset(t for t in toks if t in _FORMS), "".join(t for t in toks if t not in _FORMS))


@dataclass(frozen=True)
class _Index:
    exact: dict  # compact spelling -> key
    families: dict  # key -> set of family strings
    forms: dict  # key -> set of form words in its name/key


def _build_index(records: dict[str, dict]) -> dict:
    """JSON-friendly lookup index from the raw records (spellings only: no Accelerator objects needed)."""
    exact: dict[str, str] = {}
    derived: dict[str, str] = {}
    families: dict[str, list] = {}
    forms: dict[str, list] = {}
    for key, rec in records.items():
        spellings = (key, rec["name"], *(rec.get("aliases") or []))
        for s in spellings:
            c = compact(str(s))
            exact.setdefault(c, key)
            if c.startswith("rtx"):  # "a6000" for "RTX A6000", "4090" for "RTX 4090"
                derived.setdefault(c[3:], key)
        families[key] = sorted({_parse(str(s)).family for s in spellings})
        forms[key] = sorted(_parse(rec["name"]).forms | _parse(key.replace("-", " ")).forms)
    for c, key in derived.items():
        exact.setdefault(c, key)
    return {"exact": exact, "families": families, "forms": forms}


@lru_cache(maxsize=4)
def _index(directory: str) -> _Index:
    # Parsing ~650 spellings costs ~30 ms: the index is cached on disk with the records it derives from.
    path = Path(directory)
    data = cached(path, "*.yaml", lambda files: _build_index(load_records(path)), kind="index")
    return _Index(data["exact"], {k: set(v) for k, v in data["families"].items()},
                  {k: set(v) for k, v in data["forms"].items()})


def _fits(acc: Accelerator, q: _Query) -> bool:
    if q.memory_gib is not None and not any(abs(m - q.memory_gib) < 0.5 for m in acc.memory_options_gib):
        return False
    return q.cores is None or q.cores in acc.gpu_cores


def _select(acc: Accelerator, q: _Query) -> Accelerator:
    if q.memory_gib is not None and acc.is_unified and abs(acc.memory_gib - q.memory_gib) >= 0.5:
        return acc.with_memory(q.memory_gib)
    return acc


def get_accelerator(name: str, variant: str | None = None) -> Accelerator:
    """Resolve a user or calibration spelling ("A6000", "a100-80gb", "M3 Max 96GB", "Apple M3 Max" + "30-core GPU").

    Order: exact spelling; then family + memory size / GPU-core count / form word (SXM, PCIe, NVL) constraints; ties
    go to the device that owns the bare family name (documented defaults: "A100" -> A100 80GB SXM4, "H100" -> H100 SXM,
    "M3 Max" -> the 40-core part), then to its form factor. A memory size picks that configuration of a unified part.
    """
    text = " ".join(p for p in (str(name or "").strip(), str(variant or "").strip()) if p)
    if not text:
        raise QfitError("empty accelerator name; run `qfit gpus` for the catalog")
    if text.lower() in HOST_NAMES:
        raise QfitError(f"{text!r} is the host CPU: resolve it with qfit.resolve.accelerator (it measures this machine)")
    directory = str(gpu_dir())
    accs, idx = load_catalog(directory), _index(directory)
    q = _parse(text)
    key = idx.exact.get(compact(text))
    if key:  # a listed spelling names its device even when its label differs ("GH200 144GB" is 141 GiB addressable)
        return _select(accs[key], q)
    family = [k for k, fams in idx.families.items() if q.family in fams]
    if q.forms:
        family = [k for k in family if q.forms <= idx.forms[k]]
    matches = [k for k in family if _fits(accs[k], q)]
    if not matches:
        if family:
            raise QfitError(_no_config_message(text, [accs[k] for k in family]))
        raise QfitError(_unknown_message(text, accs, idx))
    owner = idx.exact.get(q.family)
    if owner in matches:
        chosen = owner
    else:
        same_form = [k for k in matches if owner and idx.forms[k] == idx.forms[owner]]
        chosen = (same_form or matches)[0]
    return _select(accs[chosen], q)


def _no_config_message(text: str, family: list[Accelerator]) -> str:
    listing = ", ".join(f"{a.short_name} ({'/'.join(f'{m:g}' for m in a.memory_options_gib)} GB)" for a in family[:8])
    return f"no catalogued configuration matches {text!r}; available: {listing}"


def _unknown_message(text: str, accs: dict[str, Accelerator], idx: _Index) -> str:
    import difflib  # only on the error path: keeps `import qfit.hardware` light

    close = difflib.get_close_matches(compact(text), list(idx.exact), n=12, cutoff=0.6)
    names: list[str] = []
    for c in close:
        n = accs[idx.exact[c]].short_name
        if n not in names:
            names.append(n)
    hint = f"; did you mean: {', '.join(names[:3])}?" if names else "; run `qfit gpus` for the catalog"
    return f"unknown accelerator {text!r}{hint}"


