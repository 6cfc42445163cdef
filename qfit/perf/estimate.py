"""The planner's speed half: PerfEstimate for one model x precision x engine x accelerator x workload, and batch curves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from qfit.errors import QfitError
from qfit.perf.efficiency import Efficiency, apply_overlay, backend_for, efficiency_for
from qfit.perf.roofline import Device, StepTime, decode_step, prefill
from qfit.perf.workload import kv_dtype_bytes, shape_of, weight_traffic

# PCIe 4.0 x16 per direction: 16 GT/s x 16 lanes x 128/130 / 8 = 31.5 GB/s (PCI-SIG base spec 4.0), used when the
# accelerator profile names no GPU-to-GPU link.
PCIE4_X16_GBPS = 31.5


def precision_name(precision) -> str:
    return str(getattr(precision, "name", None) or precision).lower()


def compute_dtype(name: str) -> str:
    """The dtype the matmuls run in: weight-only formats dequantize to 16-bit activations' dtype."""
    if name in ("fp32", "gguf-f32"):
        return "fp32"
    if name.startswith("fp8") or name == "w8a8-fp8":
        return "fp8"
    if name in ("int8", "w8a8", "w8a8-int8"):
        return "int8"
    return "fp16" if name in ("fp16", "gguf-f16") else "bf16"


def _tflops(accelerator, dtype: str) -> float | None:
    fn = getattr(accelerator, "tflops_for", None)
    order = [dtype, "bf16", "fp16", "fp32"] if dtype != "fp32" else ["fp32", "bf16", "fp16"]
    for key in order:
        value = fn(key) if callable(fn) else (getattr(accelerator, "tflops", {}) or {}).get(key)
        if value:
            return float(value)
    return None


def device_view(accelerator, precision: str, gpus: int, compute_peak: str = "tensor") -> tuple[Device, list[str]]:
    notes = []
    dtype = "fp32" if compute_peak == "vector" else compute_dtype(precision)
    peak = _tflops(accelerator, dtype)
    if compute_peak == "vector" and not _tflops(accelerator, "fp32") and peak:
        notes.append("no FP32 vector figure in the device profile: its tensor peak stands in (prefill optimistic)")
    if not peak:
        notes.append(f"{getattr(accelerator, 'name', accelerator)} has no compute figure in its profile: the compute "
                     "roofline is left out, so prefill/TTFT and large-batch figures are optimistic")
        peak = 0.0
    ic = getattr(accelerator, "interconnect", None) or {}
    ic = ic if isinstance(ic, dict) else vars(ic)
    kind = str(ic.get("kind") or "pcie").lower()
    link = float(ic.get("bandwidth_gbps") or 0)
    if gpus > 1 and (not link or kind in ("none", "pcie")):
        kind, link = "pcie", link or PCIE4_X16_GBPS
        notes.append(f"GPU-to-GPU traffic over PCIe at {link:g} GB/s per direction")
    elif gpus > 1:
        notes.append(f"GPU-to-GPU traffic over {kind} at {link:g} GB/s (profile figure)")
    dev = Device(float(accelerator.bandwidth_gbps), peak, kind, link or PCIE4_X16_GBPS, gpus)
    return dev, notes


@dataclass
class PerfEstimate:
    prefill_tokens_per_s: float
    decode_tokens_per_s: float        # per sequence at `batch`
    ttft_s: float
    tpot_s: float
    bound: str
    aggregate_tokens_per_s: float
    batch: int
    e2e_s: float | None = None
    e2e_tokens_per_s: float | None = None
    assumptions: list[str] = field(default_factory=list)
    error_band: dict = field(default_factory=dict)
    breakdown: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {
            "prefill_tokens_per_s": round(self.prefill_tokens_per_s, 2),
            "decode_tokens_per_s": round(self.decode_tokens_per_s, 2),
            "ttft_s": round(self.ttft_s, 4), "tpot_s": round(self.tpot_s, 5), "bound": self.bound,
            "aggregate_tokens_per_s": round(self.aggregate_tokens_per_s, 2), "batch": self.batch,
            "error_band": self.error_band, "assumptions": list(self.assumptions), "breakdown": self.breakdown,
        }
        if self.e2e_s is not None:
            out["e2e_s"] = round(self.e2e_s, 3)
            out["e2e_tokens_per_s"] = round(self.e2e_tokens_per_s, 2)
        return out


def _breakdown(step: StepTime, pre: StepTime) -> dict:
    return {
        "decode_bytes_per_gpu": round(step.bytes_per_gpu), "decode_kv_bytes_per_gpu": round(step.kv_bytes_per_gpu),
        "decode_flops_per_gpu": round(step.flops_per_gpu), "decode_memory_s": step.memory_s,
        "decode_compute_s": step.compute_s, "decode_overhead_s": step.overhead_s, "decode_comm_s": step.comm_s,
        "prefill_flops_per_gpu": round(pre.flops_per_gpu), "prefill_compute_s": pre.compute_s,
        "prefill_memory_s": pre.memory_s, "prefill_overhead_s": pre.overhead_s, "prefill_comm_s": pre.comm_s,
    }


def _assumptions(eff: Efficiency, kv_dtype: str, gpus: int, traffic, notes: list[str]) -> list[str]:
    out = [
        f"speed: {eff.engine} on {eff.backend}; decode at {eff.decode_bw:.0%} of spec bandwidth, "
        f"fixed {eff.overhead_per_step_us:.0f} us per step + {eff.overhead_per_layer_us:.0f} us per layer, prefill at {eff.prefill_eff:.0%} of dense tensor FLOPs "
        f"({'fitted' if eff.calibrated else 'prior'}: {eff.source or 'profiles/engines/speed'})",
        f"format factor for {eff.format.match}: bandwidth x{eff.format.decode_bandwidth:g}, "
        f"prefill x{eff.format.prefill_compute:g}, +{eff.format.overhead_per_layer_us:g} us/layer",
        f"KV cache {kv_dtype}; decode reads it {eff.kv_traffic_factor:g}x per step",
    ]
    if traffic.num_experts:
        out.append(f"MoE: {traffic.top_k} of {traffic.num_experts} experts per token; a batch reads the expected "
                   "number of distinct experts 1-(1-k/E)^batch under uniform routing")
    if gpus > 1:
        out.append("multi-GPU: tensor parallel, 2 ring all-reduces per layer" if eff.multi_gpu == "tensor" else
                   f"multi-GPU: {eff.engine} splits layers across GPUs (sequential per token, no decode speed-up)")
    if eff.prefill_chunk_tokens:
        out.append(f"prefill in chunks of {eff.prefill_chunk_tokens} tokens (weights re-read per chunk)")
    return out + list(eff.notes) + notes


# The calibration set holds dense 6.7-8B models on single GPUs only: widen the band where an estimate extrapolates
# beyond that (each factor is a stated judgement, not a measurement; the README lists them).
EXTRAPOLATION = (
    (lambda spec, params, gpus: spec.moe is not None, 1.5, "MoE routing/expert kernels (no MoE rows in the calibration)"),
    (lambda spec, params, gpus: gpus > 1, 1.5, "multi-GPU communication (no multi-GPU rows in the calibration)"),
    (lambda spec, params, gpus: params > 24e9, 1.5, "a model over 3x the size of the calibrated ones (6.7-8B)"),
)


def widened_band(band: dict, spec, groups, gpus: int) -> dict:
    params = sum(g.params for g in groups)
    for applies, factor, why in EXTRAPOLATION:
        if applies(spec, params, gpus):
            band = {k: (round(v * factor, 1) if k.endswith("_pct") and isinstance(v, (int, float)) else v)
                    for k, v in band.items()}
            band["basis"] = f"{band.get('basis', '')}; x{factor:g} for {why}"
    return band


def estimate_performance(spec, groups, weights, precision, accelerator, *, gpus: int = 1, engine: str = "vllm",
                         batch: int = 1, input_len: int = 512, context: int | None = None,
                         kv_dtype: str | None = None, output_len: int | None = None,
                         efficiency: Efficiency | None = None) -> PerfEstimate:
    """Speed of one configuration. `context` = KV length at which decode is timed (default: input + half the output)."""
    if batch < 1 or gpus < 1 or input_len < 0:
        raise QfitError("batch and gpus must be >= 1 and input_len >= 0")
    name = precision_name(precision)
    eff = efficiency or apply_overlay(efficiency_for(engine, backend_for(accelerator), name))
    shape = shape_of(spec)
    traffic = weight_traffic(groups, weights, shape)
    dev, notes = device_view(accelerator, name, gpus, eff.compute_peak)
    kv_dtype = kv_dtype or "fp16"
    if context is None:
        context = input_len + (output_len or 0) // 2
    step = decode_step(shape, traffic, dev, eff, batch=batch, context=max(context, 1), kv_bytes=kv_dtype_bytes(kv_dtype))
    pre = prefill(shape, traffic, dev, eff, batch=batch, tokens=max(input_len, 1))
    step_s = step.seconds / eff.decode_speed_factor      # 1.0 unless a user overlay (`qfit calibrate`) applies
    pre_s = pre.seconds / eff.prefill_speed_factor
    breakdown = _breakdown(step, pre)
    if eff.overlay:
        breakdown["overlay_factors"] = {"decode": eff.decode_speed_factor, "prefill": eff.prefill_speed_factor,
                                        "path": eff.overlay}
    est = PerfEstimate(
        prefill_tokens_per_s=batch * max(input_len, 1) / pre_s, decode_tokens_per_s=1.0 / step_s,
        ttft_s=pre_s if input_len else 0.0, tpot_s=step_s, bound=step.bound,
        aggregate_tokens_per_s=batch / step_s, batch=batch,
        assumptions=_assumptions(eff, kv_dtype, gpus, traffic, notes),
        error_band=widened_band(dict(eff.error_band), spec, groups, gpus), breakdown=breakdown)
    if output_len:
        est.e2e_s = est.ttft_s + output_len * step_s
        est.e2e_tokens_per_s = output_len / est.e2e_s
    return est


@dataclass
class CurvePoint:
    batch: int
    decode_tokens_per_s: float      # per sequence
    aggregate_tokens_per_s: float
    tpot_s: float
    ttft_s: float
    bound: str
    memory_gib: float | None = None
    fits: bool | None = None

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(self).items()}


def batch_curve(spec, groups, weights, precision, accelerator, *, batches: list[int], gpus: int = 1,
                engine: str = "vllm", input_len: int = 512, context: int | None = None, kv_dtype: str | None = None,
                output_len: int | None = None, memory_fn: Callable[[int], tuple[float, bool]] | None = None
                ) -> list[CurvePoint]:
    """One point per batch size. memory_fn(batch) -> (total GiB, fits) comes from the memory model (plan.py)."""
    eff = apply_overlay(efficiency_for(engine, backend_for(accelerator), precision_name(precision)))
    points = []
    for b in sorted(set(batches)):
        est = estimate_performance(spec, groups, weights, precision, accelerator, gpus=gpus, engine=engine, batch=b,
                                   input_len=input_len, context=context, kv_dtype=kv_dtype, output_len=output_len,
                                   efficiency=eff)
        mem, fits = memory_fn(b) if memory_fn else (None, None)
        points.append(CurvePoint(b, est.decode_tokens_per_s, est.aggregate_tokens_per_s, est.tpot_s, est.ttft_s,
                                 est.bound, mem, fits))
    return points


def quantization_stops_helping(points: list[CurvePoint]) -> int | None:
    """Smallest batch at which decode is compute-bound: from there on, fewer weight bytes no longer buy speed."""
    return next((p.batch for p in points if p.bound == "compute"), None)
