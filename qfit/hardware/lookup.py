"""Forgiving accelerator names: "A6000", "rtx a6000", "NVIDIA RTX A6000", "M3 Max 96GB", "a100-80gb" -> catalog
entries. Pure string handling over the catalog (the spelling index is cached on disk with the records it derives from).
The host CPU is not here: qfit.resolve measures it when `cpu` is asked for.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from qfit.errors import QfitError
from qfit.hardware.catalog import gpu_dir, load_catalog
from qfit.hardware.device import Accelerator
from qfit.yamlcache import cached, load_records

HOST_NAMES = frozenset({"cpu", "host", "host cpu"})

# Words that carry no identity ("NVIDIA GeForce RTX 4090" == "RTX 4090"): vendor and brand words, and "Edition"
# (nvidia-smi says "RTX PRO 6000 Blackwell Workstation Edition"; "Founders Edition" is NVIDIA's own board). Not noise:
# "Laptop", "Mobile", "D", "Max-Q" (other silicon or other clocks) and "Quadro" ("Quadro RTX 6000" is a 2018 Turing card,
# "RTX 6000" alone is ambiguous with the RTX 6000 Ada and the RTX PRO 6000). Form words separate siblings of one family.
_NOISE = {"nvidia", "geforce", "tesla", "amd", "instinct", "radeon", "intel", "apple", "gpu", "graphics", "card",
          "edition", "founders"}
_FORMS = {"sxm", "pcie", "nvl", "oam", "workstation", "server"}
# Memory-type words after a size (nvidia-smi: "NVIDIA H100 80GB HBM3") are dropped when a name is read as family + size,
# not from exact spellings: "GH200 HBM3" and "GH200 HBM3e" are two catalogued devices.
_MEMORY_TYPES = {"hbm2", "hbm2e", "hbm3", "hbm3e", "gddr6", "gddr6x", "gddr7", "lpddr5", "lpddr5x"}
# "Intel(R) Arc(TM) B580 Graphics" (what drivers report): trademark marks carry nothing.
_TRADEMARK = re.compile(r"\((?:r|tm|c)\)|[\u00ae\u2122\u00a9]", re.IGNORECASE)
# A product named with its GPU or its board: "Ryzen AI Max+ 395 (Radeon 8060S)", "Ryzen AI Max+ 395 w/ Radeon 8060S".
_BRACKETS = re.compile(r"\(([^()]*)\)")
_WITH = re.compile(r"\s+(?:w/|with)\s+", re.IGNORECASE)
_MEM_RE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s*(?:gb|gib|g)\b")
_CORES_RE = re.compile(r"(?<![a-z0-9.])(\d+)\s*-?\s*(?:c|cores?)\b")


_RULES = (sorted(_NOISE), sorted(_FORMS), sorted(_MEMORY_TYPES), _MEM_RE.pattern, _CORES_RE.pattern)
_RULES_TAG = f"{zlib.crc32(repr(_RULES).encode()):08x}"


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
    toks = [t for t in _tokens(rest) if t not in _MEMORY_TYPES]
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
    # The index also depends on the rules above: their fingerprint names the cache file, so new rules rebuild it.
    data = cached(path, "*.yaml", lambda files: _build_index(load_records(path)), kind=f"index-{_RULES_TAG}")
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
    A name with a bracketed or "w/" part ("Ryzen AI Max+ 395 (Radeon 8060S)") that does not resolve whole resolves by
    its parts, which must not name two different devices.
    """
    text = " ".join(p for p in (str(name or "").strip(), str(variant or "").strip()) if p)
    text = " ".join(_TRADEMARK.sub(" ", text).split())
    if not text:
        raise QfitError("empty accelerator name; run `qfit gpus` for the catalog")
    if text.lower() in HOST_NAMES:
        raise QfitError(f"{text!r} is the host CPU: resolve it with qfit.resolve.accelerator (it measures this machine)")
    directory = str(gpu_dir())
    accs, idx = load_catalog(directory), _index(directory)
    try:
        return _resolve(text, accs, idx)
    except QfitError:
        found = _by_parts(text, accs, idx)
        if found is None:
            raise
        return found


def _by_parts(text: str, accs: dict[str, Accelerator], idx: _Index) -> Accelerator | None:
    """The device a "product (GPU)" / "product w/ GPU" name means, when its parts agree; None when no part resolves."""
    parts = [p.strip() for p in (*_WITH.split(_BRACKETS.sub(" ", text)), *_BRACKETS.findall(text)) if p.strip()]
    if len(parts) < 2:
        return None
    low = text.lower()  # a size or core count anywhere ("(40-core GPU)", "(96GB)") still picks the configuration
    sizes = " ".join(m.group(0) for rx in (_MEM_RE, _CORES_RE) for m in rx.finditer(low))
    resolved: dict[str, Accelerator] = {}
    for part in parts:
        try:
            acc = _resolve(f"{part} {sizes}".strip(), accs, idx)
        except QfitError:
            continue
        resolved.setdefault(acc.key, acc)
    if len(resolved) > 1:
        names = " and ".join(a.short_name for a in resolved.values())
        raise QfitError(f"{text!r} names two different devices ({names}); pass one of them")
    return next(iter(resolved.values()), None)


def _resolve(text: str, accs: dict[str, Accelerator], idx: _Index) -> Accelerator:
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

    query = compact(text)
    close = difflib.get_close_matches(query, list(idx.exact), n=12, cutoff=0.6)
    # A model number is the part people get right: "RTX 6000" suggests the 6000s before the "RTX 8000".
    numbers = re.findall(r"\d+", query)
    close.sort(key=lambda c: not all(n in c for n in numbers))
    names: list[str] = []
    for c in close:
        n = accs[idx.exact[c]].short_name
        if n not in names:
            names.append(n)
    hint = f"; did you mean: {', '.join(names[:3])}?" if names else "; run `qfit gpus` for the catalog"
    return f"unknown accelerator {text!r}{hint}"


