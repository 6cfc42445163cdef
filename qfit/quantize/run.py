"""`qfit quantize` orchestration. Cheap first: validate -> check the recipe against the source's headers (a folder's
safetensors or a .gguf's tensor table) -> pick the device and the calibration size -> predict memory and time, and
say so. Then, in a temp sibling whose log file takes the libraries' output: resolve the model (convert a .gguf,
download a hub id) -> calibrate -> quantize -> normalise config -> check layout -> report -> rename into place."""

from __future__ import annotations

import os
import resource
import shutil
import time
from pathlib import Path

from qfit.atomic import publish_dir, write_json
from qfit.errors import QfitError
from qfit.paths import cache_dir
from qfit.quantize import checkpoint as ck
from qfit.quantize.job import (
    CALIBRATION_WHY,
    CLIP_SEARCH_STEPS,
    ModelLayout,
    QuantizeJob,
    check_shapes,
    read_layout,
    resolve_group,
)

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


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (compilers), for the report's CPU share."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


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

    return build_calibration(load_tokenizer(model_dir, trust_remote_code=trust_remote_code), calib_text,
                             job.nsamples, job.seqlen)


def _check_memory(layout: ModelLayout, job: QuantizeJob, dev: str):
    estimate = predict_memory(layout, job, dev)
    if not estimate.fits:
        raise QfitError(f"this run needs about {estimate.total_bytes / 1e9:.1f} GB on {dev} (predicted: model "
                        f"{estimate.model_bytes / 1e9:.1f} + activations {estimate.activation_bytes / 1e9:.1f} + Hessians "
                        f"{estimate.hessian_bytes / 1e9:.2f} + runtime {estimate.runtime_bytes / 1e9:.1f} GB) but only "
                        f"{estimate.available_bytes / 1e9:.1f} GB is available; lower --nsamples/--seqlen or free memory")
    return estimate


def quantize(model: str, out: Path, job: QuantizeJob, *, device: str = "auto", force: bool = False,
             progress=None, notify=None, trust_remote_code: bool = False, extra_json: dict | None = None):
    """Run a quantization end to end and return the QuantizeReport. `progress(total_layers)` returns a callback
    invoked with each finished layer index (the CLI draws a bar or plain lines with it); `notify(line)` receives the
    few lines meant for the terminal (time estimate, small-calibration warning, phases). Library output goes to
    OUT/qfit-quantize.log (qfit.quantize.terminal). `extra_json` {file name: data} is published with it."""
    from qfit.quantize.source import source_layout
    from qfit.quantize.terminal import LOG_NAME, capture_output, log_tail

    say = notify or (lambda _line: None)
    job.validate()
    out = _destination(out, force, [model])
    calib_text = None
    if job.method == "gptq":   # a bad --calib fails in a second, before any model is converted or loaded
        from qfit.quantize.calib import calibration_text

        calib_text = calibration_text(job.calib)
    layout = source_layout(model)     # headers only (a folder's safetensors, a .gguf's tensor table); None for hub ids
    if layout is not None:
        job = resolve_group(job, layout)
        check_shapes(layout, job.recipe)
    dev = pick_device(device, job.method)
    job = job.for_device(dev)
    if layout is not None:
        _check_memory(layout, job, dev)
    timing = time_estimate(model, layout, job, dev)
    chosen = job.group_choice if job.group_choice not in ("given", "auto") else None
    for line in filter(None, [chosen, _estimate_line(timing, job, dev, layout is not None),
                              job.overfit_warning()]):
        say(line)
    # torch is imported before the temp folder exists: a signal that lands inside its import can be swallowed by
    # import machinery (seen here: the interrupted numpy import resurfaced as "cannot load module more than once")
    import torch  # noqa: F401

    clean_stale_temps(out)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    tmp.mkdir()
    try:
        with capture_output(tmp / LOG_NAME):
            report = _produce(model, tmp, out, job, dev, calib_text, timing, progress, say, trust_remote_code)
        for name, data in (extra_json or {}).items():
            write_json(tmp / name, data)
        publish_dir(tmp, out, force)
    except BaseException as exc:
        if not isinstance(exc, (QfitError, KeyboardInterrupt)):   # the log's context would vanish with the temp
            say(f"unexpected failure; last lines of {LOG_NAME}:\n{log_tail(tmp / LOG_NAME)}")
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"library log: {out / LOG_NAME}")
    return report


def time_estimate(model: str, layout: ModelLayout | None, job: QuantizeJob, dev: str):
    """The run's predicted wall time (qfit.quantize.timing), or None without a layout or measured constants."""
    from qfit.quantize.source import gguf_needs_conversion
    from qfit.quantize.timing import estimate_time, time_profile

    profile = time_profile(dev)
    if layout is None or profile is None:
        return None
    layers: dict[int, list[tuple[int, int]]] = {}
    for name, shape in layout.linears.items():
        if job.recipe.for_module(name) is not None:
            layers.setdefault(ck.layer_index(name), []).append(shape)
    jit_dir = Path(os.environ.get("GPTQMODEL_TORCH_EXTENSIONS_DIR") or cache_dir("torch_extensions"))
    return estimate_time(profile, method=job.method, layers=list(layers.values()), hidden=layout.hidden,
                         float_gb=layout.float_bytes / 1e9, nsamples=job.nsamples, seqlen=job.seqlen,
                         convert_gb=layout.float_bytes / 1e9 if gguf_needs_conversion(model) else 0.0,
                         compile_kernel=dev == "cpu" and job.method == "gptq"
                         and not (jit_dir / "pack_block_cpu").is_dir(),
                         clip_search_steps=CLIP_SEARCH_STEPS if job.clip_search else 0)


def _estimate_line(timing, job: QuantizeJob, dev: str, have_layout: bool) -> str:
    """One line, before the work starts: what runs where, and how long it should take (the terms go to the report)."""
    from qfit.quantize.terminal import duration

    what = f"{job.method} on {dev}" + (f", {job.nsamples} x {job.seqlen} calibration tokens ({job.calibration_size})"
                                       if job.method == "gptq" else "")
    if timing is None and not have_layout:
        return f"{what}: no time estimate (the shapes are read after the download)"
    if timing is None:
        return f"{what}: no time estimate (no constants for {job.method} on {dev} in profiles/quantize/time.yaml)"
    other = "" if timing.same_host else f"; constants from {timing.host}, not this host"
    return (f"{what}: estimated {duration(timing.total_s)} on one core, {duration(timing.low_s)} to "
            f"{duration(timing.high_s)} (±{timing.error:.0%}; runs here got {timing.cores[0]:.2f} to "
            f"{timing.cores[1]:.2f} cores{other})")


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


def _write_codes(job: QuantizeJob, model_dir: Path, tmp: Path, windows, dev: str, on_layer, trust_remote_code,
                 phases: dict):
    """Quantize into tmp; -> (per-layer stats, tool that chose the codes)."""
    from qfit import __version__

    if job.method == "rtn":
        layers = ck.write_rtn(model_dir, tmp, job.recipe, on_layer=on_layer)
        shutil.copy2(model_dir / "config.json", tmp / "config.json")
        return layers, f"qfit:{__version__}"
    import gptqmodel

    from qfit.quantize.engine import run_gptq

    layers = run_gptq(model_dir, tmp, job, windows=windows, device=dev, on_layer=on_layer,
                      trust_remote_code=trust_remote_code, phases=phases)
    return layers, f"gptqmodel:{gptqmodel.__version__}"


def _prepare(model: str, out: Path, job: QuantizeJob, dev: str, calib_text, say, trust_remote_code: bool,
             phases: dict):
    """MODEL as a local float folder (a .gguf converted, a hub id downloaded), its exact layout checked, and the
    calibration windows; -> (model_dir, loaded model, layout, memory estimate, calibration, windows)."""
    from qfit.atomic import refuse_overlap
    from qfit.loading import check_model_dir, resolve_model_dir
    from qfit.model.ref import model_ref
    from qfit.model.sources import load_model
    from qfit.quantize.engine import prepare_env
    from qfit.quantize.source import gguf_needs_conversion

    t = time.perf_counter()
    kind = model_ref(model).kind
    if kind == "gguf" and gguf_needs_conversion(model):
        say("converting the .gguf to a float32 folder (once: it is cached for the next run)")
    elif kind in ("hub", "catalog"):
        say("fetching the weights (safetensors only)")
    model_dir = resolve_model_dir(model)
    phases["resolve"] = round(time.perf_counter() - t, 2)
    refuse_overlap(out, [model_dir])              # OUT must not be, hold or sit inside the converted/downloaded folder
    check_model_dir(model_dir)
    loaded = load_model(str(model_dir))          # config validated into a ModelSpec once, for layout and report
    layout = read_layout(model_dir, loaded.spec)
    job = resolve_group(job, layout)              # a hub id's auto group size, known only now
    check_shapes(layout, job.recipe)              # exact for every source; the first check for a hub id
    estimate = _check_memory(layout, job, dev)
    prepare_env(cache_dir())
    t = time.perf_counter()
    calib, windows = _calibration(job, model_dir, calib_text, trust_remote_code)
    phases["calibration"] = round(time.perf_counter() - t, 2)
    return job, model_dir, loaded, layout, estimate, calib, windows


def _produce(model, tmp, out, job: QuantizeJob, dev, calib_text, timing, progress, say, trust_remote_code):
    from qfit.precision import quantization_config
    from qfit.quantize.inspect import inspect_checkpoint
    from qfit.quantize.report import QuantizeReport, planner_prediction
    from qfit.quantize.terminal import LOG_NAME

    t_start, cpu_start, phases = time.perf_counter(), cpu_seconds(), {}
    job, model_dir, loaded, layout, estimate, calib, windows = _prepare(model, out, job, dev, calib_text, say,
                                                                        trust_remote_code, phases)
    on_layer = progress(layout.num_layers) if progress else None
    t0 = time.perf_counter()
    layers, tool = _write_codes(job, model_dir, tmp, windows, dev, on_layer, trust_remote_code, phases)
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
        device=dev, planner_prediction=planner_prediction(loaded, job.recipe), notes=_notes(job, checked),
        time_estimate=timing.to_dict() if timing else None, phases=phases, log_file=LOG_NAME)
    report.total_seconds = round(time.perf_counter() - t_start, 2)
    report.cpu_seconds = round(cpu_seconds() - cpu_start, 2)
    if job.heldout_windows:   # after the timed span: the time estimate covers the quantization only
        from qfit.quantize.heldout import heldout_report

        report.heldout = heldout_report(model_dir, tmp, job, windows=job.heldout_windows,
                                        compare_rtn=job.compare_rtn, device=dev, say=say)
    _write_report(tmp, report)
    return report


def _write_report(tmp: Path, report) -> None:
    from qfit.quantize.report import render_markdown

    # written twice so that the size on disk it states includes the report files themselves
    ck.write_json(tmp / "qfit-report.json", report.to_dict())
    (tmp / "qfit-report.md").write_text(render_markdown(report))
    report.size_on_disk_bytes = folder_bytes(tmp)
    ck.write_json(tmp / "qfit-report.json", report.to_dict())
    (tmp / "qfit-report.md").write_text(render_markdown(report))


def _notes(job: QuantizeJob, checked) -> list[str]:
    recipe = job.recipe
    notes = [f"vLLM Marlin: {r}" for r in checked.marlin_reasons] or ["vLLM Marlin kernel: compatible"]
    if job.group_choice not in ("given", "auto"):
        notes.append(job.group_choice)
    if job.method == "gptq" and job.calibration_size.startswith("auto"):
        notes.append(f"calibration {job.nsamples} x {job.seqlen} tokens: {job.calibration_size} "
                     f"({CALIBRATION_WHY[job.calibration_size]})")
    warning = job.overfit_warning()
    if warning:
        notes.append(warning)
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
