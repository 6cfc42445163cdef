"""The planner's speed half: PerfEstimate for one model x precision x engine x accelerator x workload, and batch curves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from qfit.errors import QfitError
from qfit.hardware import Accelerator
from qfit.model.spec import ModelSpec
from qfit.model.tensors import TensorGroup
from qfit.perf.depth import depth_band
from qfit.perf.efficiency import Efficiency, widen
from qfit.perf.roofline import Device, StepTime, decode_step, prefill
from qfit.perf.workload import attention_flops, kv_dtype_bytes, shape_of, weight_traffic
from qfit.precision.weights import WeightBytes


def compute_dtype(name: str) -> str:
    """The dtype the matmuls run in: weight-only formats dequantize to 16-bit activations' dtype."""
    if name in ("fp32", "gguf-f32"):
        return "fp32"
    if name.startswith("fp8"):
        return "fp8"
    if name == "int8":
        return "int8"
    return "fp16" if name in ("fp16", "gguf-f16") else "bf16"


def _tflops(acc: Accelerator, dtype: str) -> float | None:
    order = [dtype, "bf16", "fp16", "fp32"] if dtype != "fp32" else ["fp32", "bf16", "fp16"]
    return next((float(v) for v in (acc.tflops_for(k) for k in order) if v), None)


def device_view(acc: Accelerator, precision: str, gpus: int, eff: Efficiency) -> tuple[Device, list[str]]:
    notes = []
    dtype = "fp32" if eff.compute_peak == "vector" else compute_dtype(precision)
    peak = _tflops(acc, dtype)
    if eff.compute_peak == "vector" and not _tflops(acc, "fp32") and peak:
        notes.append("no FP32 vector figure in the device profile: its tensor peak stands in (prefill optimistic)")
    if not peak:
        notes.append(f"{acc.name} has no compute figure in its profile: the compute roofline is left out, so "
                     "prefill/TTFT and large-batch figures are optimistic")
        peak = 0.0
    kind, link, link_notes = _link(acc, gpus, eff.policy)
    return Device(float(acc.bandwidth_gbps), peak, kind, link, gpus), notes + link_notes


def _link(acc: Accelerator, gpus: int, policy) -> tuple[str, float, list[str]]:
    """The GPU-to-GPU link tensor parallel uses: the device's scale-up link within its domain, PCIe past it (the
    rule `Accelerator.tp_limit` states: a PCIe card can join others of its node beyond its NVLink bridge pair)."""
    ic = acc.interconnect
    kind = ic.kind.lower()
    if gpus <= 1:
        return "none", policy.pcie_fallback_gbps, []
    if gpus <= ic.max_gpus and ic.bandwidth_gbps and kind != "none":
        family = "nvlink" if kind.startswith("nvlink") else "pcie" if kind.startswith("pcie") else kind
        return family, float(ic.bandwidth_gbps), [f"GPU-to-GPU traffic over {ic.kind} at {ic.bandwidth_gbps:g} GB/s "
                                                  "per direction (profile figure)"]
    gbps, how = policy.pcie_gbps(acc)
    if gpus > ic.max_gpus and kind != "none":
        return "pcie", gbps, [f"{gpus} GPUs exceed the {ic.kind} domain of {ic.max_gpus}: tensor parallel runs over "
                              f"{how} at {gbps:.3g} GB/s per direction (works, only slower)"]
    return "pcie", gbps, [f"GPU-to-GPU traffic over {how} at {gbps:.3g} GB/s per direction"]


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


def _assumptions(eff: Efficiency, kv_dtype: str, gpus: int, traffic, shape, notes: list[str]) -> list[str]:
    out = [
        f"speed: {eff.engine} on {eff.backend}; decode at {eff.decode_bw:.0%} of spec bandwidth, "
        f"fixed {eff.overhead_per_step_us:.0f} us per step + {eff.overhead_per_layer_us:.0f} us per layer, prefill at {eff.prefill_eff:.0%} of dense tensor FLOPs "
        f"({'fitted' if eff.calibrated else 'prior'}: {eff.source or 'profiles/engines/' + eff.engine + '.yaml'})",
        f"format factor for {eff.format.match}: bandwidth x{eff.format.decode_bandwidth:g}, "
        f"prefill x{eff.format.prefill_compute:g}, +{eff.format.overhead_per_layer_us:g} us/layer"
        + (f" ({eff.format.source})" if eff.format.source else ""),
        f"KV cache {kv_dtype}; decode reads it {eff.kv_traffic_factor:g}x per step",
    ]
    if traffic.num_experts:
        out.append(f"MoE: {traffic.top_k} of {traffic.num_experts} experts per token; a batch reads the expected "
                   "number of distinct experts 1-(1-k/E)^batch under uniform routing")
        if eff.moe_expert_loop_us:
            out.append(moe_loop_note(eff, shape))
    if gpus > 1:
        out.append("multi-GPU: tensor parallel, 2 ring all-reduces per layer" if eff.multi_gpu == "tensor_parallel" else
                   f"multi-GPU: {eff.engine} splits layers across GPUs (sequential per token, no decode speed-up)")
    if eff.prefill_chunk_tokens:
        out.append(f"prefill in chunks of {eff.prefill_chunk_tokens} tokens (weights re-read per chunk)")
    return out + list(eff.notes) + notes


def moe_loop_note(eff: Efficiency, shape) -> str:
    ms = eff.overhead_s(0, shape.moe_layers, shape.num_experts) * 1e3
    return (f"MoE under {eff.engine}: a per-expert loop visits all {shape.num_experts} experts in each of "
            f"{shape.moe_layers} routed layers every forward pass, tokens routed to them or not: "
            f"{eff.moe_expert_loop_us:g} us a visit, {ms:.0f} ms a step ({eff.moe_expert_loop_note})")


def widened_band(eff: Efficiency, spec: ModelSpec, groups: list[TensorGroup], gpus: int) -> dict:
    """The band widened where the estimate leaves what the calibration covered (profiles/planner/policy.yaml)."""
    params = sum(g.params for g in groups)
    band = dict(eff.error_band)
    for rule in eff.policy.extrapolation:
        if rule.applies(spec.moe is not None, params, gpus):
            band = widen(band, rule.factor, rule.why)
    return band


def estimate_performance(spec: ModelSpec, groups: list[TensorGroup], weights: WeightBytes, precision: str,
                         acc: Accelerator, *, efficiency: Efficiency, gpus: int = 1, batch: int = 1,
                         input_len: int = 512, context: int | None = None, kv_dtype: str | None = None,
                         output_len: int | None = None) -> PerfEstimate:
    """Speed of one configuration. `efficiency` = engine.efficiency(acc.backend, precision); `context` = KV length at
    which decode is timed (default: input + half the output)."""
    if batch < 1 or gpus < 1 or input_len < 0:
        raise QfitError("batch and gpus must be >= 1 and input_len >= 0")
    eff = efficiency
    shape = shape_of(spec)
    traffic = weight_traffic(groups, weights, shape)
    dev, notes = device_view(acc, precision, gpus, eff)
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
    band, depth_notes = depth_band(eff, max(context, 1), input_len, step.kv_bytes_per_gpu,
                                   step.bytes_per_gpu, attention_flops(shape, max(context, 1)),
                                   widened_band(eff, spec, groups, gpus))
    est = PerfEstimate(
        prefill_tokens_per_s=batch * max(input_len, 1) / pre_s, decode_tokens_per_s=1.0 / step_s,
        ttft_s=pre_s if input_len else 0.0, tpot_s=step_s, bound=step.bound,
        aggregate_tokens_per_s=batch / step_s, batch=batch,
        assumptions=_assumptions(eff, kv_dtype, gpus, traffic, shape, notes) + depth_notes,
        error_band=band, breakdown=breakdown)
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


def batch_curve(spec: ModelSpec, groups: list[TensorGroup], weights: WeightBytes, precision: str, acc: Accelerator, *,
                efficiency: Efficiency, batches: list[int], gpus: int = 1, input_len: int = 512,
                context: int | None = None, kv_dtype: str | None = None, output_len: int | None = None,
                memory_fn: Callable[[int], tuple[float, bool]] | None = None) -> list[CurvePoint]:
    """One point per batch size. memory_fn(batch) -> (total GiB, fits) comes from the memory model."""
    points = []
    for b in sorted(set(batches)):
        est = estimate_performance(spec, groups, weights, precision, acc, efficiency=efficiency, gpus=gpus, batch=b,
                                   input_len=input_len, context=context, kv_dtype=kv_dtype, output_len=output_len)
        mem, fits = memory_fn(b) if memory_fn else (None, None)
        points.append(CurvePoint(b, est.decode_tokens_per_s, est.aggregate_tokens_per_s, est.tpot_s, est.ttft_s,
                                 est.bound, mem, fits))
    return points


def quantization_stops_helping(points: list[CurvePoint]) -> int | None:
    """Smallest batch at which decode is compute-bound: from there on, fewer weight bytes no longer buy speed."""
    return next((p.batch for p in points if p.bound == "compute"), None)
