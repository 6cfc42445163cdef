"""How long a quantize run will take, predicted before it starts from the model's shapes and measured host constants.

GPTQ (GPTQModel 7.7, layer by layer; its log for a Llama block shows 4 module subsets, each captured by a forward
over every calibration window, then one replay forward whose outputs feed the next layer: `forward_passes` = 5):

  T = fixed_s + load_save_s_per_gb * float GB
      + sum over layers [ layer_overhead_s + F_fwd / forward_gflops
                          + sum over the layer's quantized modules (module_overhead_s + F_gptq / gptq_gflops) ]
      (+ convert_s_per_gb * float32 GB when a .gguf must first be converted, + jit_s the first time GPTQModel
        compiles its CPU packing kernel into the extension cache)
  F_fwd  = forward_passes * (2 N P + 4 N seqlen hidden) + sum over modules 2 N in^2    (FLOPs per layer)
  F_gptq = in^3 + 2 out in^2                                                          (FLOPs per module)

with N = nsamples x seqlen calibration tokens, P the layer's quantized weights, `in`/`out` a module's features: the
2NP and attention (4 N seqlen hidden) terms are the forward's multiply-adds, 2 N in^2 the Hessian accumulation X^T X
(one per module: GPTQModel shares one between modules that read the same input, which the fitted rate absorbs), and
in^3 + 2 out in^2 the Cholesky inverse and the column-by-column update of GPTQ. The per-layer and per-module overheads
(Python, hooks, thread pools, packing) dominate small models on CPU. fixed_s is the rest of the run (imports,
tokenizing the calibration text, checks, the report). RTN, tensor by tensor: rtn_s_per_gb * float GB, all included.

The constants are fitted per host and device from real runs (scripts/fit_quantize_time.py) and stored with their
protocol and error in profiles/quantize/time.yaml; a host without its own row gets the first row of its device kind
and the estimate says so. They count one core's time (each fitting run's times are multiplied by the CPU share it got,
CPU time / wall): T is the wall time of a run that gets exactly one core. The band adds what the measured runs got
(`cores`: the lowest and highest CPU share seen, from other jobs competing to torch using both cores on an idle
machine): low = T (1 - error) / most cores, high = T (1 + error) / fewest cores. Pure: no I/O here except
`time_profile` (reading the YAML) and `host_key` (reading /proc).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

CONSTANTS = ("fixed_s", "load_save_s_per_gb", "layer_overhead_s", "forward_gflops", "module_overhead_s",
             "gptq_gflops", "convert_s_per_gb", "jit_s", "rtn_s_per_gb")
# Measured apart from the fit (a row may lack it: the estimate is then refused for runs that need it): one core's
# nanoseconds per quantized weight per step of GPTQ's clipping search (qfit.quantize.job.CLIP_SEARCH_STEPS).
OPTIONAL_CONSTANTS = ("clip_search_ns_per_weight_step",)


@dataclass(frozen=True)
class TimeProfile:
    host: str
    device: str
    forward_passes: int
    constants: dict[str, float]
    error: float                 # relative half-width of the band (largest error over the fitting runs, rounded up)
    cores: tuple[float, float] = (1.0, 1.0)   # lowest (<= 1) and highest (>= 1) CPU share the measured runs got
    rtn_error: float = 0.5       # the band of an RTN estimate (spread of the RTN runs)
    same_host: bool = True


@dataclass(frozen=True)
class TimeEstimate:
    total_s: float
    low_s: float
    high_s: float
    terms: dict[str, float]      # seconds per term (fixed, load_save, forward, gptq, overhead, convert, jit, rtn)
    host: str
    same_host: bool
    error: float                 # the band's relative half-width around total_s (doubled for another host's row)
    cores: tuple[float, float]   # the CPU shares that widen the band (fewest -> high end, most -> low end)
    assumes: str

    def to_dict(self) -> dict:
        return asdict(self)


def layer_flops(linears: list[tuple[int, int]], *, tokens: int, seqlen: int, hidden: int,
                passes: int) -> tuple[float, float]:
    """(forward + Hessian FLOPs of one layer, GPTQ solve FLOPs of its modules) for its quantized (out, in) linears."""
    params = sum(o * i for o, i in linears)
    fwd = passes * (2.0 * tokens * params + 4.0 * tokens * seqlen * hidden) + sum(2.0 * tokens * i * i
                                                                                  for _, i in linears)
    gptq = sum(float(i) ** 3 + 2.0 * o * i * i for o, i in linears)
    return fwd, gptq


def estimate_time(profile: TimeProfile, *, method: str, layers: list[list[tuple[int, int]]], hidden: int,
                  float_gb: float, nsamples: int, seqlen: int, convert_gb: float = 0.0,
                  compile_kernel: bool = False, clip_search_steps: int = 0) -> TimeEstimate | None:
    """`layers`: per decoder layer, the (out, in) of each module the recipe quantizes; float_gb: the float weights
    on disk (GB = 1e9 bytes); convert_gb: float32 GB a .gguf converts to (0: cached); clip_search_steps: steps of
    GPTQ's clipping search per group (0: none). None when a constant the run needs was not measured (0 or absent)."""
    c = profile.constants
    needed = ["rtn_s_per_gb"] if method == "rtn" else ["forward_gflops", "gptq_gflops", "load_save_s_per_gb"] + (
        ["clip_search_ns_per_weight_step"] if clip_search_steps else [])
    if any(c.get(k, 0.0) <= 0 for k in needed + (["convert_s_per_gb"] if convert_gb else [])):
        return None
    terms = {"convert": c["convert_s_per_gb"] * convert_gb} if convert_gb else {}
    if method == "rtn":
        terms["rtn"] = c["rtn_s_per_gb"] * float_gb
    else:
        terms["fixed"] = c["fixed_s"]
        terms["load_save"] = c["load_save_s_per_gb"] * float_gb
        fwd = gptq = 0.0
        for linears in layers:
            f, g = layer_flops(linears, tokens=nsamples * seqlen, seqlen=seqlen, hidden=hidden,
                               passes=profile.forward_passes)
            fwd, gptq = fwd + f, gptq + g
        terms["forward"] = fwd / (c["forward_gflops"] * 1e9)
        terms["gptq"] = gptq / (c["gptq_gflops"] * 1e9)
        terms["overhead"] = c["layer_overhead_s"] * len(layers) + c["module_overhead_s"] * sum(map(len, layers))
        if clip_search_steps:   # every weight is quantized and its error summed once per step, group by group
            weights = sum(o * i for linears in layers for o, i in linears)
            terms["clip_search"] = c["clip_search_ns_per_weight_step"] * 1e-9 * weights * clip_search_steps
        if compile_kernel:
            terms["jit"] = c["jit_s"]
    total = sum(terms.values())
    band = (profile.rtn_error if method == "rtn" else profile.error) * (1 if profile.same_host else 2)
    fewest, most = profile.cores
    assumes = (f"constants measured on {profile.host} ({profile.device}) for a run that gets one core; runs there got "
               f"{fewest:.2f} to {most:.2f} cores" + ("" if profile.same_host else "; not this host: band doubled"))
    return TimeEstimate(total_s=total, low_s=total * max(0.0, 1 - band) / most, high_s=total * (1 + band) / fewest,
                        terms={k: round(v, 1) for k, v in terms.items()}, host=profile.host,
                        same_host=profile.same_host, error=band, cores=profile.cores, assumes=assumes)


def pick_profile(rows: list[dict], host: str, device: str) -> TimeProfile | None:
    """This host's row for the device; else the first row for the device (flagged not same_host); else None."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    rows = [r for r in rows if r.get("device") == kind]
    if not rows:
        return None
    row = next((r for r in rows if r.get("host") == host), None)
    same = row is not None
    row = row or rows[0]
    return TimeProfile(host=row["host"], device=kind, forward_passes=int(row["forward_passes"]),
                       constants={k: float(row["constants"][k]) for k in CONSTANTS}
                       | {k: float(row["constants"][k]) for k in OPTIONAL_CONSTANTS if k in row["constants"]},
                       error=float(row["error"]),
                       cores=(min(1.0, float(row["cores"][0])), max(1.0, float(row["cores"][1]))),
                       rtn_error=float(row.get("rtn_error", 0.5)), same_host=same)


def time_profile(device: str) -> TimeProfile | None:
    """The constants of profiles/quantize/time.yaml for this host and device (None when none are measured)."""
    from qfit.paths import profiles_dir
    from qfit.yamlcache import load_records

    rows = load_records(profiles_dir() / "quantize").get("time", {}).get("hosts") or []
    return pick_profile(rows, host_key(), device)


def host_key() -> str:
    """'<CPU model name> x<logical CPUs>': what the CPU constants depend on (a GPU row would add the GPU name)."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    model = line.partition(":")[2].strip() or model
                    break
    except OSError:
        pass
    return f"{model} x{os.cpu_count() or 1}"
