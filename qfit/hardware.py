"""The accelerator catalog: an `Accelerator` dataclass, the loader for profiles/gpus/*.yaml and a forgiving lookup.

Pure data and string handling: no torch, no numpy. Loading all files takes a few milliseconds (C YAML parser when
available, plus a JSON cache in ~/.cache/qfit keyed by file names, sizes and mtimes) so `qfit plan` starts fast.
Every figure in the YAML carries a source (see profiles/gpus/README.md); this module only reads and validates them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from qfit.errors import QfitError
from qfit.paths import profiles_dir
from qfit.yamlcache import cached, load_records

TFLOPS_KEYS = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp4")
VENDORS = ("nvidia", "amd", "intel", "apple", "cpu")
SEGMENTS = ("datacenter", "workstation", "consumer", "unified", "cpu")
REQUIRED = ("key", "name", "aliases", "vendor", "family", "segment", "memory_gib", "bandwidth_gbps", "tflops",
            "interconnect", "sources")
# Figures that must be covered by an entry in `sources` whenever they are present (non-null).
SOURCED = ("memory_gib", "bandwidth_gbps", "tflops", "interconnect", "tdp_w", "rack_units")
# BF16 and FP16 run at the same tensor rate on every catalogued part that has both; where one is unknown (or the part
# lacks BF16 and engines cast to FP16, as vLLM does on V100/T4) the other is the honest stand-in. Nothing else falls back.
_FALLBACK = {"fp16": "bf16", "bf16": "fp16"}


@dataclass(frozen=True)
class Tflops:
    """Dense peak throughput (no sparsity) in TFLOPS / TOPS; None = unknown or unsupported."""

    fp32: float | None = None
    tf32: float | None = None
    bf16: float | None = None
    fp16: float | None = None
    fp8: float | None = None
    int8: float | None = None
    int4: float | None = None
    fp4: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {k: getattr(self, k) for k in TFLOPS_KEYS}


@dataclass(frozen=True)
class Interconnect:
    kind: str
    bandwidth_gbps: float | None  # per GPU, per direction, GPU<->GPU (decimal GB/s)
    max_gpus: int  # largest scale-up (tensor-parallel) domain

    def to_dict(self) -> dict:
        return {"kind": self.kind, "bandwidth_gbps": self.bandwidth_gbps, "max_gpus": self.max_gpus}


@dataclass(frozen=True)
class Price:
    value: float
    source: str
    date: str

    def to_dict(self) -> dict:
        return {"value": self.value, "source": self.source, "date": self.date}


@dataclass(frozen=True)
class Accelerator:
    key: str
    name: str
    aliases: tuple[str, ...]
    vendor: str
    family: str
    segment: str
    memory_gib: float  # capacity of this configuration (vendor "GB" for GDDR/HBM is binary)
    memory_type: str | None
    memory_options_gib: tuple[float, ...]
    usable_memory_fraction: float  # share the GPU may use by default (unified memory); 1.0 for discrete cards
    bandwidth_gbps: float  # decimal GB/s
    tflops: Tflops
    interconnect: Interconnect
    pcie_gen: int | None = None
    pcie_lanes: int | None = None
    tdp_w: float | None = None
    form_factor: str | None = None
    rack_units: float | None = None
    rent: Price | None = None
    list_price: Price | None = None
    sources: tuple[tuple[str, str], ...] = ()
    notes: str = ""
    gpu_cores: tuple[int, ...] = ()
    # (fraction, up_to_gib): smaller unified configurations get a smaller default share (macOS: ~2/3 vs ~3/4)
    small_memory_rule: tuple[float, float] | None = None
    default_usable_fraction: float = 1.0

    @property
    def short_name(self) -> str:
        """Name without the vendor word, as used in suggestions ("RTX A6000", "A40", "M3 Max (40-core GPU)")."""
        for prefix in ("NVIDIA GeForce ", "NVIDIA ", "AMD ", "Intel ", "Apple "):
            if self.name.startswith(prefix):
                return self.name[len(prefix):]
        return self.name

    @property
    def capacity_bytes(self) -> int:
        return int(self.memory_gib * 2**30)

    @property
    def usable_bytes(self) -> int:
        return int(self.memory_gib * 2**30 * self.usable_memory_fraction)

    @property
    def memory_bytes(self) -> int:
        """Bytes the planner may fill: the usable share of the capacity (equal to capacity for discrete cards)."""
        return self.usable_bytes

    @property
    def usable_memory_gib(self) -> float:
        return self.memory_gib * self.usable_memory_fraction

    @property
    def is_unified(self) -> bool:
        return self.segment == "unified"

    @property
    def source_map(self) -> dict[str, str]:
        return dict(self.sources)

    def tflops_for(self, dtype: str) -> float | None:
        """Dense peak for a compute dtype; fp16 <-> bf16 stand in for each other, anything else unknown is None."""
        d = dtype.lower().replace("float", "fp").replace("bfloat", "bf")
        d = {"fp16": "fp16", "half": "fp16", "bf16": "bf16", "tf32": "tf32", "fp32": "fp32", "fp8": "fp8", "int8": "int8",
             "int4": "int4", "fp4": "fp4", "nvfp4": "fp4", "mxfp4": "fp4"}.get(d)
        if d is None:
            raise QfitError(f"unknown compute dtype {dtype!r}; expected one of {', '.join(TFLOPS_KEYS)}")
        value = getattr(self.tflops, d)
        if value is None and d in _FALLBACK:
            value = getattr(self.tflops, _FALLBACK[d])
        return value

    def with_memory(self, gib: float) -> Accelerator:
        """This accelerator in one of its memory configurations (unified parts ship several)."""
        match = [m for m in self.memory_options_gib if abs(m - gib) < 0.5]
        if not match:
            opts = ", ".join(f"{m:g}" for m in self.memory_options_gib)
            raise QfitError(f"{self.short_name} does not ship with {gib:g} GB; options: {opts} GB")
        fraction = _usable_fraction(self.default_usable_fraction, self.small_memory_rule, match[0])
        return replace(self, memory_gib=match[0], usable_memory_fraction=fraction)

    def to_dict(self) -> dict:
        return {
            "key": self.key, "name": self.name, "aliases": list(self.aliases), "vendor": self.vendor,
            "family": self.family, "segment": self.segment, "gpu_cores": list(self.gpu_cores),
            "memory_gib": self.memory_gib, "memory_type": self.memory_type,
            "memory_options_gib": list(self.memory_options_gib),
            "usable_memory_fraction": self.usable_memory_fraction, "usable_memory_gib": round(self.usable_memory_gib, 3),
            "capacity_bytes": self.capacity_bytes, "usable_bytes": self.usable_bytes,
            "bandwidth_gbps": self.bandwidth_gbps, "tflops": self.tflops.to_dict(),
            "interconnect": self.interconnect.to_dict(),
            "pcie": {"gen": self.pcie_gen, "lanes": self.pcie_lanes} if self.pcie_gen else None,
            "tdp_w": self.tdp_w, "form_factor": self.form_factor, "rack_units": self.rack_units,
            "price": {"rent_usd_per_hour": self.rent.to_dict() if self.rent else None,
                      "list_usd": self.list_price.to_dict() if self.list_price else None},
            "sources": self.source_map, "notes": self.notes,
        }


def _usable_fraction(default: float, rule: tuple[float, float] | None, gib: float) -> float:
    if rule and gib <= rule[1]:
        return rule[0]
    return default


# ----------------------------------------------------------------------------------------------- validation / build

def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def validate_record(data: dict, stem: str) -> list[str]:
    """Problems with one parsed YAML record (empty list = valid). Used by the loader and the tests."""
    if not isinstance(data, dict):
        return ["not a mapping"]
    problems = [f"missing field {f!r}" for f in REQUIRED if f not in data]
    if problems:
        return problems
    if data["key"] != stem:
        problems.append(f"key {data['key']!r} does not match the file name {stem!r}")
    if data["vendor"] not in VENDORS:
        problems.append(f"vendor {data['vendor']!r} not in {VENDORS}")
    if data["segment"] not in SEGMENTS:
        problems.append(f"segment {data['segment']!r} not in {SEGMENTS}")
    for f in ("memory_gib", "bandwidth_gbps"):
        if not _positive(data[f]):
            problems.append(f"{f} must be a positive number")
    frac = data.get("usable_memory_fraction", 1.0)
    if not (_positive(frac) and frac <= 1):
        problems.append("usable_memory_fraction must be in (0, 1]")
    opts = data.get("memory_options_gib") or [data["memory_gib"]]
    if not all(_positive(m) for m in opts) or data["memory_gib"] not in opts:
        problems.append("memory_options_gib must be positive and include memory_gib")
    tf = data["tflops"] or {}
    if set(tf) - set(TFLOPS_KEYS):
        problems.append(f"unknown tflops keys {sorted(set(tf) - set(TFLOPS_KEYS))}")
    problems += [f"tflops.{k} must be positive or null" for k, v in tf.items() if v is not None and not _positive(v)]
    ic = data["interconnect"] or {}
    if not ic.get("kind") or not _positive(ic.get("max_gpus")) or (
            ic.get("bandwidth_gbps") is not None and not _positive(ic["bandwidth_gbps"])):
        problems.append("interconnect needs kind, positive max_gpus and a positive or null bandwidth_gbps")
    for f in ("tdp_w", "rack_units"):
        if data.get(f) is not None and not _positive(data[f]):
            problems.append(f"{f} must be positive or null")
    problems += _source_problems(data)
    for kind, p in (data.get("price") or {}).items():
        if p is not None and not (_positive(p.get("value")) and p.get("source") and p.get("date")):
            problems.append(f"price.{kind} needs a positive value, a source and a date")
    return problems


def _source_problems(data: dict) -> list[str]:
    sources = data.get("sources") or {}
    problems = [f"empty source for {k!r}" for k, v in sources.items() if not (isinstance(v, str) and v.strip())]
    needed = [f for f in SOURCED if data.get(f) is not None]  # tflops is always present: even all-null needs a why
    if data.get("usable_memory_fraction", 1.0) != 1.0:
        needed.append("usable_memory_fraction")
    if len(data.get("memory_options_gib") or []) > 1:
        needed.append("memory_options_gib")
    return problems + [f"no source for {f!r}" for f in needed if f not in sources]


def _price(p: dict | None) -> Price | None:
    return Price(float(p["value"]), str(p["source"]), str(p["date"])) if p else None


def _build(data: dict) -> Accelerator:
    pcie = data.get("pcie") or {}
    small = data.get("usable_memory_fraction_small")
    rule = (float(small["fraction"]), float(small["up_to_gib"])) if small else None
    default = float(data.get("usable_memory_fraction", 1.0))
    mem = float(data["memory_gib"])
    ic = data["interconnect"]
    price = data.get("price") or {}
    return Accelerator(
        key=data["key"], name=data["name"], aliases=tuple(str(a) for a in data["aliases"]), vendor=data["vendor"],
        family=data["family"], segment=data["segment"], memory_gib=mem, memory_type=data.get("memory_type"),
        memory_options_gib=tuple(float(m) for m in (data.get("memory_options_gib") or [mem])),
        usable_memory_fraction=_usable_fraction(default, rule, mem), bandwidth_gbps=float(data["bandwidth_gbps"]),
        tflops=Tflops(**{k: (None if v is None else float(v)) for k, v in (data["tflops"] or {}).items()}),
        interconnect=Interconnect(str(ic["kind"]), None if ic.get("bandwidth_gbps") is None else float(ic["bandwidth_gbps"]),
                                  int(ic["max_gpus"])),
        pcie_gen=pcie.get("gen"), pcie_lanes=pcie.get("lanes"), tdp_w=data.get("tdp_w"),
        form_factor=data.get("form_factor"), rack_units=data.get("rack_units"),
        rent=_price(price.get("rent_usd_per_hour")), list_price=_price(price.get("list_usd")),
        sources=tuple((str(k), str(v)) for k, v in data["sources"].items()), notes=str(data.get("notes") or ""),
        gpu_cores=tuple(int(c) for c in data.get("gpu_cores") or ()), small_memory_rule=rule, default_usable_fraction=default,
    )


# ----------------------------------------------------------------------------------------------------------- loading

def _gpu_dir() -> Path:
    return profiles_dir() / "gpus"


@lru_cache(maxsize=4)
def _load(directory: str) -> dict[str, Accelerator]:
    path = Path(directory)
    if not path.is_dir():
        raise QfitError(f"accelerator catalog not found at {path}")
    def check(data: dict, stem: str) -> None:
        problems = validate_record(data, stem)
        if problems:
            raise QfitError(f"invalid accelerator profile {path / (stem + '.yaml')}: {'; '.join(problems)}")

    return {stem: _build(data) for stem, data in load_records(path, validate=check).items()}


def load_accelerators() -> dict[str, Accelerator]:
    """All catalogued accelerators by key (cached per process; returns a fresh dict)."""
    return dict(_load(str(_gpu_dir())))


# ------------------------------------------------------------------------------------------------------------ lookup
# Words that carry no identity ("NVIDIA GeForce RTX 4090" == "RTX 4090"); form words separate siblings of one family.
_NOISE = {"nvidia", "geforce", "tesla", "amd", "instinct", "radeon", "intel", "apple", "quadro", "gpu", "graphics", "card"}
_FORMS = {"sxm", "pcie", "nvl", "oam", "workstation", "server", "edition"}
_MEM_RE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s*(?:gb|gib|g)\b")
_CORES_RE = re.compile(r"(?<![a-z0-9.])(\d+)\s*-?\s*(?:c|cores?)\b")
_VENDOR_ORDER = {v: i for i, v in enumerate(VENDORS)}
_SEGMENT_ORDER = {s: i for i, s in enumerate(SEGMENTS)}


def _tokens(text: str) -> list[str]:
    toks = [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t and t not in _NOISE]
    return ["sxm" if re.fullmatch(r"sxm\d?", t) else t for t in toks]


def _compact(text: str) -> str:
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
            c = _compact(str(s))
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
    if text.lower() in {"cpu", "host", "host cpu"}:  # the machine at hand is a device too (qfit/host.py)
        from qfit.host import host_accelerator

        return host_accelerator(measure=True)
    directory = str(_gpu_dir())
    accs, idx = _load(directory), _index(directory)
    q = _parse(text)
    key = idx.exact.get(_compact(text))
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

    close = difflib.get_close_matches(_compact(text), list(idx.exact), n=12, cutoff=0.6)
    names: list[str] = []
    for c in close:
        n = accs[idx.exact[c]].short_name
        if n not in names:
            names.append(n)
    hint = f"; did you mean: {', '.join(names[:3])}?" if names else "; run `qfit gpus` for the catalog"
    return f"unknown accelerator {text!r}{hint}"


def list_accelerators(vendor: str | None = None, segment: str | None = None) -> list[Accelerator]:
    """Catalog entries, optionally filtered; sorted by vendor, segment, then memory bandwidth (fastest first)."""
    if vendor is not None and vendor.lower() not in VENDORS:
        raise QfitError(f"unknown vendor {vendor!r}; expected one of: {', '.join(VENDORS)}")
    if segment is not None and segment.lower() not in SEGMENTS:
        raise QfitError(f"unknown segment {segment!r}; expected one of: {', '.join(SEGMENTS)}")
    accs = [a for a in load_accelerators().values()
            if (vendor is None or a.vendor == vendor.lower()) and (segment is None or a.segment == segment.lower())]
    return sorted(accs, key=lambda a: (_VENDOR_ORDER.get(a.vendor, 99), _SEGMENT_ORDER.get(a.segment, 99),
                                       -a.bandwidth_gbps, -a.memory_gib, a.name))
