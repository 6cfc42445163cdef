"""Engine x device-family efficiency factors, read from profiles/engines/speed/<engine>.yaml.

Each backend entry (cuda, metal, rocm, cpu, ...) holds physically meaningful parameters fitted by
scripts/fit_efficiency.py on the calibration set, never per case:
  decode_bandwidth_efficiency  achieved / spec memory bandwidth of the decode matvec kernels
  overhead_per_layer_us        fixed time per layer per step (kernel launches, eager Python per module), independent of bytes
  overhead_per_step_us         fixed time per step whatever the depth (CUDA-graph replay + scheduler + sampler)
  kv_traffic_factor            passes over the KV cache per decode step (1 = paged attention reads it once)
  prefill_compute_efficiency   achieved / spec dense 16-bit tensor FLOPs in prefill GEMMs and attention
  formats                      per weight-format multipliers (dequantizing kernels are not free), first match wins
A backend with no measurements says `prior_from: <other backend or engine/backend>` and widens its error band.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from functools import lru_cache

from qfit.errors import QfitError
from qfit.paths import overlay_dir, profiles_dir

ENGINES = ("transformers", "vllm", "sglang", "llama.cpp")
_ALIASES = {"hf": "transformers", "llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "ollama": "llama.cpp",
            "lmstudio": "llama.cpp", "tgi": "vllm", "tensorrt-llm": "vllm", "trtllm": "vllm", "lmdeploy": "vllm"}
_VENDOR_BACKEND = {"nvidia": "cuda", "apple": "metal", "amd": "rocm", "intel": "xpu", "cpu": "cpu", "host": "cpu"}


def normalize_engine(engine: str) -> tuple[str, str | None]:
    """-> (engine, note). Unknown engines map to the nearest known one with a note, as the JSON contract allows."""
    key = (engine or "").strip().lower()
    if key in ENGINES:
        return key, None
    if key in _ALIASES:
        mapped = _ALIASES[key]
        return mapped, f"engine {engine!r} has no speed profile; modelled as {mapped}"
    raise QfitError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


def backend_for(accelerator) -> str:
    """llama.cpp backend / kernel family from the device: CUDA on NVIDIA, Metal on Apple, ROCm on AMD, CPU on the host."""
    vendor = str(getattr(accelerator, "vendor", "") or "").lower()
    return _VENDOR_BACKEND.get(vendor, "cuda")


@dataclass(frozen=True)
class FormatFactor:
    match: str
    decode_bandwidth: float = 1.0      # multiplies decode_bandwidth_efficiency
    overhead_per_layer_us: float = 0.0  # added to the backend's per-layer overhead
    prefill_compute: float = 1.0       # multiplies prefill_compute_efficiency
    note: str = ""


@dataclass(frozen=True)
class Efficiency:
    engine: str
    backend: str
    decode_bandwidth_efficiency: float
    overhead_per_layer_us: float
    overhead_per_step_us: float
    kv_traffic_factor: float
    prefill_compute_efficiency: float
    attention_compute_efficiency: float
    compute_peak: str                   # "tensor" | "vector"
    prefill_chunk_tokens: int           # 0 = whole prompt in one pass
    multi_gpu: str                      # "tensor" (all-reduce per layer) or "layer" (pipeline split, sequential)
    allreduce_latency_us: dict          # {"nvlink": .., "pcie": ..}: fixed cost of one small all-reduce
    error_band: dict
    source: str
    calibrated: bool
    format: FormatFactor = field(default_factory=lambda: FormatFactor("*"))
    notes: tuple[str, ...] = ()
    decode_speed_factor: float = 1.0    # user calibration overlay (`qfit calibrate`), 1.0 when none
    prefill_speed_factor: float = 1.0
    overlay: str | None = None          # path of the overlay the factors came from

    @property
    def decode_bw(self) -> float:
        return self.decode_bandwidth_efficiency * self.format.decode_bandwidth

    def overhead_s(self, layers: int) -> float:
        """Fixed time of one forward step of a model with `layers` layers."""
        per_layer = self.overhead_per_layer_us + self.format.overhead_per_layer_us
        return (self.overhead_per_step_us + layers * per_layer) * 1e-6

    @property
    def prefill_eff(self) -> float:
        return self.prefill_compute_efficiency * self.format.prefill_compute


@lru_cache(maxsize=None)
def _speed_records() -> dict:
    from qfit.yamlcache import load_records  # JSON-cached: no PyYAML import on a warm start

    directory = profiles_dir() / "engines" / "speed"
    if not directory.is_dir():
        raise QfitError(f"speed profiles missing: {directory}")
    return load_records(directory)


def load_engine_file(engine: str) -> dict:
    stem = engine.replace(".", "_")
    data = _speed_records().get(stem)
    if not isinstance(data, dict) or "backends" not in data:
        raise QfitError(f"no usable speed profile for engine {engine!r} (profiles/engines/speed/{stem}.yaml)")
    return data


def _match_format(formats: list[dict], precision: str) -> FormatFactor:
    for entry in formats or []:
        if fnmatch.fnmatch(precision, entry["match"]):
            return FormatFactor(**entry)
    return FormatFactor("*", note="no format-specific factor")


def _backend_entry(engine: str, backend: str, seen: tuple = ()) -> tuple[dict, list[str], float]:
    """Follow `prior_from` links; -> (entry, notes, error-band multiplier)."""
    data = load_engine_file(engine)
    backends = data["backends"]
    if backend not in backends:
        fallback = data.get("default_backend", next(iter(backends)))
        entry, notes, mult = _backend_entry(engine, fallback, seen + (backend,))
        return entry, [f"{engine} on {backend}: no profile, borrowed {fallback} (error band x2)"] + notes, mult * 2
    entry = backends[backend]
    prior = entry.get("prior_from")
    if not prior:
        return entry, [], 1.0
    if prior in seen:
        raise QfitError(f"circular prior_from in {engine} speed profile: {prior}")
    p_engine, _, p_backend = prior.rpartition("/") if "/" in prior else (engine, "", prior)
    base, notes, mult = _backend_entry(p_engine, p_backend, seen + (backend,))
    merged = {**base, **{k: v for k, v in entry.items() if k not in ("prior_from", "band_multiplier", "error_band")}}
    why = entry.get("why", "")
    notes = [f"{engine}/{backend} uses {p_engine}/{p_backend} factors (uncalibrated prior{': ' + why if why else ''})"]
    return merged, notes, mult * float(entry.get("band_multiplier", 2.0))


def efficiency_for(engine: str, backend: str, precision: str) -> Efficiency:
    engine, note = normalize_engine(engine)
    entry, notes, mult = _backend_entry(engine, backend)
    data = load_engine_file(engine)
    band = _transfer_floor(dict(entry.get("error_band") or {}))
    if mult != 1.0:
        band = {k: (round(v * mult, 1) if k.endswith("_pct") and isinstance(v, (int, float)) else v)
                for k, v in band.items()}
        band["basis"] = f"{band.get('basis', 'calibration residuals')}; x{mult:g} for an uncalibrated engine/device pair"
    fmt = _match_format(entry.get("formats", []), precision)
    eff = Efficiency(
        engine=engine, backend=backend,
        decode_bandwidth_efficiency=float(entry["decode_bandwidth_efficiency"]),
        overhead_per_layer_us=float(entry.get("overhead_per_layer_us", 0.0)),
        overhead_per_step_us=float(entry.get("overhead_per_step_us", 0.0)),
        kv_traffic_factor=float(entry.get("kv_traffic_factor", 1.0)),
        prefill_compute_efficiency=float(entry["prefill_compute_efficiency"]),
        attention_compute_efficiency=float(entry.get("attention_compute_efficiency")
                                           or entry["prefill_compute_efficiency"]),
        compute_peak=str(entry.get("compute_peak", "tensor")),
        prefill_chunk_tokens=int(entry.get("prefill_chunk_tokens", data.get("prefill_chunk_tokens", 0))),
        multi_gpu=str(data.get("multi_gpu", "tensor")),
        allreduce_latency_us=dict(data.get("allreduce_latency_us", {"nvlink": 10.0, "pcie": 25.0})),
        error_band=band, source=str(entry.get("source", data.get("source", ""))),
        calibrated=mult == 1.0 and bool(entry.get("fitted", False)), format=fmt,
        notes=tuple(([note] if note else []) + notes),
    )
    return eff


# A family calibrated on one device was cross-validated only across input lengths: that says nothing about another
# GPU or model. Floor its band at what moving to an unseen device cost where we could measure it (llama.cpp CUDA,
# 11 devices: 19.6 % leave-one-device-out decode error), rounded down to 15 %.
TRANSFER_FLOOR_PCT = 15.0


def _transfer_floor(band: dict) -> dict:
    if not band or band.get("devices", 2) >= 2:
        return band
    out = {k: (max(v, TRANSFER_FLOOR_PCT) if k.endswith("_pct") and isinstance(v, (int, float)) else v)
           for k, v in band.items()}
    out["basis"] = (f"{band.get('basis', 'calibration residuals')}; calibrated on one device only, so floored at "
                    f"{TRANSFER_FLOOR_PCT:g} % (cross-device error measured on llama.cpp CUDA: 19.6 %)")
    return out


def user_overlay(engine: str, backend: str) -> tuple[dict, str] | None:
    """Factors `qfit calibrate` wrote for this engine x device family, from the user's config dir (never the repo)."""
    path = overlay_dir() / f"{engine}.yaml"
    if not path.is_file():
        return None
    import yaml  # only when an overlay exists

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise QfitError(f"cannot read calibration overlay {path}: {str(exc).splitlines()[0]}") from None
    entry = (data.get("calibrations") or {}).get(backend)
    return (entry, str(path)) if isinstance(entry, dict) else None


def apply_overlay(eff: Efficiency) -> Efficiency:
    found = user_overlay(eff.engine, eff.backend)
    if not found:
        return eff
    entry, path = found
    d, p = float(entry.get("decode_speed_factor", 1.0)), float(entry.get("prefill_speed_factor", 1.0))
    if not (0.01 < d < 100 and 0.01 < p < 100):
        raise QfitError(f"calibration overlay {path}: implausible factors decode x{d:g}, prefill x{p:g}")
    note = (f"user calibration overlay {path}: decode x{d:.3g}, prefill x{p:.3g} "
            f"(from {sum((entry.get('points') or {}).values())} measured points)")
    return replace(eff, decode_speed_factor=d, prefill_speed_factor=p, overlay=path, notes=eff.notes + (note,))


def with_params(eff: Efficiency, **params) -> Efficiency:
    """A copy with some parameters replaced (the fitting script evaluates candidate parameters this way)."""
    fmt_keys = {"decode_bandwidth", "prefill_compute", "format_overhead_per_layer_us"}
    fmt_changes = {("overhead_per_layer_us" if k == "format_overhead_per_layer_us" else k): v
                   for k, v in params.items() if k in fmt_keys}
    rest = {k: v for k, v in params.items() if k not in fmt_keys}
    return replace(eff, format=replace(eff.format, **fmt_changes), **rest)
