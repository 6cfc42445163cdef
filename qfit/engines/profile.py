"""EngineProfile: everything the planner knows about one inference engine, from profiles/engines/<engine>.yaml.

Pure data once loaded (qfit/engines/load.py reads the file, resolves speed priors across engines and applies the
user's calibration overlay): memory behaviour (reserved fraction, KV layout, activation peak, runtime overhead),
multi-GPU mode, which weight families it runs on which device backend, the names users type for it, and its speed
factors per device backend, turned into a qfit.perf Efficiency for a precision on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from qfit.errors import QfitError

BACKENDS = ("cuda", "rocm", "xpu", "metal", "cpu")
FAMILIES = ("float", "fp8", "int8", "gptq", "awq", "bnb", "mxfp", "gguf")
MULTI_GPU = ("tensor_parallel", "layer_split")


@dataclass(frozen=True)
class Extrapolation:
    """Widen speed bands by `factor` where an estimate leaves what the calibration covered."""

    when: str                  # moe | multi_gpu | params_over
    factor: float
    why: str
    value: float | None = None

    def applies(self, is_moe: bool, params: float, gpus: int) -> bool:
        if self.when == "moe":
            return is_moe
        if self.when == "multi_gpu":
            return gpus > 1
        return params > (self.value or 0)


@dataclass(frozen=True)
class Policy:
    """profiles/planner/policy.yaml: judgements applied to every engine (each with its basis)."""

    memory_band_pct: float
    memory_band_basis: str
    transfer_floor_pct: float
    transfer_floor_basis: str
    borrowed_band_multiplier: float
    extrapolation: tuple[Extrapolation, ...]
    pcie_fallback_gbps: float
    pcie_gbps_per_lane: dict[int, float]
    gpus_per_node: int
    device_support: tuple[DeviceNeed, ...] = ()
    long_context: dict = field(default_factory=dict)   # profiles/planner/long_context.yaml (qfit/perf/depth.py)

    def device_need(self, precision: str, acc) -> DeviceNeed | None:
        """The rule that keeps `precision` off `acc`, if any."""
        from fnmatch import fnmatchcase

        return next((n for n in self.device_support
                     if acc.family in n.lacking and fnmatchcase(precision, n.precision)), None)

    def pcie_gbps(self, acc) -> tuple[float, str]:
        """A card's PCIe link per direction and how it is known (its generation x lanes, or the Gen4 x16 fallback)."""
        if acc.pcie_gen in self.pcie_gbps_per_lane and acc.pcie_lanes:
            return (self.pcie_gbps_per_lane[acc.pcie_gen] * acc.pcie_lanes,
                    f"PCIe {acc.pcie_gen}.0 x{acc.pcie_lanes}")
        return self.pcie_fallback_gbps, "PCIe (4.0 x16 assumed)"


@dataclass(frozen=True)
class DeviceNeed:
    """A precision (glob) that device families lacking a hardware feature cannot run; `instead` stands in for it."""

    precision: str
    lacking: frozenset[str]
    why: str
    instead: str | None = None


@dataclass(frozen=True)
class SpeedEntry:
    """One device backend's speed factors after following `priors` (possibly another engine's)."""

    params: dict[str, Any]     # decode_bandwidth_efficiency, overhead_*_us, prefill/attention efficiency, formats, ...
    notes: tuple[str, ...]     # how the factors were obtained when they were borrowed
    band_multiplier: float     # > 1 when borrowed: the error band widens by this


@dataclass(frozen=True)
class Overlay:
    """Factors `qfit calibrate` wrote for one device backend (user config dir), applied to every estimate."""

    decode: float
    prefill: float
    points: int
    path: str


@dataclass(frozen=True, eq=False)
class EngineProfile:
    name: str
    description: str
    memory_fraction: float | None
    kv: dict[str, Any]
    activation: dict[str, Any]
    runtime_overhead_gib: dict[str, float]
    tp_overhead_gib: float
    multi_gpu: str                              # tensor_parallel | layer_split
    runs: dict[str, frozenset[str]]             # backend -> weight families
    kv_dtypes: tuple[str, ...]                  # KV cache dtypes the engine can store
    default_on: tuple[str, ...]
    aliases: dict[str, str | None]              # name -> note (None: the same engine under another name)
    measure: dict | None    # python package qfit profile drives: {import, install[, max_batch: sequences it holds]}
    speed: dict[str, SpeedEntry]                # backend -> resolved factors
    speed_default_backend: str
    prefill_chunk_tokens: int
    allreduce_latency_us: dict[str, float]
    policy: Policy
    overlays: dict[str, Overlay] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    note: str | None = None                     # set when the user's name was mapped to this engine
    unsupported_families: dict[str, str] = field(default_factory=dict)   # device family -> why the engine cannot
    moe_expert_loop_us: float = 0.0             # speed.moe_expert_loop.us: per expert per routed layer per step
    moe_expert_loop_note: str = ""              # the assumption a MoE plan states when the loop cost applies
    format_warnings: tuple[tuple[str, str, float], ...] = ()   # (precision glob, warning, us per linear call)
    _efficiency: dict = field(default_factory=dict, repr=False)

    @property
    def tensor_parallel(self) -> bool:
        return self.multi_gpu == "tensor_parallel"

    def runs_on(self, backend: str) -> bool:
        return backend in self.runs

    def overhead_gib(self, backend: str) -> float:
        if backend not in self.runtime_overhead_gib:
            raise QfitError(f"engine {self.name} does not run on a {backend} device")
        return float(self.runtime_overhead_gib[backend])

    def speed_entry(self, backend: str) -> SpeedEntry:
        """The backend's factors; a backend without an entry borrows the default one's, band widened."""
        if backend in self.speed:
            return self.speed[backend]
        base = self.speed[self.speed_default_backend]
        m = self.policy.borrowed_band_multiplier
        note = f"{self.name} on {backend}: no profile, borrowed {self.speed_default_backend} (error band x{m:g})"
        return SpeedEntry(base.params, (note,) + base.notes, base.band_multiplier * m)

    def efficiency(self, backend: str, precision: str):
        """qfit.perf Efficiency for this backend and weight format (memoised: a size search asks thousands of times)."""
        key = (backend, precision)
        if key not in self._efficiency:
            from qfit.perf.efficiency import efficiency_for

            self._efficiency[key] = efficiency_for(self, backend, precision)
        return self._efficiency[key]

    def with_note(self, note: str | None) -> EngineProfile:
        return self if note is None else replace(self, note=note)
