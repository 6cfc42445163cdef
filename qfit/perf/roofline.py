"""Pure: bytes and FLOPs -> seconds, with the engine's efficiencies and the device's spec figures.

Decode step   t = max(bytes / (eta_bw * BW), flops / (eta_c * FLOPS)) + layers * overhead + all-reduce time
Prefill       t = max(flops / (eta_c * FLOPS), chunks * weight bytes / (eta_bw * BW)) + chunks * layers * overhead + comm
The max() is the roofline: whichever of memory traffic and arithmetic takes longer sets the pace. The fixed overhead is
what no roofline sees (kernel launches, scheduler/Python work); it is why small models reach a smaller share of bandwidth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qfit.perf.efficiency import Efficiency
from qfit.perf.workload import (
    Shape,
    WeightTraffic,
    attention_flops,
    kv_bytes_read,
    linear_calls,
    prefill_attention_flops,
    state_bytes_rw,
)

ACT_BYTES = 2.0  # activations exchanged by tensor-parallel all-reduces are bf16/fp16


@dataclass(frozen=True)
class Device:
    """The spec figures the roofline needs, per GPU."""

    bandwidth_gbps: float
    peak_tflops: float           # dense tensor TFLOPS for the precision's compute dtype
    link_kind: str               # "nvlink" | "pcie" | "xgmi" | "none" ...
    link_gbps: float             # per-direction GPU-to-GPU bandwidth used by all-reduce
    gpus: int = 1


@dataclass(frozen=True)
class StepTime:
    seconds: float
    memory_s: float
    compute_s: float
    overhead_s: float
    comm_s: float
    bytes_per_gpu: float
    flops_per_gpu: float
    kv_bytes_per_gpu: float

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s > self.memory_s else "memory"


def _shards(shape: Shape, eff: Efficiency, gpus: int) -> tuple[int, int]:
    """(weight shards, KV shards). Layer split runs GPUs one after another: no speed-up per token, so 1 shard in time."""
    if gpus <= 1 or eff.multi_gpu != "tensor_parallel":
        return 1, 1
    return gpus, max(1, min(gpus, shape.kv_heads))   # KV heads replicate when fewer than GPUs


def allreduce_s(dev: Device, eff: Efficiency, layers: int, tokens: int, hidden: int) -> float:
    """Two ring all-reduces per layer (attention output, MLP output) of tokens x hidden activations."""
    g = dev.gpus
    if g <= 1 or eff.multi_gpu != "tensor_parallel":
        return 0.0
    # links the profile has no figure for (xgmi, ...) are timed like PCIe, the slowest listed
    latency = eff.allreduce_latency_us.get(dev.link_kind, eff.allreduce_latency_us["pcie"]) * 1e-6
    msg = tokens * hidden * ACT_BYTES
    per = latency + 2 * (g - 1) / g * msg / (dev.link_gbps * 1e9)
    return 2 * layers * per


def step_overhead_s(shape: Shape, eff: Efficiency) -> float:
    """Fixed time of one forward pass: per step, per layer, per expert visited by an engine's loop, and per linear
    call of a format whose kernels carry a fixed cost (transformers' FP8 path)."""
    calls = linear_calls(shape, eff.moe_expert_loop_us > 0) if eff.linear_call_us else 0
    return eff.overhead_s(shape.layers, shape.moe_layers, shape.num_experts) + calls * eff.linear_call_us * 1e-6


def _compute_s(dev: Device, eff: Efficiency, linear_flops: float, attn_flops: float) -> float:
    """GEMMs run at the format's efficiency (dequantizing GEMMs are slower); attention at the attention kernel's."""
    peak = dev.peak_tflops * 1e12
    if peak <= 0:   # device profile without a FLOPS figure: no compute roofline (estimate says so)
        return 0.0
    return linear_flops / (peak * eff.prefill_eff) + attn_flops / (peak * eff.attention_compute_efficiency)


def decode_step(shape: Shape, traffic: WeightTraffic, dev: Device, eff: Efficiency, *, batch: int, context: int,
                kv_bytes: float) -> StepTime:
    w_shards, kv_shards = _shards(shape, eff, dev.gpus)
    weight_bytes = traffic.bytes_for(batch) / w_shards
    kv = batch * (kv_bytes_read(shape, context, kv_bytes, kv_shards) * eff.kv_traffic_factor
                  + state_bytes_rw(shape, kv_shards))
    bw = dev.bandwidth_gbps * 1e9
    memory_s = weight_bytes / (bw * eff.decode_bw) + kv / (bw * eff.decode_bandwidth_efficiency)
    linear = 2 * traffic.active_params * batch / w_shards
    attn = batch * attention_flops(shape, context) / w_shards
    flops = linear + attn
    compute_s = _compute_s(dev, eff, linear, attn)
    overhead_s = step_overhead_s(shape, eff)
    comm_s = allreduce_s(dev, eff, shape.layers, batch, shape.hidden)
    total = max(memory_s, compute_s) + overhead_s + comm_s
    return StepTime(total, memory_s, compute_s, overhead_s, comm_s, weight_bytes + kv, flops, kv)


def prefill(shape: Shape, traffic: WeightTraffic, dev: Device, eff: Efficiency, *, batch: int,
            tokens: int) -> StepTime:
    """Time to prefill `batch` prompts of `tokens` tokens each (TTFT of the whole batch)."""
    w_shards, _ = _shards(shape, eff, dev.gpus)
    total_tokens = batch * tokens
    chunk = min(eff.prefill_chunk_tokens or total_tokens, total_tokens)
    chunks = math.ceil(total_tokens / chunk)
    linear = 2 * traffic.active_params * total_tokens / w_shards
    attn = batch * prefill_attention_flops(shape, 0, tokens) / w_shards
    flops = linear + attn
    weight_bytes = chunks * traffic.bytes_for(chunk) / w_shards
    bw = dev.bandwidth_gbps * 1e9
    memory_s = weight_bytes / (bw * eff.decode_bw)
    compute_s = _compute_s(dev, eff, linear, attn)
    overhead_s = chunks * step_overhead_s(shape, eff)
    comm_s = chunks * allreduce_s(dev, eff, shape.layers, chunk, shape.hidden)
    total = max(memory_s, compute_s) + overhead_s + comm_s
    return StepTime(total, memory_s, compute_s, overhead_s, comm_s, weight_bytes, flops, 0.0)
