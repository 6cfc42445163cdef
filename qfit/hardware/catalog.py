"""The accelerator catalog (I/O): profiles/gpus/*.yaml validated and built into Accelerators, JSON-cached so `qfit plan`
starts fast (C YAML parser when available, plus a cache keyed by file names, sizes and mtimes). Every figure in the
YAML carries a source (profiles/gpus/README.md); this module only reads and validates them."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from qfit.errors import QfitError
from qfit.hardware.device import (
    SEGMENTS,
    TFLOPS_KEYS,
    VENDORS,
    Accelerator,
    Interconnect,
    Price,
    Tflops,
    usable_fraction,
)
from qfit.paths import profiles_dir
from qfit.yamlcache import load_records

REQUIRED = ("key", "name", "aliases", "vendor", "family", "segment", "memory_gib", "bandwidth_gbps", "tflops",
            "interconnect", "sources")
# Figures that must be covered by an entry in `sources` whenever they are present (non-null).
SOURCED = ("memory_gib", "bandwidth_gbps", "tflops", "interconnect", "tdp_w", "rack_units")
_VENDOR_ORDER = {v: i for i, v in enumerate(VENDORS)}
_SEGMENT_ORDER = {s: i for i, s in enumerate(SEGMENTS)}


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


def build_accelerator(data: dict) -> Accelerator:
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
        usable_memory_fraction=usable_fraction(default, rule, mem), bandwidth_gbps=float(data["bandwidth_gbps"]),
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

def gpu_dir() -> Path:
    return profiles_dir() / "gpus"


@lru_cache(maxsize=4)
def load_catalog(directory: str) -> dict[str, Accelerator]:
    path = Path(directory)
    if not path.is_dir():
        raise QfitError(f"accelerator catalog not found at {path}")
    def check(data: dict, stem: str) -> None:
        problems = validate_record(data, stem)
        if problems:
            raise QfitError(f"invalid accelerator profile {path / (stem + '.yaml')}: {'; '.join(problems)}")

    return {stem: build_accelerator(data) for stem, data in load_records(path, validate=check).items()}


def load_accelerators() -> dict[str, Accelerator]:
    """All catalogued accelerators by key (cached per process; returns a fresh dict)."""
    return dict(load_catalog(str(gpu_dir())))


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
