"""Engine x device-family efficiency factors as the speed model uses them (pure: built from an EngineProfile).

Each backend's factors are physically meaningful parameters fitted by scripts/fit_efficiency.py on the calibration
set, never per case (profiles/engines/<engine>.yaml, `fitted:` section):
  decode_bandwidth_efficiency  achieved / spec memory bandwidth of the decode matvec kernels
  overhead_per_layer_us        fixed time per layer per step (kernel launches, eager Python per module), independent of bytes
  overhead_per_step_us         fixed time per step whatever the depth (CUDA-graph replay + scheduler + sampler)
  kv_traffic_factor            passes over the KV cache per decode step (1 = paged attention reads it once)
  prefill_compute_efficiency   achieved / spec dense 16-bit tensor FLOPs in prefill GEMMs and attention
  formats                      per weight-format multipliers (dequantizing kernels are not free), first match wins
A backend with no measurements borrows another's factors (`priors`) and widens its error band.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qfit.engines.profile import EngineProfile, Policy


@dataclass(frozen=True)
class FormatFactor:
    match: str
    decode_bandwidth: float = 1.0      # multiplies decode_bandwidth_efficiency
    overhead_per_layer_us: float = 0.0  # added to the backend's per-layer overhead
    prefill_compute: float = 1.0       # multiplies prefill_compute_efficiency
    note: str = ""
    source: str = ""                   # a hand-reviewed factor's measurement, stated in the plan's assumptions


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
    multi_gpu: str                      # tensor_parallel (all-reduce per layer) | layer_split (sequential)
    allreduce_latency_us: dict          # {"nvlink": .., "pcie": ..}: fixed cost of one small all-reduce
    error_band: dict
    source: str
    calibrated: bool
    policy: Policy
    format: FormatFactor = field(default_factory=lambda: FormatFactor("*"))
    notes: tuple[str, ...] = ()
    decode_speed_factor: float = 1.0    # user calibration overlay (`qfit calibrate`), 1.0 when none
    prefill_speed_factor: float = 1.0
    overlay: str | None = None          # path of the overlay the factors came from
    moe_expert_loop_us: float = 0.0     # fixed time per expert per routed layer per forward pass (engine-level:
    #                                     transformers visits every expert in a Python loop; fused kernels: 0)
    moe_expert_loop_note: str = ""      # its basis, stated in MoE plans
    linear_call_us: float = 0.0         # fixed time per linear-module call for this format (engine x format term,
    #                                     speed.format_warnings[].call_us: transformers' FP8 path)

    @property
    def decode_bw(self) -> float:
        return self.decode_bandwidth_efficiency * self.format.decode_bandwidth

    def overhead_s(self, layers: int, moe_layers: int = 0, num_experts: int = 0) -> float:
        """Fixed time of one forward step of a model with `layers` layers, `moe_layers` of them routed over
        `num_experts` experts (an engine that loops over experts pays per expert visited, tokens routed or not)."""
        per_layer = self.overhead_per_layer_us + self.format.overhead_per_layer_us
        loop = moe_layers * num_experts * self.moe_expert_loop_us
        return (self.overhead_per_step_us + layers * per_layer + loop) * 1e-6

    @property
    def prefill_eff(self) -> float:
        return self.prefill_compute_efficiency * self.format.prefill_compute


def _match_format(formats: list[dict], precision: str) -> FormatFactor:
    for entry in formats or []:
        if fnmatch.fnmatch(precision, entry["match"]):
            return FormatFactor(**entry)
    return FormatFactor("*", note="no format-specific factor")


def _transfer_floor(band: dict, policy: Policy) -> dict:
    """A family calibrated on one device says nothing about another: floor its band (policy.yaml says why)."""
    if not band or band.get("devices", 2) >= 2:
        return band
    floor = policy.transfer_floor_pct
    out = {k: (max(v, floor) if k.endswith("_pct") and isinstance(v, (int, float)) else v) for k, v in band.items()}
    out["basis"] = (f"{band.get('basis', 'calibration residuals')}; calibrated on one device only, so floored at "
                    f"{floor:g} % ({policy.transfer_floor_basis})")
    return out


def widen(band: dict, factor: float, why: str, basis: str = "") -> dict:
    """Every *_pct figure of a band times `factor`, the reason appended to its basis."""
    out = {k: (round(v * factor, 1) if k.endswith("_pct") and isinstance(v, (int, float)) else v)
           for k, v in band.items()}
    out["basis"] = f"{band.get('basis', basis)}; x{factor:g} for {why}"
    return out


def efficiency_for(engine: EngineProfile, backend: str, precision: str) -> Efficiency:
    """The factors `engine` runs `precision` weights with on a `backend` device, the user's overlay applied."""
    speed = engine.speed_entry(backend)
    entry, mult = speed.params, speed.band_multiplier
    band = _transfer_floor(dict(entry.get("error_band") or {}), engine.policy)
    if mult != 1.0:
        band = widen(band, mult, "an uncalibrated engine/device pair", "calibration residuals")
    eff = Efficiency(
        engine=engine.name, backend=backend,
        decode_bandwidth_efficiency=float(entry["decode_bandwidth_efficiency"]),
        overhead_per_layer_us=float(entry.get("overhead_per_layer_us", 0.0)),
        overhead_per_step_us=float(entry.get("overhead_per_step_us", 0.0)),
        kv_traffic_factor=float(entry.get("kv_traffic_factor", 1.0)),
        prefill_compute_efficiency=float(entry["prefill_compute_efficiency"]),
        attention_compute_efficiency=float(entry.get("attention_compute_efficiency")
                                           or entry["prefill_compute_efficiency"]),
        compute_peak=str(entry.get("compute_peak", "tensor")), prefill_chunk_tokens=engine.prefill_chunk_tokens,
        multi_gpu=engine.multi_gpu, allreduce_latency_us=dict(engine.allreduce_latency_us), error_band=band,
        source=str(entry.get("source", "")), calibrated=mult == 1.0 and bool(entry.get("fitted", False)),
        policy=engine.policy, format=_match_format(entry.get("formats", []), precision),
        notes=speed.notes + _warnings(engine, precision),
        moe_expert_loop_us=engine.moe_expert_loop_us, moe_expert_loop_note=engine.moe_expert_loop_note,
        linear_call_us=next((us for glob, _, us in engine.format_warnings if fnmatch.fnmatch(precision, glob)), 0.0))
    return _apply_overlay(eff, engine, precision)


def _warnings(engine: EngineProfile, precision: str) -> tuple[str, ...]:
    """The engine's warning for this weight format (profiles/engines/<engine>.yaml speed.format_warnings), if any."""
    return next(((note,) for glob, note, _ in engine.format_warnings if fnmatch.fnmatch(precision, glob)), ())


FLOAT_WEIGHTS = ("fp32", "float32", "bf16", "bfloat16", "fp16", "float16")


def overlay_key(backend: str, precision: str | None) -> str:
    """The overlay entry a measurement of `precision` weights calibrates: the device family for float weights,
    'family/format' for quantized ones (a GPTQ kernel's speed says nothing about how fast float weights run)."""
    p = (precision or "").lower()
    if not p or p in FLOAT_WEIGHTS:
        return backend
    return f"{backend}/{p.split('-')[0]}"


def _apply_overlay(eff: Efficiency, engine: EngineProfile, precision: str) -> Efficiency:
    """A quantized format takes its own entry, else the family's (host-level behaviour measured on float weights);
    float weights take only the family's."""
    key = overlay_key(eff.backend, precision)
    found = engine.overlays.get(key) or engine.overlays.get(eff.backend)
    if not found:
        return eff
    note = (f"user calibration overlay {found.path}: decode x{found.decode:.3g}, prefill x{found.prefill:.3g} "
            f"(from {found.points} measured points)")
    return replace(eff, decode_speed_factor=found.decode, prefill_speed_factor=found.prefill, overlay=found.path,
                   notes=eff.notes + (note,))


def with_params(eff: Efficiency, **params) -> Efficiency:
    """A copy with some parameters replaced (the fitting script evaluates candidate parameters this way)."""
    fmt_keys = {"decode_bandwidth", "prefill_compute", "format_overhead_per_layer_us"}
    fmt_changes = {("overhead_per_layer_us" if k == "format_overhead_per_layer_us" else k): v
                   for k, v in params.items() if k in fmt_keys}
    rest = {k: v for k, v in params.items() if k not in fmt_keys}
    return replace(eff, format=replace(eff.format, **fmt_changes), **rest)
