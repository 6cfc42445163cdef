"""Engine profiles (profiles/engines/<engine>.yaml): memory behaviour and defaults of each inference engine."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from qfit.errors import QfitError
from qfit.paths import profiles_dir
from qfit.yamlcache import load_records

ENGINES = ("transformers", "vllm", "sglang", "llama.cpp")
# Other names users type -> (engine, note). Ollama and LM Studio run llama.cpp underneath; TGI and LMDeploy page KV
# and reserve memory like vLLM, so vLLM is the nearest model of them.
ALIASES = {
    "hf": ("transformers", None), "huggingface": ("transformers", None), "torch": ("transformers", None),
    "llamacpp": ("llama.cpp", None), "llama-cpp": ("llama.cpp", None), "llama_cpp": ("llama.cpp", None),
    "gguf": ("llama.cpp", None),
    "ollama": ("llama.cpp", "ollama runs llama.cpp: planned as llama.cpp"),
    "lmstudio": ("llama.cpp", "LM Studio runs llama.cpp (GGUF): planned as llama.cpp"),
    "tgi": ("vllm", "TGI is planned with vLLM's memory model (paged KV, reserved fraction)"),
    "lmdeploy": ("vllm", "LMDeploy is planned with vLLM's memory model (paged KV, reserved fraction)"),
}


@dataclass(frozen=True)
class EngineProfile:
    name: str
    description: str
    memory_fraction: float | None
    kv: dict[str, Any]
    activation: dict[str, Any]
    runtime_overhead_gib: dict[str, float | None]
    tp_overhead_gib: float
    multi_gpu: str                       # tensor_parallel | layer_split
    sources: dict[str, str] = field(default_factory=dict)
    note: str | None = None              # set when the user's name was mapped to this engine

    @property
    def tensor_parallel(self) -> bool:
        return self.multi_gpu == "tensor_parallel"

    def overhead_gib(self, backend: str) -> float:
        value = self.runtime_overhead_gib.get(backend)
        if value is None:
            raise QfitError(f"engine {self.name} does not run on a {backend} device")
        return float(value)


@lru_cache(maxsize=None)
def _load(name: str) -> EngineProfile:
    data = load_records(profiles_dir() / "engines")[name]
    return EngineProfile(
        name=data["name"], description=data.get("description", ""), memory_fraction=data.get("memory_fraction"),
        kv=data["kv"], activation=data["activation"], runtime_overhead_gib=data["runtime_overhead_gib"],
        tp_overhead_gib=float(data.get("tp_overhead_gib", 0.0)), multi_gpu=data["multi_gpu"],
        sources=data.get("sources", {}),
    )


def get_engine(name: str) -> EngineProfile:
    key = (name or "").strip().lower()
    if key in ENGINES:
        return _load(key)
    if key in ALIASES:
        target, note = ALIASES[key]
        profile = _load(target)
        return profile if note is None else EngineProfile(**{**profile.__dict__, "note": note})
    close = difflib.get_close_matches(key, list(ENGINES) + list(ALIASES), n=3, cutoff=0.4)
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    raise QfitError(f"unknown engine {name!r} (known: {', '.join(ENGINES)}){hint}")
