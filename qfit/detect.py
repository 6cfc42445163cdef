"""What hardware is this? `--gpu auto` names the local accelerators the way the catalog spells them.

In order: NVIDIA through NVML (nvidia-ml-py, when installed) or `nvidia-smi`; AMD through `rocm-smi`; Apple silicon
through `sysctl` (chip, memory) and the IORegistry (GPU cores); otherwise the host CPU. The parsers are pure and take
the tools' text, so they are tested on captured outputs; running the tools is the thin layer around them.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass

from qfit.errors import QfitError


@dataclass(frozen=True)
class Detected:
    name: str      # a spelling the accelerator catalog resolves ("NVIDIA RTX A6000", "Apple M3 Max 96GB 30-core")
    count: int     # devices of that kind (the first kind found, when several differ)
    how: str       # which tool said so


def parse_nvidia_smi(text: str) -> list[tuple[str, float]]:
    """`nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` -> [(name, MiB)]."""
    rows = []
    for line in text.strip().splitlines():
        name, _, mem = line.rpartition(",")
        if name.strip() and re.fullmatch(r"\s*\d+(\.\d+)?\s*", mem):
            rows.append((name.strip(), float(mem)))
    return rows


def parse_rocm_smi(text: str) -> list[tuple[str, float]]:
    """`rocm-smi --showproductname --showmeminfo vram --json` -> [(product name, MiB)]."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    rows = []
    for card, info in sorted(data.items()) if isinstance(data, dict) else ():
        if not card.startswith("card") or not isinstance(info, dict):
            continue
        fields = {k.lower(): v for k, v in info.items()}
        name = fields.get("card series") or fields.get("card model") or fields.get("device name")
        vram = fields.get("vram total memory (b)")
        if name:
            rows.append((str(name).strip(), float(vram) / 2**20 if vram else 0.0))
    return rows


def apple_device_name(brand: str, memory_bytes: int, gpu_cores: int | None) -> str:
    """'Apple M3 Max' + 96 GiB + 30 cores -> 'Apple M3 Max 96GB 30-core': the spelling the catalog lookup resolves to
    that chip's memory configuration and GPU variant."""
    name = f"{brand.strip()} {round(memory_bytes / 2**30)}GB"
    return f"{name} {gpu_cores}-core" if gpu_cores else name


def parse_gpu_cores(ioreg: str) -> int | None:
    """`ioreg -rc AGXAccelerator -d1` -> the "gpu-core-count" it lists."""
    m = re.search(r'"gpu-core-count"\s*=\s*(\d+)', ioreg)
    return int(m.group(1)) if m else None


def _run(args: list[str]) -> str | None:
    """A tool's standard output, or None when it is missing or fails (the next source is tried)."""
    if shutil.which(args[0]) is None:
        return None
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def sysctl(key: str) -> str:
    out = _run(["sysctl", "-n", key])
    if not out or not out.strip():
        raise QfitError(f"cannot read {key} with sysctl to name this Apple device; pass --gpu NAME")
    return out.strip()


def apple_gpu_cores() -> int | None:
    return parse_gpu_cores(_run(["ioreg", "-rc", "AGXAccelerator", "-d1"]) or "")


def _nvml() -> list[tuple[str, float]]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        rows = []
        for h in handles:
            name = pynvml.nvmlDeviceGetName(h)
            rows.append((name.decode() if isinstance(name, bytes) else str(name),
                         pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**20))
        return rows
    except pynvml.NVMLError:
        return []


def _first_kind(rows: list[tuple[str, float]], how: str) -> Detected | None:
    if not rows:
        return None
    name = rows[0][0]
    return Detected(name, sum(1 for n, _ in rows if n == name), how)


def detect() -> Detected:
    """The local accelerator, or the host CPU when no GPU tool answers."""
    found = (_first_kind(_nvml(), "NVML")
             or _first_kind(parse_nvidia_smi(_run(["nvidia-smi", "--query-gpu=name,memory.total",
                                                   "--format=csv,noheader,nounits"]) or ""), "nvidia-smi")
             or _first_kind(parse_rocm_smi(_run(["rocm-smi", "--showproductname", "--showmeminfo", "vram",
                                                 "--json"]) or ""), "rocm-smi"))
    if found:
        return found
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        name = apple_device_name(sysctl("machdep.cpu.brand_string"), int(sysctl("hw.memsize")), apple_gpu_cores())
        return Detected(name, 1, "sysctl")
    return Detected("cpu", 1, "no GPU tool answered (NVML, nvidia-smi, rocm-smi): the host CPU")
