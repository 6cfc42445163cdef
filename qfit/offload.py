"""Host memory as a second tier (`qfit plan --ram 64GB`): when a model does not fit on its GPU(s), the split an engine
that supports one would use, the memory each side holds, and what the split does to speed.

llama.cpp only (profiles/planner/offload.yaml says why the others are not modelled):
  MoE    `--n-cpu-moe N`: the routed experts of the first N layers live in host memory and the CPU computes them.
         N is the smallest that makes the rest (attention, shared experts, KV, activations, overhead) fit.
  dense  `-ngl N`: the last N layers on the GPU, the others (with their KV) and the embedding/output in host memory.
         N is the largest that fits.
Speed (llama.cpp runs the two sides one after the other, no overlap): a decode step of B tokens takes the GPU's time for
what stays on it plus, for B below the op-offload threshold, the host bytes actually read (routed experts: the expected
distinct experts at B, `expert_coverage`) over host bandwidth; at or above it, and for every prefill micro-batch, the
host weights are copied to the GPU over PCIe instead.

`host_memory` is the edge (reads the YAML facts and, for `--cpu host`, /proc/cpuinfo) and hands them on inside
HostMemory; the planning functions are pure.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

from qfit.errors import QfitError
from qfit.memory import GIB
from qfit.paths import profiles_dir
from qfit.perf.efficiency import widen
from qfit.perf.workload import expert_coverage
from qfit.precision.weights import EXPERT_ROLES
from qfit.yamlcache import load_records

_BANDWIDTH = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(gb|tb|mb)?\s*(/s|ps)?\s*$", re.IGNORECASE)
_SCALE = {"mb": 1e-3, "gb": 1.0, "tb": 1e3}
MAX_GBPS = 100_000.0


def facts() -> dict:
    return load_records(profiles_dir() / "planner")["offload"]


def parse_bandwidth(text: str) -> float:
    """'80GB/s', '80 GB/s', '80GBps', '1.2TB/s' or '80' (GB/s) -> decimal GB/s."""
    m = _BANDWIDTH.match(str(text))
    if not m:
        raise QfitError(f"--ram-bandwidth {text!r} is not a bandwidth (e.g. 80GB/s)")
    gbps = float(m.group(1)) * _SCALE[(m.group(2) or "gb").lower()]
    if not 0 < gbps <= MAX_GBPS:
        raise QfitError(f"--ram-bandwidth {text!r} must be above 0 and at most {MAX_GBPS:g} GB/s")
    return gbps


@dataclass(frozen=True)
class HostMemory:
    """The second tier: RAM the model may use, and the bandwidth a streaming kernel gets from it."""

    bytes: float
    bandwidth_gbps: float     # what the speed model uses (a theoretical figure already scaled to sustained)
    source: str
    facts: dict = field(default_factory=dict, repr=False, compare=False)   # profiles/planner/offload.yaml

    def support(self, engine: str) -> dict | None:
        """How `engine` splits a model between GPU and host (None: it has no such split)."""
        return (self.facts.get("engines") or {}).get(engine)

    def unsupported_note(self, engine: str) -> str:
        return (self.facts.get("unsupported") or {}).get(engine, f"{engine}: no host-memory offload modelled")

    def to_dict(self) -> dict:
        return {"ram_gib": self.bytes / GIB, "bandwidth_gbps": round(self.bandwidth_gbps, 2),
                "bandwidth_source": self.source}


def _table_bandwidth(cpu: str, sustained: float) -> tuple[float, str]:
    from qfit import host

    if cpu.strip().lower() == "host":
        model = host.parse_cpuinfo(host._read("/proc/cpuinfo")).model
        found = host.cached_bandwidth(model)
        if found:
            return found[0], f"this machine's {model}: {found[1]}"
        cpu = model
    row = host.table_bandwidth(cpu)
    if row is None:
        known = ", ".join(r["platform"] for r in host._facts()["platforms"])
        raise QfitError(f"--cpu {cpu!r}: no known platform matches (known: {known}); give --ram-bandwidth instead")
    return row[0] * sustained, f"{row[1]} x {sustained:g} sustained"


def host_memory(ram: str, bandwidth: str | None = None, cpu: str | None = None) -> HostMemory:
    """Parse --ram / --ram-bandwidth / --cpu once, at the boundary. Bandwidth, in order: --ram-bandwidth (taken as
    sustained), --cpu (a known platform's theoretical figure scaled to sustained, or `host`: this machine's recorded
    measurement), else the typical-desktop assumption of profiles/planner/offload.yaml."""
    from qfit.units import parse_bytes

    size, f = parse_bytes(ram), facts()
    hb = f["host_bandwidth"]
    sustained = float(hb["sustained_fraction"])
    if bandwidth is not None:
        return HostMemory(size, parse_bandwidth(bandwidth), "--ram-bandwidth (taken as sustained)", f)
    if cpu is not None:
        gbps, source = _table_bandwidth(cpu, sustained)
        return HostMemory(size, gbps, source, f)
    gbps = float(hb["default_gbps"]) * sustained
    return HostMemory(size, gbps, f"ASSUMED {hb['default_what']} x {sustained:g} sustained (profiles/planner/"
                                  "offload.yaml); give --ram-bandwidth or --cpu for your host", f)


@dataclass(frozen=True)
class Offload:
    """A split of one deployment between GPU and host memory. `cpu_expert_layers` is --n-cpu-moe's N (MoE; 0 for
    dense), `gpu_layers` -ngl's N (dense; every layer for MoE): plain ints, for launch commands."""

    kind: str                   # "moe_experts" | "layers"
    cpu_expert_layers: int
    gpu_layers: int
    layers: int
    gpu_bytes_per_gpu: float    # what each GPU holds with the split
    host_weight_bytes: float
    host_kv_bytes: float
    host: HostMemory
    pcie_gbps: float
    pcie_source: str
    fits: bool
    reason: str
    host_read_bytes: float = 0.0    # host bytes one decode step of the plan's batch reads (set by `apply_speed`)

    @property
    def host_bytes(self) -> float:
        return self.host_weight_bytes + self.host_kv_bytes

    @property
    def flag(self) -> str:
        return f"--n-cpu-moe {self.cpu_expert_layers}" if self.kind == "moe_experts" else f"-ngl {self.gpu_layers}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "cpu_expert_layers": self.cpu_expert_layers, "gpu_layers": self.gpu_layers,
                "layers": self.layers, "flag": self.flag, "fits": self.fits, "reason": self.reason,
                "gpu_per_gpu_gib": self.gpu_bytes_per_gpu / GIB, "host_gib": self.host_bytes / GIB,
                "host_weights_gib": self.host_weight_bytes / GIB, "host_kv_gib": self.host_kv_bytes / GIB,
                "host_read_per_step_gb": self.host_read_bytes / 1e9, "pcie_gbps": self.pcie_gbps,
                "pcie_source": self.pcie_source, **self.host.to_dict()}


@dataclass(frozen=True)
class Split:
    """Weight bytes of a deployment by where llama.cpp can put them (from the recipe's bytes per role)."""

    expert: float       # routed experts, all MoE layers
    moe_layers: tuple[int, ...]
    outer: float        # token embedding + output matrix
    head: float         # what the output matmul reads per step (lm_head, or the tied embedding)
    layer: float        # everything else per repeating layer (vision tower excluded: it stays with the GPU)


def split_of(dep) -> Split:
    by_role = dict(dep.weights.recipe.by_role)
    spec = dep.model.spec
    expert = float(sum(v for r, v in by_role.items() if r in EXPERT_ROLES))
    outer = float(by_role.get("embed", 0) + by_role.get("lm_head", 0))
    head = float(by_role.get("lm_head") or by_role.get("embed", 0))
    rest = float(sum(v for r, v in by_role.items() if r not in EXPERT_ROLES | {"embed", "lm_head", "vision"}))
    moe_layers = tuple(sorted(spec.moe.moe_layers)) if spec.moe and expert else ()
    return Split(expert, moe_layers, outer, head, (rest + (0.0 if moe_layers else expert)) / spec.layers)


def _pcie(dep) -> tuple[float, str]:
    return dep.engine.policy.pcie_gbps(dep.acc)


def plan_moe(dep, need_per_gpu: float, host: HostMemory) -> Offload:
    """Smallest --n-cpu-moe N whose experts, moved to host memory, bring each GPU within its budget."""
    s, gpus = split_of(dep), dep.gpus
    per_layer = s.expert / len(s.moe_layers)
    k = max(0, math.ceil((need_per_gpu - dep.budget) * gpus / per_layer - 1e-9))
    pcie, pcie_src = _pcie(dep)
    total = len(s.moe_layers)
    if k > total:
        gpu = need_per_gpu - s.expert / gpus
        return Offload("moe_experts", dep.model.spec.layers, dep.model.spec.layers, dep.model.spec.layers, gpu,
                       s.expert, 0.0, host, pcie, pcie_src, False,
                       f"does not fit even with all {total} expert layers on CPU: each GPU needs {gpu / GIB:.1f} GiB, "
                       f"{dep.budget / GIB:.1f} GiB available")
    n = s.moe_layers[k - 1] + 1 if k else 0
    host_w = k * per_layer
    off = Offload("moe_experts", n, dep.model.spec.layers, dep.model.spec.layers, need_per_gpu - host_w / gpus,
                  host_w, 0.0, host, pcie, pcie_src, True, f"fits with {n} expert layers on CPU (--n-cpu-moe {n})")
    return _check_ram(off, f"the experts of {n} layers on CPU")


def plan_dense(dep, need_per_gpu: float, kv_total: float, host: HostMemory) -> Offload:
    """Largest -ngl N (layers on the GPU) that fits: the other layers, their KV and embedding/output go to the host."""
    s, gpus, layers = split_of(dep), dep.gpus, dep.model.spec.layers
    kv_layer = kv_total / layers
    # GPU(N) = need - (outer + (L - N) * (layer + kv_layer)) / gpus <= budget
    free = (dep.budget - need_per_gpu) * gpus + s.outer + layers * (s.layer + kv_layer)
    n = min(layers, math.floor(free / (s.layer + kv_layer) + 1e-9))
    pcie, pcie_src = _pcie(dep)
    if n < 0:
        gpu = need_per_gpu - (s.outer + layers * (s.layer + kv_layer)) / gpus
        return Offload("layers", 0, 0, layers, gpu, s.outer + layers * s.layer, kv_total, host, pcie, pcie_src,
                       False, f"does not fit even with every layer on CPU (-ngl 0): each GPU needs {gpu / GIB:.1f} "
                              f"GiB, {dep.budget / GIB:.1f} GiB available")
    cpu_layers = layers - n
    host_w, host_kv = s.outer + cpu_layers * s.layer, cpu_layers * kv_layer
    off = Offload("layers", 0, n, layers, need_per_gpu - (host_w + host_kv) / gpus, host_w, host_kv, host, pcie,
                  pcie_src, True, f"fits with {n} of {layers} layers on GPU (-ngl {n})")
    return _check_ram(off, f"{cpu_layers} layers on CPU")


def _check_ram(off: Offload, what: str) -> Offload:
    if off.host_bytes <= off.host.bytes:
        return off
    return replace(off, fits=False, reason=f"does not fit: {what} need {off.host_bytes / GIB:.1f} GiB RAM, --ram gives "
                                           f"{off.host.bytes / GIB:.1f} GiB")


def plan_offload(dep, mem, host: HostMemory) -> Offload | None:
    """The split for a deployment whose memory breakdown `mem` exceeds the budget; None when the engine has none."""
    how = host.support(dep.engine.name)
    if how is None:
        return None
    if dep.model.spec.moe is not None and split_of(dep).moe_layers and how.get("moe") == "n_cpu_moe":
        return plan_moe(dep, mem.per_gpu, host)
    return plan_dense(dep, mem.per_gpu, mem.kv_cache, host)


def _host_read(off: Offload, s: Split, dep, batch: int, depth: float) -> tuple[float, float]:
    """(weight bytes, KV bytes) the host side reads in one decode step of `batch` tokens."""
    if off.kind == "moe_experts":
        m = dep.model.spec.moe
        return off.host_weight_bytes * expert_coverage(m.num_experts, m.top_k, batch), 0.0
    cpu_layers = off.layers - off.gpu_layers
    # the embedding is a row lookup; the output matmul reads the whole head; the KV of host layers is read up to the
    # depth decode is timed at (`depth`: that depth over the context the KV was allocated for)
    return cpu_layers * s.layer + s.head, off.host_kv_bytes * min(1.0, depth)


def apply_speed(est, off: Offload, dep, batch: int, prompt: int, output_len: int | None = None,
                depth: float = 1.0):
    """The plan's PerfEstimate with the split applied (see the module doc); a new object, `est` unchanged."""
    s, eff = split_of(dep), dep.engine.efficiency(dep.acc.backend, dep.recipe.name)
    b = dict(est.breakdown)
    min_batch = int(off.host.support(dep.engine.name)["op_offload_min_batch"])
    w_read, kv_read = _host_read(off, s, dep, batch, depth)
    gpu_bw = dep.acc.bandwidth_gbps * 1e9
    # the GPU no longer reads what moved: its memory time loses those bytes
    memory_s = max(0.0, b["decode_memory_s"] - w_read / (gpu_bw * eff.decode_bw)
                   - kv_read / (gpu_bw * eff.decode_bandwidth_efficiency))
    host_bw = off.host.bandwidth_gbps * 1e9
    pcie = off.pcie_gbps * 1e9
    if batch >= min_batch:   # the scheduler copies the host weights to the GPU (whole tensors) and runs them there
        host_s = off.host_weight_bytes / pcie + kv_read / host_bw
    else:
        host_s = (w_read + kv_read) / host_bw
    step = (max(memory_s, b["decode_compute_s"]) + b["decode_overhead_s"] + b["decode_comm_s"] + host_s)
    step /= eff.decode_speed_factor
    chunk = min(eff.prefill_chunk_tokens or batch * prompt, batch * prompt)
    chunks = math.ceil(batch * max(prompt, 1) / max(chunk, 1))
    copy_s = chunks * off.host_weight_bytes / pcie if chunk >= min_batch else chunks * off.host_weight_bytes / host_bw
    pre_s = est.ttft_s + copy_s / eff.prefill_speed_factor if prompt else 0.0
    b.update(offload_host_s=host_s, offload_host_read_bytes=round(w_read + kv_read), offload_prefill_copy_s=copy_s)
    out = replace(est, decode_tokens_per_s=1.0 / step, tpot_s=step, aggregate_tokens_per_s=batch / step,
                  ttft_s=pre_s, prefill_tokens_per_s=batch * max(prompt, 1) / pre_s if pre_s else
                  est.prefill_tokens_per_s, breakdown=b,
                  assumptions=list(est.assumptions) + _speed_assumptions(off, min_batch),
                  error_band=widen(dict(est.error_band), 2.0, "host-memory offload (no offload rows in the "
                                                              "calibration set)"))
    if output_len:
        out.e2e_s = pre_s + output_len * step
        out.e2e_tokens_per_s = output_len / out.e2e_s
    return out, replace(off, host_read_bytes=w_read + kv_read)


def _speed_assumptions(off: Offload, min_batch: int) -> list[str]:
    what = ("routed experts of offloaded layers: the CPU reads the expected distinct experts of the batch"
            if off.kind == "moe_experts" else "offloaded layers, their KV and the output matrix: the CPU reads them")
    return [f"offload ({off.flag}): GPU and CPU run one after the other each step; {what} at "
            f"{off.host.bandwidth_gbps:.1f} GB/s host bandwidth ({off.host.source})",
            f"offload: llama.cpp copies host weights to the GPU over {off.pcie_source} at {off.pcie_gbps:g} GB/s for "
            f"ops of >= {min_batch} tokens (op offload, ggml scheduler; recalled from llama.cpp source, not "
            "measured): every prefill micro-batch, and decode at batch >= that",
            "offload: host memory counts the offloaded weights and KV only; llama.cpp mmaps the GGUF file, so the page "
            "cache may hold more while loading; not modelled (so the decode figure is optimistic): CPU compute of the "
            "offloaded part (taken as memory-bound) and the GPU-CPU hand-off of activations at each split layer"]
