"""Host CPU as a device: parsing is pure; bandwidth comes from a cited table or a recorded measurement, never a guess."""

from __future__ import annotations

import pytest

from qfit.errors import QfitError
from qfit.host import (
    host_accelerator,
    parse_cpuinfo,
    parse_meminfo,
    record_bandwidth,
    table_bandwidth,
)

CPUINFO = "\n\n".join(
    f"processor\t: {i}\nmodel name\t: AMD EPYC 9654 96-Core Processor\nphysical id\t: 0\ncore id\t: {i // 2}\n"
    f"cpu MHz\t\t: 2400.000\nflags\t\t: fpu sse2 avx avx2 fma avx512f" for i in range(8))
MEMINFO = "MemTotal:       65536000 kB\nMemFree:        1000 kB\nMemAvailable:   49152000 kB\n"


def test_parse_cpuinfo_counts_physical_cores_and_clock():
    cpu = parse_cpuinfo(CPUINFO, logical=8)
    assert (cpu.physical_cores, cpu.logical_cpus, cpu.sockets, cpu.mhz) == (4, 8, 1, 2400.0)
    assert "avx512f" in cpu.flags


def test_host_accelerator_from_table(tmp_path):
    acc = host_accelerator(CPUINFO, MEMINFO, cache=tmp_path / "host.json")
    assert acc.vendor == "cpu" and acc.bandwidth_gbps == 460.8          # Genoa: 12 ch DDR5-4800
    assert acc.tflops.fp32 == pytest.approx(4 * 2.4e9 * 64 / 1e12)     # AVX-512: 64 FP32 FLOPs/cycle
    assert acc.usable_memory_fraction == pytest.approx(0.75)
    assert "TOMS-GENOA" in dict(acc.sources)["bandwidth_gbps"]   # resolved in cpus.yaml `references`


def test_unknown_cpu_needs_a_measurement(tmp_path):
    text = CPUINFO.replace("AMD EPYC 9654 96-Core Processor", "Mystery CPU")
    with pytest.raises(QfitError, match="bandwidth"):
        host_accelerator(text, MEMINFO, cache=tmp_path / "host.json")
    record_bandwidth("Mystery CPU", 71.3, "numpy copy", cache=tmp_path / "host.json")
    acc = host_accelerator(text, MEMINFO, cache=tmp_path / "host.json")
    assert acc.bandwidth_gbps == 71.3 and "measured" in dict(acc.sources)["bandwidth_gbps"]


def test_table_and_meminfo_edges():
    assert table_bandwidth("Intel(R) Xeon(R) Platinum 8480+")[0] == 307.2
    assert table_bandwidth("Intel(R) Core(TM) i9-13900K") is None
    with pytest.raises(QfitError):
        parse_meminfo("garbage")
