"""The host CPU as a device (`--gpu cpu`): an Accelerator built from /proc/cpuinfo, os.cpu_count and /proc/meminfo.

Memory bandwidth, which sets CPU decode speed, never comes from a made-up constant. In order of preference:
  1. a measurement recorded on this machine, cached in host.json in qfit's cache folder (qfit.paths) and keyed by CPU
     model: the probe of qfit/host_bandwidth.py (repeated until stable, with its spread, date and load average;
     re-measured when stale or flagged), or a figure recorded with `record_bandwidth`;
  2. the theoretical peak of the CPU's platform (channels x 8 bytes x MT/s) from profiles/hosts/cpus.yaml, whose rows
     cite shared/reference/hardware_facts.md Table 4 (and its sources);
  3. otherwise a QfitError that says how to record a measurement.
Peak FP32 FLOPS = physical cores x clock x FLOPs per cycle from the vector ISA flags (derived, and said so).
Parsing is pure (`parse_cpuinfo`, `parse_meminfo`); reading /proc is the thin I/O layer around it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from qfit import host_bandwidth
from qfit.errors import QfitError
from qfit.paths import profiles_dir
from qfit.yamlcache import load_records


def _facts() -> dict:
    """profiles/hosts/cpus.yaml: platform bandwidth table and FLOPs per cycle per ISA, each with its source."""
    return load_records(profiles_dir() / "hosts")["cpus"]


@dataclass(frozen=True)
class CpuInfo:
    model: str
    sockets: int
    physical_cores: int
    logical_cpus: int
    mhz: float | None          # nominal clock from the model name, else the max reported "cpu MHz"
    flags: frozenset[str]


def parse_cpuinfo(text: str, logical: int | None = None) -> CpuInfo:
    blocks = [b for b in text.strip().split("\n\n") if b.strip()]
    fields = [dict((k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in b.splitlines())) for b in blocks]
    model = next((f.get("model name") or f.get("Model name") for f in fields if f.get("model name") or
                  f.get("Model name")), "") or "unknown CPU"
    sockets = len({f.get("physical id", "0") for f in fields}) or 1
    cores = {(f.get("physical id", "0"), f.get("core id", str(i))) for i, f in enumerate(fields)}
    flags = frozenset((fields[0].get("flags") or fields[0].get("Features") or "").split()) if fields else frozenset()
    m = re.search(r"@\s*([\d.]+)\s*GHz", model)
    mhz = float(m.group(1)) * 1000 if m else max((float(f["cpu MHz"]) for f in fields if "cpu MHz" in f),
                                                  default=None)
    return CpuInfo(model, sockets, len(cores) or (logical or 1), logical or len(fields) or 1, mhz, flags)


def parse_meminfo(text: str) -> tuple[float, float]:
    """-> (MemTotal, MemAvailable) in bytes."""
    vals = {k: int(v.split()[0]) * 1024 for k, _, v in (ln.partition(":") for ln in text.splitlines()) if v.strip()}
    total = vals.get("MemTotal")
    if not total:
        raise QfitError("cannot read MemTotal from /proc/meminfo")
    return float(total), float(vals.get("MemAvailable", total))


def table_bandwidth(model: str) -> tuple[float, str] | None:
    for row in _facts()["platforms"]:
        if re.search(row["match"], model):
            gbps = float(row["gbps_per_socket"])
            return gbps, (f"{row['platform']}: {row['memory']}, theoretical {gbps:g} GB/s per socket "
                          f"({row['source']}; profiles/hosts/cpus.yaml)")
    return None


def peak_fp32_tflops(cpu: CpuInfo) -> tuple[float | None, str]:
    per_cycle = next((int(r["fp32"]) for r in _facts()["flops_per_cycle"] if r["flag"] in cpu.flags), None)
    if not per_cycle or not cpu.mhz:
        return None, "no FLOPS figure: vector ISA or clock unknown"
    tflops = cpu.physical_cores * cpu.mhz * 1e6 * per_cycle / 1e12
    return tflops, (f"derived: {cpu.physical_cores} cores x {cpu.mhz / 1000:.2f} GHz x {per_cycle} FP32 FLOPs/cycle "
                    "(ISA flags), peak not sustained")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise QfitError(f"cannot read {path} to describe the host CPU: {exc.strerror}") from None


def cached_bandwidth(model: str, cache: Path | None = None) -> tuple[float, str] | None:
    entry = host_bandwidth.cached_entry(model, cache)
    return (float(entry["gbps"]), host_bandwidth.describe(entry)) if entry else None


def record_bandwidth(model: str, gbps: float, how: str, cache: Path | None = None) -> None:
    """Store a bandwidth the user measured (e.g. with STREAM) for this CPU model (atomic write). It is the user's
    statement: kept as recorded, never replaced by the probe (which under-reads a many-channel server)."""
    host_bandwidth.store(model, {"gbps": round(gbps, 2), "how": how, "date": time.strftime("%Y-%m-%d"),
                                 "recorded": True}, cache)


def measure_bandwidth() -> float:
    """A stable figure now (qfit/host_bandwidth.py: repeated until the last runs agree), in GB/s."""
    return host_bandwidth.measure()["gbps"]


def _bandwidth(model: str, cache: Path | None, measure: bool) -> tuple[float, str] | None:
    """A recorded measurement (re-measured first when stale or flagged, if `measure`), else the platform table, else
    a measurement now (if `measure`)."""
    entry, table = host_bandwidth.cached_entry(model, cache), table_bandwidth(model)
    stale = entry is not None and host_bandwidth.needs_measuring(entry, host_bandwidth.now(),
                                                                 host_bandwidth.probe_params())
    if measure and (stale or (entry is None and table is None)):
        entry = host_bandwidth.measure()
        host_bandwidth.store(model, entry, cache)
    if entry is not None:
        return float(entry["gbps"]), host_bandwidth.describe(entry)
    return table


def host_accelerator(cpuinfo: str | None = None, meminfo: str | None = None, cache: Path | None = None,
                     measure: bool = False):
    """The host as an Accelerator (vendor "cpu"). `measure=True` takes a bandwidth figure (a probe of about a second,
    cached per CPU model) when none is recorded or tabled, or when the recorded one is stale or flagged
    (qfit/host_bandwidth.py); without a figure it raises QfitError."""
    from qfit.hardware import Accelerator, Interconnect, Tflops

    cpu = parse_cpuinfo(cpuinfo if cpuinfo is not None else _read("/proc/cpuinfo"), os.cpu_count())
    total, avail = parse_meminfo(meminfo if meminfo is not None else _read("/proc/meminfo"))
    bw = _bandwidth(cpu.model, cache, measure)
    if bw is None:
        raise QfitError(f"no memory-bandwidth figure for {cpu.model!r}: record one with "
                        "`python -c \"from qfit.host import *; c=parse_cpuinfo(open('/proc/cpuinfo').read()); "
                        "record_bandwidth(c.model, measure_bandwidth(), 'numpy copy')\"` or `qfit profile`")
    gbps, bw_source = bw
    if cpu.sockets > 1 and "theoretical" in bw_source:
        bw_source += "; one socket counted: a decode stream sees the NUMA node holding its weights"
    tflops, fl_source = peak_fp32_tflops(cpu)
    return Accelerator(
        key="cpu", name=f"{cpu.model} (host CPU)", aliases=("cpu", "host"), vendor="cpu", family="cpu", segment="cpu",
        memory_gib=total / 2**30, memory_type="system RAM", memory_options_gib=(total / 2**30,),
        usable_memory_fraction=avail / total, bandwidth_gbps=gbps, tflops=Tflops(fp32=tflops),
        interconnect=Interconnect("none", None, 1),
        sources=(("bandwidth_gbps", bw_source), ("tflops", fl_source),
                 ("memory_gib", "/proc/meminfo MemTotal; usable share = MemAvailable / MemTotal at planning time")),
        notes=f"{cpu.physical_cores} physical cores, {cpu.logical_cpus} logical CPUs, {cpu.sockets} socket(s)")
