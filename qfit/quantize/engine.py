"""The GPTQ engine: GPTQModel's Python API, configured for a standard v1 checkpoint.

Environment (MODELS.md): GPTQModel sizes a CPU worker pool from GPTQMODEL_CPU_WORKERS and refuses a pool of one on a
2-core machine, and it JIT-compiles C++ extensions into GPTQMODEL_TORCH_EXTENSIONS_DIR (minutes the first time). We
set defaults under qfit's cache before importing it, so the compile happens once per machine, not once per temp dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from qfit.errors import QfitError


def prepare_env(cache_root: Path) -> None:
    cpus = os.cpu_count() or 2
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(2, min(cpus, 8))))
    os.environ.setdefault("GPTQMODEL_TORCH_EXTENSIONS_DIR", str(cache_root / "torch_extensions"))
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_root / "torch_extensions"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_root / "torchinductor"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class LayerCallback:
    """GPTQModel calls layer_complete(layer_idx=..., submodule_finalized=...) after each decoder block."""

    def __init__(self, on_layer):
        self.on_layer = on_layer
        self.seen: set[int] = set()
        self.times: dict[int, float] = {}
        self._last = time.perf_counter()

    def layer_complete(self, *, layer_idx: int, submodule_finalized: bool):
        if layer_idx in self.seen or not isinstance(layer_idx, int):
            return None
        now = time.perf_counter()
        self.times[layer_idx] = now - self._last
        self._last = now
        self.seen.add(layer_idx)
        if self.on_layer:
            self.on_layer(layer_idx)
        return None


def _num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def layer_stats(log, callback_times: dict[int, float]) -> list[dict]:
    """Per-layer rows from GPTQModel's quantize() log (list of per-module dicts with layer, module, loss, time)."""
    rows: dict[int, dict] = {}
    entries = []
    if isinstance(log, dict):
        for value in log.values():
            entries.extend(value if isinstance(value, list) else [])
    elif isinstance(log, list):
        entries = log
    for e in entries:
        if not isinstance(e, dict) or "layer" not in e or "module" not in e:
            continue
        try:
            layer = int(e["layer"])
        except (TypeError, ValueError):
            continue
        row = rows.setdefault(layer, {"layer": layer, "modules": {}, "seconds": 0.0})
        row["modules"][str(e["module"])] = {"loss": _num(e.get("loss")), "seconds": _num(e.get("time")),
                                            "nsamples": _num(e.get("samples")),
                                            "forward_seconds": _num(e.get("fwd_time"))}
    for layer, row in rows.items():
        row["seconds"] = round(callback_times.get(layer, sum(m["seconds"] or 0 for m in row["modules"].values())), 3)
    return [rows[k] for k in sorted(rows)]


@contextlib.contextmanager
def contained_logs(scratch: Path):
    """GPTQModel 7.7 writes a per-module JSON log under `logs/` relative to the current directory
    (looper/loop_processor.py: _PROJECT_LOG_DIR = Path("logs")), i.e. into whatever folder the user ran qfit from.
    Point it at `scratch` (inside the temp output, removed before publishing: the report holds the same rows). The
    path is absolute, so the log writer thread GPTQModel leaves behind cannot write into the user's folder later."""
    try:
        from gptqmodel.looper import loop_processor
    except ImportError:
        yield
        return
    saved = getattr(loop_processor, "_PROJECT_LOG_DIR", None)
    loop_processor._PROJECT_LOG_DIR = Path(scratch).resolve()
    try:
        yield
    finally:
        if saved is not None:
            loop_processor._PROJECT_LOG_DIR = saved


def run_gptq(model_dir: Path, out_dir: Path, job, *, windows: list[list[int]], device: str, on_layer=None,
             trust_remote_code: bool = False, phases: dict | None = None) -> list[dict]:
    """Quantize with GPTQModel and save into out_dir (the caller normalises config files afterwards). `phases`
    receives the seconds spent loading, quantizing (all layers) and saving."""
    from qfit.precision import quantization_config

    phases = {} if phases is None else phases
    t = time.perf_counter()
    try:
        from gptqmodel import GPTQModel, QuantizeConfig
    except ImportError as exc:
        raise QfitError(f"--method gptq needs gptqmodel (README: set-up): {exc}") from None
    # act_group_aware is a GPTQModel extension that reorders groups; off keeps g_idx the plain i // group_size that
    # every v1 reader and Marlin's desc_act=False path assume. offload_to_disk would record a temp path in meta.
    r = job.recipe
    # per-module choices (keep / overrides) reach GPTQModel as its `dynamic` rules, the same ones config.json carries
    dynamic = quantization_config(r, damp=job.damp, method=job.method, tool="").get("dynamic")
    # act order is static (job.act_order: static_groups), so g_idx stays i // group_size and the recipe's desc_act
    # (what config.json says) stays false
    qc = QuantizeConfig(bits=int(r.bits), group_size=r.group_size, desc_act=job.act_order or r.desc_act,
                        static_groups=job.act_order and r.group_size != -1, sym=r.sym,
                        damp_percent=job.damp, act_group_aware=False, offload_to_disk=False, mse=job.mse_norm,
                        **({"dynamic": dynamic} if dynamic else {}))
    from qfit.loading import safe_model_dir

    scratch = Path(out_dir) / ".gptqmodel-logs"
    with contained_logs(scratch):
        model = GPTQModel.load(str(safe_model_dir(model_dir)), qc, device=device, trust_remote_code=trust_remote_code)
        phases["load"] = round(time.perf_counter() - t, 2)
        callback = LayerCallback(on_layer)
        model.layer_callback = callback
        calib = [{"input_ids": w, "attention_mask": [1] * len(w)} for w in windows]
        t = time.perf_counter()
        log = model.quantize(calib, batch_size=1)
        phases["layers"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        model.save(str(out_dir))
        phases["save"] = round(time.perf_counter() - t, 2)
        _drain_log_writer()
    shutil.rmtree(scratch, ignore_errors=True)
    return layer_stats(log, callback.times)


def _drain_log_writer() -> None:
    """Wait for GPTQModel's serial CPU worker to finish its queued log writes before the scratch folder goes
    (it counts serial tasks as in flight until they finish: utils/threadx.py submit_serial / wait)."""
    with contextlib.suppress(Exception):
        from gptqmodel import DEVICE_THREAD_POOL

        DEVICE_THREAD_POOL.wait("cpu")
