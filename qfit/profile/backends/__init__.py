"""Engine backends for `qfit profile`: transformers (default), vllm, llama.cpp (llama-cpp-python).

Backend names are engine names: the engine registry (profiles/engines/*.yaml) normalises them, as for `qfit plan`,
and says which Python package drives each engine (`measure`). Each backend module imports its engine inside its
constructor; a missing package is a one-line QfitError naming what to install.
"""

from __future__ import annotations

import importlib.util

from qfit.engines import EngineProfile, load_engines
from qfit.errors import QfitError


def backend_engine(name: str) -> EngineProfile:
    """The engine `--backend NAME` runs: a canonical name or a same-engine alias (hf, llamacpp), never a stand-in."""
    return load_engines(overlays=False).measurable(name)


def backend_name(name: str) -> str:
    return backend_engine(name).name


def require(name: str) -> None:
    engine = backend_engine(name)
    module, how = engine.measure["import"], engine.measure["install"]
    if importlib.util.find_spec(module) is None:
        raise QfitError(f"backend {engine.name} needs the {module} package, which is not installed: {how}")


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
