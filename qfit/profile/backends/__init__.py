"""Engine backends for `qfit profile`: transformers (default), vllm, llama.cpp (llama-cpp-python).

Each backend module imports its engine inside its constructor; `open_backend` turns a missing package into a
one-line QfitError naming what to install.
"""

from __future__ import annotations

import importlib.util

from qfit.errors import QfitError

# backend -> (module that must be importable, pip requirement / extra to name in the error)
REQUIREMENTS = {
    "transformers": ("transformers", "pip install 'qfit[profile]'  (transformers, torch)"),
    "vllm": ("vllm", "pip install vllm  (needs a CUDA or ROCm GPU)"),
    "llama.cpp": ("llama_cpp", "pip install llama-cpp-python"),
}
ALIASES = {"hf": "transformers", "llamacpp": "llama.cpp", "llama-cpp": "llama.cpp"}


def backend_name(name: str) -> str:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in REQUIREMENTS:
        raise QfitError(f"unknown backend {name!r}: choose one of {', '.join(REQUIREMENTS)}")
    return key


def require(name: str) -> None:
    module, how = REQUIREMENTS[backend_name(name)]
    if importlib.util.find_spec(module) is None:
        raise QfitError(f"backend {name} needs the {module} package, which is not installed: {how}")


def open_backend(name: str, model: str, **kw):
    """A loaded backend. kw: device, dtype, threads, trust_remote_code, tensor_parallel (vllm), n_ctx (llama.cpp)."""
    name = backend_name(name)
    require(name)
    if name == "transformers":
        from qfit.profile.backends.hf import TransformersBackend
        kw.pop("tensor_parallel", None)
        kw.pop("n_ctx", None)
        return TransformersBackend(model, **kw)
    if name == "vllm":
        from qfit.profile.backends.vllm import VllmBackend
        kw.pop("n_ctx", None)
        return VllmBackend(model, **kw)
    from qfit.profile.backends.llamacpp import LlamaCppBackend
    kw.pop("tensor_parallel", None)
    return LlamaCppBackend(model, **kw)
