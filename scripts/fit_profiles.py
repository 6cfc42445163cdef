"""Static engine facts (cited) and the YAML writer for profiles/engines/speed/*.yaml, used by fit_efficiency.py."""

from __future__ import annotations

import datetime as _dt
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Neutral starting values for a backend that has never been fitted; replaced by the fit where data exists.
PRIOR = {"decode_bandwidth_efficiency": 0.75, "overhead_per_layer_us": 50.0, "kv_traffic_factor": 1.0,
         "prefill_compute_efficiency": 0.4}
ALLREDUCE = {
    "nvlink": 10.0, "pcie": 25.0,
    "note": "assumption, not calibrated: the calibration set has no multi-GPU rows. Order of magnitude of one "
            "small-message NCCL/custom all-reduce (latency-bound at decode batch sizes); bandwidth term from the "
            "accelerator profile's interconnect figure",
}
ENGINES = {
    "llama.cpp": {
        "multi_gpu": "layer",
        "multi_gpu_source": "llama.cpp default --split-mode layer: layers are placed on GPUs in turn and run sequentially",
        "prefill_chunk_tokens": 512,
        "prefill_chunk_source": "llama.cpp default n_ubatch = 512 (llama-bench -ub 512); weights are re-read per ubatch",
        "default_backend": "cuda",
        "backends": {
            "metal": {}, "cuda": {},
            "rocm": {"prior_from": "cuda", "why": "HIP build of the CUDA kernels; no ROCm rows in the calibration set"},
            "cpu": {"prior_from": "metal", "why": "no CPU rows; unified-memory Metal is the closest memory-bound case"},
            "xpu": {"prior_from": "cuda", "why": "no SYCL/XPU rows"},
        },
        "formats_generalize": [("gguf-q8*", "gguf-q8_0"), ("gguf-q[2-6]*", "gguf-q4_0"), ("gguf-iq*", "gguf-q4_0"),
                               ("gguf-tq*", "gguf-q4_0"), ("gguf-mxfp4", "gguf-q4_0")],
    },
    "vllm": {
        "multi_gpu": "tensor",
        "multi_gpu_source": "vLLM --tensor-parallel-size: Megatron-style sharding, 2 all-reduces per layer",
        "prefill_chunk_tokens": 8192,
        "prefill_chunk_source": "vLLM V1 chunked prefill, max_num_batched_tokens 8192 (server default); only the "
                                "number of weight re-reads depends on it",
        "default_backend": "cuda",
        "backends": {"cuda": {}, "rocm": {"prior_from": "cuda", "why": "no ROCm rows in the calibration set"}},
        "formats_generalize": [("gptq-int[23]*", "gptq-int4"), ("awq-*", "awq-int4"), ("gptq-*", "gptq-int4"),
                               ("nf4", "gptq-int4"), ("mxfp4", "gptq-int4"), ("fp8*", "gptq-int8"),
                               ("int8", "gptq-int8")],
    },
    "sglang": {
        "multi_gpu": "tensor",
        "multi_gpu_source": "SGLang --tp: tensor parallel, 2 all-reduces per layer",
        "prefill_chunk_tokens": 8192,
        "prefill_chunk_source": "SGLang --chunked-prefill-size default 8192",
        "default_backend": "cuda",
        "backends": {
            "cuda": {"prior_from": "vllm/cuda", "why": "no SGLang rows; same class of engine (paged KV, CUDA graphs, "
                                                        "Marlin/FlashInfer kernels) as vLLM"},
            "rocm": {"prior_from": "vllm/cuda", "why": "no SGLang or ROCm rows"},
        },
        "formats_generalize": [],
    },
    "transformers": {
        "multi_gpu": "layer",
        "multi_gpu_source": "transformers device_map='auto' places layers on GPUs in turn (no tensor parallel)",
        "prefill_chunk_tokens": 0,
        "prefill_chunk_source": "generate() prefills the whole prompt in one forward pass",
        "default_backend": "cuda",
        "backends": {
            "cuda": {},
            "rocm": {"prior_from": "cuda", "why": "no ROCm rows"},
            "metal": {"prior_from": "cuda", "why": "no MPS rows"},
            "cpu": {"prior_from": "cuda", "why": "no CPU rows"},
        },
        "formats_generalize": [("gptq-int[23]*", "gptq-int4"), ("awq-*", "awq-int4"), ("gptq-*", "gptq-int4"),
                               ("nf4", "gptq-int4"), ("int8", "gptq-int8")],
    },
}


def _r(v: float, nd: int = 4) -> float:
    return float(f"{v:.{nd}g}")


def _formats(res: dict, engine: str) -> list[dict]:
    params = res["params"]
    fmts = sorted({k.split(":", 1)[1] for k in params if ":" in k})
    entries = {}
    for fmt in fmts:
        entries[fmt] = {"match": fmt, "decode_bandwidth": _r(params.get(f"fbw:{fmt}", 1.0)),
                        "overhead_per_layer_us": _r(params.get(f"fovh:{fmt}", 0.0)),
                        "prefill_compute": _r(params.get(f"fpf:{fmt}", 1.0)), "note": "fitted"}
    out = list(entries.values())
    for pattern, like in ENGINES[engine]["formats_generalize"]:
        if like in entries:
            out.append({**entries[like], "match": pattern, "note": f"no rows: assumed like {like}"})
    return out


def backend_entry(engine: str, backend: str, res: dict | None) -> dict:
    static = ENGINES[engine]["backends"][backend]
    if static.get("prior_from"):
        return {"prior_from": static["prior_from"], "why": static["why"], "band_multiplier": 2.0}
    if res is None:
        return {**PRIOR, "fitted": False, "source": "prior (no calibration rows yet)",
                "error_band": {"decode_pct": 30.0, "prefill_pct": 50.0, "basis": "prior: uncalibrated"}}
    p = res["params"]
    fit = {k: v for k, v in {"decode": res["fit"]}.items()}
    ins = {}
    from calibration import summarize

    for kind in ("decode", "prefill", "e2e"):
        errs = [e for c, _, e in fit["decode"] if c.kind == kind]
        if errs:
            ins[kind] = summarize(errs)
    return {
        "fitted": True,
        "decode_bandwidth_efficiency": _r(p.get("bw", PRIOR["decode_bandwidth_efficiency"])),
        "overhead_per_layer_us": _r(p.get("ovh", 0.0 if "ovs" in p else PRIOR["overhead_per_layer_us"])),
        "overhead_per_step_us": _r(p.get("ovs", 0.0)),
        "kv_traffic_factor": _r(p.get("kvf", 1.0)),
        "prefill_compute_efficiency": _r(p.get("pf", p.get("pfv", PRIOR["prefill_compute_efficiency"]))),
        "attention_compute_efficiency": _r(p.get("pa", p.get("pf", p.get("pfv", PRIOR["prefill_compute_efficiency"])))),
        "compute_peak": res.get("compute_peak", "tensor"),
        "formats": _formats(res, engine),
        "error_band": res["band"],
        "in_sample": ins,
        "n_rows": res["n"],
        "source": "; ".join(res["sources"]),
    }


def write_profiles(results: dict, out: str | None = None) -> list[Path]:
    import yaml

    base = Path(out) if out else ROOT / "profiles"
    target = base / "engines" / "speed"
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for engine, static in ENGINES.items():
        doc = {
            "engine": engine,
            "generated_by": "scripts/fit_efficiency.py (do not edit by hand: re-run the fit)",
            "generated_on": _dt.date.today().isoformat(),
            "calibration_set": "shared/reference/calibration/cases.jsonl",
            "multi_gpu": static["multi_gpu"], "multi_gpu_source": static["multi_gpu_source"],
            "prefill_chunk_tokens": static["prefill_chunk_tokens"],
            "prefill_chunk_source": static["prefill_chunk_source"],
            "allreduce_latency_us": {k: v for k, v in ALLREDUCE.items() if k != "note"},
            "allreduce_note": ALLREDUCE["note"],
            "default_backend": static["default_backend"],
            "backends": {b: backend_entry(engine, b, results.get(f"{engine}/{b}")) for b in static["backends"]},
        }
        path = target / f"{engine.replace('.', '_')}.yaml"
        fd, tmp = tempfile.mkstemp(dir=target, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(doc, fh, sort_keys=False, width=120)
        os.replace(tmp, path)
        written.append(path)
    return written
