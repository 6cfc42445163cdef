"""Reading the engine profiles (I/O): profiles/engines/*.yaml, profiles/planner/policy.yaml and the user's
calibration overlays. Validation happens here, once, with the file and field named in the error; what comes out is a
pure EngineRegistry.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from qfit.engines.profile import (
    BACKENDS,
    FAMILIES,
    MULTI_GPU,
    DeviceNeed,
    EngineProfile,
    Extrapolation,
    Overlay,
    Policy,
    SpeedEntry,
)
from qfit.engines.registry import EngineRegistry
from qfit.errors import QfitError
from qfit.memory import KV_DTYPES
from qfit.paths import overlay_dir, profiles_dir
from qfit.yamlcache import load_records

REQUIRED = ("name", "description", "aliases", "multi_gpu", "default_on", "runs", "kv_dtypes", "memory", "speed",
            "fitted")


def _us(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e5


def validate_profile(data: dict, stem: str) -> list[str]:
    """Problems with one engine profile (empty list = valid), each naming its field."""
    if not isinstance(data, dict):
        return ["not a mapping"]
    out = [f"missing field {f!r}" for f in REQUIRED if f not in data]
    if out:
        return out
    if data["name"] != stem:
        out.append(f"name {data['name']!r} does not match the file name")
    if data["multi_gpu"] not in MULTI_GPU:
        out.append(f"multi_gpu {data['multi_gpu']!r} not in {MULTI_GPU}")
    runs, overhead = data["runs"] or {}, (data["memory"] or {}).get("runtime_overhead_gib") or {}
    out += [f"runs: unknown backend {b!r}" for b in runs if b not in BACKENDS]
    out += [f"runs.{b}: unknown weight family {f!r}" for b, fams in runs.items() for f in fams if f not in FAMILIES]
    out += [f"default_on: {b!r} is not in runs" for b in data["default_on"] if b not in runs]
    out += [f"kv_dtypes: unknown KV dtype {k!r}" for k in data["kv_dtypes"] or [] if k not in KV_DTYPES]
    out += [f"memory.runtime_overhead_gib has no figure for {b!r}, which runs lists" for b in runs if b not in overhead]
    unsupported = data.get("unsupported_families") or {}
    if not isinstance(unsupported, dict) or not all(isinstance(v, str) and v for v in unsupported.values()):
        out.append("unsupported_families must map device families to the reason")
    frac = data["memory"].get("memory_fraction")
    if frac is not None and not 0 < frac <= 1:
        out.append("memory.memory_fraction must be in (0, 1] or null")
    speed = data["speed"] or {}
    if speed.get("default_backend") not in (data["fitted"].get("backends") or {}) | (speed.get("priors") or {}):
        out.append(f"speed.default_backend {speed.get('default_backend')!r} has neither fitted factors nor a prior")
    loop = speed.get("moe_expert_loop")
    if loop is not None and not (isinstance(loop, dict) and isinstance(loop.get("us"), (int, float))
                                 and not isinstance(loop.get("us"), bool) and 0 <= loop["us"] < 1e5
                                 and isinstance(loop.get("note"), str) and loop["note"].strip()):
        out.append("speed.moe_expert_loop must be {us: a number in [0, 1e5), note: why}")
    warns = speed.get("format_warnings") or []
    if not isinstance(warns, list) or not all(isinstance(w, dict) and isinstance(w.get("match"), str)
                                              and isinstance(w.get("note"), str) and w["note"].strip()
                                              and _us(w.get("call_us", 0.0)) for w in warns):
        out.append("speed.format_warnings must be a list of {match: precision glob, note: the warning, "
                   "call_us: optional us per linear call in [0, 1e5)}")
    return out


def _check(data: dict, stem: str) -> None:
    problems = validate_profile(data, stem)
    if problems:
        raise QfitError(f"invalid engine profile profiles/engines/{stem}.yaml: {'; '.join(problems)}")


def _backends(data: dict) -> dict[str, dict]:
    """Fitted entries and priors, in the shape the speed resolution follows."""
    out = dict(data["fitted"].get("backends") or {})
    for backend, prior in (data["speed"].get("priors") or {}).items():
        out[backend] = {"prior_from": prior["from"], "why": prior.get("why", ""),
                        "band_multiplier": float(prior["band_multiplier"])}
        if prior.get("formats"):      # measured on this backend, ahead of the borrowed backend's format factors
            out[backend]["own_formats"] = list(prior["formats"])
    return out


def _resolve(records: dict, engine: str, backend: str, seen: tuple = ()) -> tuple[dict, list[str], float]:
    """Follow `prior_from` links (possibly into another engine) -> (entry, notes, error-band multiplier)."""
    entry = _backends(records[engine]).get(backend)
    if entry is None:
        raise QfitError(f"engine profile {engine}: speed prior points at {engine}/{backend}, which has no factors")
    prior = entry.get("prior_from")
    if not prior:
        return entry, [], 1.0
    if prior in seen:
        raise QfitError(f"circular speed prior in engine profile {engine}: {prior}")
    p_engine, _, p_backend = prior.rpartition("/") if "/" in prior else (engine, "", prior)
    if p_engine not in records:
        raise QfitError(f"engine profile {engine}: speed prior from unknown engine {p_engine!r}")
    base, _, mult = _resolve(records, p_engine, p_backend, seen + (f"{engine}/{backend}",))
    merged = {**base, **{k: v for k, v in entry.items()
                         if k not in ("prior_from", "band_multiplier", "error_band", "own_formats")}}
    if entry.get("own_formats"):
        merged["formats"] = entry["own_formats"] + list(base.get("formats") or [])
    why = entry.get("why", "")
    notes = [f"{engine}/{backend} uses {p_engine}/{p_backend} factors (uncalibrated prior{': ' + why if why else ''})"]
    return merged, notes, mult * float(entry.get("band_multiplier", 2.0))


def _policy() -> Policy:
    records = load_records(profiles_dir() / "planner")
    p = records["policy"]
    s = p["speed"]
    rules = tuple(Extrapolation(r["when"], float(r["factor"]), str(r["why"]), r.get("value"))
                  for r in s["extrapolation"])
    band = p["memory_band"]
    needs = tuple(DeviceNeed(str(n["precision"]), frozenset(n["lacking"]), " ".join(str(n["why"]).split()),
                             n.get("instead")) for n in p.get("device_support") or ())
    return Policy(float(band["pct"]), str(band["basis"]).strip(), float(s["transfer_floor_pct"]),
                  str(s["transfer_floor_basis"]), float(s["borrowed_backend_band_multiplier"]), rules,
                  float(s["pcie_fallback_gbps"]), {int(k): float(v) for k, v in s["pcie_gbps_per_lane"].items()},
                  int(p["topology"]["gpus_per_node"]), needs, records.get("long_context") or {})


def _profile(records: dict, stem: str, policy: Policy) -> EngineProfile:
    d, mem, speed = records[stem], records[stem]["memory"], records[stem]["speed"]
    entries = {}
    for backend in _backends(d):
        params, notes, mult = _resolve(records, stem, backend)
        entries[backend] = SpeedEntry(params, tuple(notes), mult)
    return EngineProfile(
        name=d["name"], description=d["description"], memory_fraction=mem.get("memory_fraction"), kv=mem["kv"],
        activation=mem["activation"],
        runtime_overhead_gib={k: float(v) for k, v in mem["runtime_overhead_gib"].items()},
        tp_overhead_gib=float(mem.get("tp_overhead_gib", 0.0)), multi_gpu=d["multi_gpu"],
        runs={b: frozenset(f) for b, f in d["runs"].items()}, kv_dtypes=tuple(d["kv_dtypes"]),
        default_on=tuple(d["default_on"]),
        aliases={str(k).lower(): v for k, v in (d["aliases"] or {}).items()}, measure=d.get("measure"),
        speed=entries, speed_default_backend=speed["default_backend"],
        prefill_chunk_tokens=int(speed.get("prefill_chunk_tokens", 0)),
        allreduce_latency_us={k: float(v) for k, v in speed["allreduce_latency_us"].items()}, policy=policy,
        sources=d.get("sources") or {}, unsupported_families=dict(d.get("unsupported_families") or {}),
        moe_expert_loop_us=float((speed.get("moe_expert_loop") or {}).get("us", 0.0)),
        moe_expert_loop_note=" ".join(str((speed.get("moe_expert_loop") or {}).get("note", "")).split()),
        format_warnings=tuple((str(w["match"]), " ".join(str(w["note"]).split()), float(w.get("call_us", 0.0)))
                              for w in speed.get("format_warnings") or ()))


@lru_cache(maxsize=4)
def _reviewed(directory: str) -> dict[str, dict]:
    records = load_records(Path(directory), validate=_check)
    names = [n for r in records.values() for n in [r["name"], *(r["aliases"] or {})]]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise QfitError(f"engine profiles: names claimed by more than one engine: {', '.join(clash)}")
    return records


def read_overlay(path: Path) -> dict[str, Overlay]:
    """A `qfit calibrate` overlay: backend -> factors. Implausible factors are refused here, not used."""
    import yaml  # only when an overlay exists

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise QfitError(f"cannot read calibration overlay {path}: {str(exc).splitlines()[0]}") from None
    calibrations = data.get("calibrations") if isinstance(data, dict) else None
    if not isinstance(calibrations, dict):
        raise QfitError(f"calibration overlay {path}: no `calibrations` mapping (write it with `qfit calibrate`)")
    return {str(backend): _overlay_entry(path, str(backend), entry) for backend, entry in calibrations.items()}


def _overlay_entry(path: Path, backend: str, entry) -> Overlay:
    def factor(key: str) -> float:
        value = entry.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.01 < value < 100:
            raise QfitError(f"calibration overlay {path}: {backend}.{key} {value!r:.30} is implausible "
                            "(a factor between 0.01 and 100)")
        return float(value)

    if not isinstance(entry, dict):
        raise QfitError(f"calibration overlay {path}: entry {backend!r:.30} is not a mapping")
    points = entry.get("points") or {}
    counts = list(points.values()) if isinstance(points, dict) else [None]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        raise QfitError(f"calibration overlay {path}: {backend}.points must map figures to counts")
    d, p = factor("decode_speed_factor"), factor("prefill_speed_factor")
    return Overlay(d, p, sum(counts), str(path))


def load_engines(overlays: bool = True) -> EngineRegistry:
    """Every engine profile (parsed once per process, JSON-cached on disk) with the user's overlays read now, so a
    `qfit calibrate` that just ran is seen by the next plan."""
    records = _reviewed(str(profiles_dir() / "engines"))
    policy = _policy()
    engines = {}
    for stem in sorted(records, key=lambda s: (s != "vllm", s)):   # vllm first: the default where several could be
        profile = _profile(records, stem, policy)
        path = overlay_dir() / f"{profile.name}.yaml"
        if overlays and path.is_file():
            profile = EngineProfile(**{**profile.__dict__, "overlays": read_overlay(path), "_efficiency": {}})
        engines[profile.name] = profile
    return EngineRegistry(engines, policy)
