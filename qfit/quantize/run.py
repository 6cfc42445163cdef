"""`qfit quantize` orchestration: validate -> resolve model -> calibrate -> predict memory -> quantize into a temp
sibling -> normalise config -> check layout -> report -> rename into place."""

from __future__ import annotations

import os
import resource
import shutil
import time
from pathlib import Path

from qfit.atomic import publish_dir
from qfit.errors import QfitError
from qfit.quantize import checkpoint as ck
from qfit.quantize.job import ModelLayout, QuantizeJob, check_shapes, read_layout

DEVICES = ("auto", "cpu", "cuda")


def pick_device(device: str, method: str) -> str:
    if device not in DEVICES:
        raise QfitError(f"--device {device!r}: choose auto, cpu or cuda")
    if method == "rtn":
        return "cpu"  # tensor by tensor on the CPU: fast enough and needs no accelerator memory
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise QfitError("--device cuda requested but torch sees no CUDA device (torch build or driver?)")
    return device


def clean_stale_temps(out: Path) -> None:
    """Remove OUT.tmp-<pid> siblings left by killed runs whose process is gone."""
    for tmp in out.parent.glob(f"{out.name}.tmp-*"):
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            pass


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _destination(out: Path, force: bool, inputs: list) -> Path:
    """OUT checked before any work: never the input, inside it or holding it; --force to replace; writable."""
    from qfit.atomic import check_writable, refuse_overlap

    out = Path(out).expanduser().resolve()
    refuse_overlap(out, inputs)
    if out.exists() and not force:
        raise QfitError(f"{out} already exists: pass --force to replace it")
    if not out.parent.is_dir():
        raise QfitError(f"parent folder of {out} does not exist")
    check_writable(out)
    return out


def _calibration(job: QuantizeJob, model_dir: Path, calib_text, trust_remote_code: bool):
    if job.method != "gptq":
        return None, []
    from qfit.loading import load_tokenizer
    from qfit.quantize.calib import build_calibration

    return build_calibration(load_tokenizer(model_dir, trust_remote_code=trust_remote_code), *calib_text,
                             job.nsamples, job.seqlen)


def quantize(model: str, out: Path, job: QuantizeJob, *, device: str = "auto", force: bool = False,
             progress=None, trust_remote_code: bool = False):
    """Run a quantization end to end and return the QuantizeReport. `progress(total_layers)` returns a callback
    invoked with each finished layer index (the CLI draws a rich bar with it)."""
    from qfit.loading import check_model_dir, resolve_model_dir
    from qfit.model.sources import load_model
    from qfit.paths import cache_dir
    from qfit.quantize.engine import prepare_env

    job.validate()
    out = _destination(out, force, [model])
    calib_text = None
    if job.method == "gptq":   # a bad --calib fails in a second, before any model is converted or loaded
        from qfit.quantize.calib import calibration_text

        calib_text = calibration_text(job.calib)
    model_dir = resolve_model_dir(model)
    check_model_dir(model_dir)
    out = _destination(out, force, [model, model_dir])
    loaded = load_model(str(model_dir))          # config validated into a ModelSpec once, for layout and report
    layout = read_layout(model_dir, loaded.spec)
    check_shapes(layout, job.recipe)
    dev = pick_device(device, job.method)
    prepare_env(cache_dir())
    calib, windows = _calibration(job, model_dir, calib_text, trust_remote_code)
    estimate = predict_memory(layout, job, dev)
    if not estimate.fits:
        raise QfitError(f"this run needs about {estimate.total_bytes / 1e9:.1f} GB on {dev} (predicted: model "
                        f"{estimate.model_bytes / 1e9:.1f} + activations {estimate.activation_bytes / 1e9:.1f} + Hessians "
                        f"{estimate.hessian_bytes / 1e9:.2f} + runtime {estimate.runtime_bytes / 1e9:.1f} GB) but only "
                        f"{estimate.available_bytes / 1e9:.1f} GB is available; lower --nsamples/--seqlen or free memory")
    clean_stale_temps(out)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    tmp.mkdir()
    try:
        report = _produce(model, model_dir, tmp, out, job, layout, dev, calib, windows, estimate, progress,
                          trust_remote_code, loaded)
        publish_dir(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def predict_memory(layout: ModelLayout, job: QuantizeJob, device: str):
    from qfit.quantize.estimate import available_memory, estimate_peak

    first_layer = min(ck.layer_index(n) for n in layout.linears)
    block_in = [i for n, (_, i) in layout.linears.items() if ck.layer_index(n) == first_layer]
    # GPTQModel works in bf16/fp16 on the model it loads (observed: bf16 tensors in its per-module log)
    return estimate_peak(method=job.method, device=device, float_bytes=layout.float_bytes, working_dtype_bytes=2,
                         float_dtype_bytes=layout.float_dtype_bytes, hidden=layout.hidden, block_linear_in=block_in,
                         largest_linear=max(o * i for o, i in layout.linears.values()),
                         packed_bytes=layout.packed_bytes(job.recipe), nsamples=job.nsamples,
                         seqlen=job.seqlen, available_bytes=available_memory(device))


def _write_codes(job: QuantizeJob, model_dir: Path, tmp: Path, windows, dev: str, on_layer, trust_remote_code):
    """Quantize into tmp; -> (per-layer stats, tool that chose the codes)."""
    from qfit import __version__

    if job.method == "rtn":
        layers = ck.write_rtn(model_dir, tmp, job.recipe, on_layer=on_layer)
        shutil.copy2(model_dir / "config.json", tmp / "config.json")
        return layers, f"qfit:{__version__}"
    import gptqmodel

    from qfit.quantize.engine import run_gptq

    layers = run_gptq(model_dir, tmp, job, windows=windows, device=dev, on_layer=on_layer,
                      trust_remote_code=trust_remote_code)
    return layers, f"gptqmodel:{gptqmodel.__version__}"


def _produce(model, model_dir, tmp, out, job: QuantizeJob, layout, dev, calib, windows, estimate, progress,
             trust_remote_code, loaded):
    from qfit.precision import quantization_config
    from qfit.quantize.inspect import inspect_checkpoint
    from qfit.quantize.report import QuantizeReport, planner_prediction, render_markdown

    on_layer = progress(layout.num_layers) if progress else None
    t0 = time.perf_counter()
    layers, tool = _write_codes(job, model_dir, tmp, windows, dev, on_layer, trust_remote_code)
    wall = time.perf_counter() - t0
    ck.copy_side_files(model_dir, tmp)
    ck.finalize_config(tmp, quantization_config(job.recipe, damp=job.damp, method=job.method, tool=tool))
    leaks = ck.scrub_text(tmp, [str(tmp), "/tmp/", str(Path.home())])
    if leaks:
        raise QfitError(f"internal: {', '.join(leaks)} still mention a temp path; refusing to publish the checkpoint")
    checked = inspect_checkpoint(tmp)
    if not checked.ok:
        raise QfitError(f"internal: the written checkpoint fails layout checks: {checked.to_dict()['config_problems']}")
    report = QuantizeReport(
        model=str(model), model_dir=str(model_dir), out=str(out), method=job.method, recipe=job.to_dict(),
        calibration=calib.to_dict() if calib else None, layers=layers, quantized_params=checked.quantized_params,
        bits_per_weight=round(checked.bits_per_weight or 0.0, 4), size_on_disk_bytes=0,
        weight_bytes=checked.tensor_bytes, float_weight_bytes=layout.float_bytes, wall_seconds=round(wall, 2),
        peak_rss_bytes=peak_rss_bytes(), peak_vram_bytes=_peak_vram(dev), memory_estimate=estimate.to_dict(),
        device=dev, planner_prediction=planner_prediction(loaded, job.recipe), notes=_notes(job.recipe, checked))
    # written twice so that the size on disk it states includes the report files themselves
    ck.write_json(tmp / "qfit-report.json", report.to_dict())
    (tmp / "qfit-report.md").write_text(render_markdown(report))
    report.size_on_disk_bytes = folder_bytes(tmp)
    ck.write_json(tmp / "qfit-report.json", report.to_dict())
    (tmp / "qfit-report.md").write_text(render_markdown(report))
    return report


def _notes(recipe, checked) -> list[str]:
    notes = [f"vLLM Marlin: {r}" for r in checked.marlin_reasons] or ["vLLM Marlin kernel: compatible"]
    if not recipe.sym:
        # v1 stores zero-1; loaders add 1 to the packed word, so a zero point of 0 carries into its neighbour
        # (GPTQModel's own v1->v2 code documents the overflow). v2 fixes it but is not what vLLM/transformers read.
        notes.append("asymmetric v1: groups whose zero point is 0 are read back with a carry into the neighbouring "
                     "zero point by v1 loaders (a known v1 limitation); prefer --sym for v1 checkpoints")
    return notes


def _peak_vram(device: str) -> int | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return int(torch.cuda.max_memory_allocated())
