"""The Accelerator: one device's memory, bandwidth, dense peak throughput, interconnect and prices, each figure with
its source (profiles/gpus/*.yaml; catalog.py reads and validates them). Pure data: no I/O, no torch."""

from __future__ import annotations

from dataclasses import dataclass, replace

from qfit.errors import QfitError

TFLOPS_KEYS = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp4")
VENDORS = ("nvidia", "amd", "intel", "apple", "cpu")
SEGMENTS = ("datacenter", "workstation", "consumer", "unified", "cpu")
# BF16 and FP16 run at the same tensor rate on every catalogued part that has both; where one is unknown (or the part
# lacks BF16 and engines cast to FP16, as vLLM does on V100/T4) the other is the honest stand-in. Nothing else falls back.
_FALLBACK = {"fp16": "bf16", "bf16": "fp16"}
# Which engine backend a vendor's devices run (CUDA on NVIDIA, ROCm/HIP on AMD, Metal on Apple, XPU/SYCL on Intel).
BACKEND_OF_VENDOR = {"nvidia": "cuda", "amd": "rocm", "apple": "metal", "intel": "xpu", "cpu": "cpu"}


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
    def pcie_attached(self) -> bool:
        """A card in a PCIe slot: a host can hold several beside each other whatever its bridge or NVLink joins."""
        return self.pcie_gen is not None and "pcie" in (self.form_factor or "").lower()

    def tp_limit(self, gpus_per_node: int) -> int:
        """The largest tensor-parallel group of this device in one node (the rule plan and size share). PCIe cards go
        up to the node's GPU count: past their scale-up domain (e.g. NVLink-bridge pairs) TP runs over PCIe, which
        works, only slower. Modules without a PCIe slot (SXM boards, SoCs, Macs) stop at their interconnect domain."""
        if self.pcie_attached:
            return gpus_per_node
        return min(gpus_per_node, self.interconnect.max_gpus)

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
        fraction = usable_fraction(self.default_usable_fraction, self.small_memory_rule, match[0])
        return replace(self, memory_gib=match[0], usable_memory_fraction=fraction)

    @property
    def backend(self) -> str:
        """The software stack engines run on this device: the key of engine profiles' `runs` and speed factors."""
        return BACKEND_OF_VENDOR[self.vendor]

    def to_dict(self) -> dict:
        return {
            "key": self.key, "backend": self.backend, "name": self.name, "aliases": list(self.aliases), "vendor": self.vendor,
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




def usable_fraction(default: float, rule: tuple[float, float] | None, gib: float) -> float:
    if rule and gib <= rule[1]:
        return rule[0]
    return default
