"""Peak-memory prediction for a quantize run, made before any weights are loaded (pure; inputs from headers/config).

GPTQ (GPTQModel, layer by layer): the whole float model is resident (GPTQModel loads it once and walks the blocks),
plus the calibration activations entering and leaving a block (nsamples x seqlen x hidden, fp32, in and out), plus one
Hessian per linear of the block being processed (in_features^2 fp32 each, all of a block's linears alive together),
plus one block's worth of packed output, plus the runtime's own baseline (torch + transformers + gptqmodel imports and
allocator slack) which we measured on this kind of machine rather than derive (profiles/quantize/memory.yaml).
RTN (ours, tensor by tensor): the float model is memory-mapped (its touched pages count in RSS), the output dict
holds the packed model, plus the
largest tensor's fp32/int64 working copies (x6: float copy, int64 codes, rounding temporaries).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from qfit.paths import profiles_dir
from qfit.yamlcache import load_records


def memory_facts() -> dict[str, float]:
    """The measured constants of profiles/quantize/memory.yaml: runtime_base_bytes, rtn_base_bytes, safety_factor."""
    return {k: float(v["value"]) for k, v in load_records(profiles_dir() / "quantize")["memory"].items()}


@dataclass(frozen=True)
class MemoryEstimate:
    method: str
    device: str
    model_bytes: int
    activation_bytes: int
    hessian_bytes: int
    output_bytes: int
    runtime_bytes: int
    total_bytes: int
    available_bytes: int | None
    fits: bool

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_peak(*, method: str, device: str, float_bytes: int, working_dtype_bytes: int, float_dtype_bytes: int,
                  hidden: int, block_linear_in: list[int], largest_linear: int, packed_bytes: int,
                  nsamples: int, seqlen: int, available_bytes: int | None) -> MemoryEstimate:
    """float_bytes: size of the float weights on disk; they are held at working_dtype_bytes per parameter."""
    facts = memory_facts()
    model = int(float_bytes * working_dtype_bytes / max(float_dtype_bytes, 1))
    if method == "rtn":
        activ, hess = 0, 0
        work = largest_linear * (4 + 8 + 4 + 8 + 4 + 8)
        runtime = int(facts["rtn_base_bytes"]) + work
        # memory-mapped reads: touched pages count in RSS (reclaimable, but the RSS we report includes them)
        model = float_bytes
    else:
        activ = 2 * nsamples * seqlen * hidden * 4
        hess = sum(n * n * 4 for n in block_linear_in)
        runtime = int(facts["runtime_base_bytes"])
    total = int((model + activ + hess + packed_bytes + runtime) * facts["safety_factor"])
    fits = available_bytes is None or total <= available_bytes
    return MemoryEstimate(method=method, device=device, model_bytes=model, activation_bytes=activ, hessian_bytes=hess,
                          output_bytes=packed_bytes, runtime_bytes=runtime, total_bytes=total,
                          available_bytes=available_bytes, fits=fits)


def available_memory(device: str) -> int | None:
    """Free memory on the device the run will use: RAM for cpu (psutil, else /proc/meminfo), free VRAM for cuda."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
