"""`qfit profile` as a library call: options in, the profile.json dict out (rendering lives in report.py)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Callable

from qfit.errors import QfitError

METHODS = [
    "perplexity SE by the delta method on per-token NLL (tokens assumed independent: an underestimate)",
    "KL(base||model) and top-1 agreement on the same scored tokens as perplexity; SE = sd/sqrt(n) and sqrt(p(1-p)/n)",
    "accuracy by summed log-likelihood of each choice (acc) and per UTF-8 byte (acc_norm); SE = sqrt(p(1-p)/n)",
    "retained % = 100 mean(model)/mean(base) over paired questions; 95 % CI by the delta method with the paired covariance",
    "ppl ratio = exp(mean paired NLL difference), 95 % CI from its SE",
    "speed: warmup then trials; mean/p50/p90/p99 (linear interpolation), std (n-1), CV = std/mean across trials",
    "achieved bandwidth = (weight bytes read per step + KV bytes at mean context) / mean TPOT",
    ("speed quality: flagged when a row's CV > max_cv, CPU steal > max_steal_pct, threads > free cores + slack, or "
     "trials < min_trials (profiles/planner/measurement.yaml); free cores = logical CPUs - other processes' load "
     "(/proc/stat busy time - this process's CPU time, over the speed phase)"),
    ("weight bytes: the checkpoint's safetensors tensors (headers), tied weights once; loaded bytes: parameters and "
     "buffers in memory at the compute dtype"),
    ("memory: process peak RSS (getrusage ru_maxrss) after the speed phase (MODEL alone) and at the end (whole run); "
     "on a GPU also the device allocator's peak over the speed phase"),
]


@dataclass
class ProfileOptions:
    model: str
    baseline: str | None = None
    device: str = "auto"
    backend: str = "transformers"
    dtype: str = "fp32"
    evals: list[str] = field(default_factory=lambda: ["ppl", "kl", "piqa", "mmlu"])
    text: str = "xsum"
    ppl_tokens: int = 4096
    ppl_window: int = 512
    ppl_stride: int | None = None
    bos: str = "auto"
    limit: int | None = 200
    input_lens: list[int] = field(default_factory=lambda: [128, 512, 2048])
    batches: list[int] = field(default_factory=lambda: [1, 4, 16])
    output_tokens: int = 128
    trials: int = 5
    warmup: int = 2
    threads: int | None = None
    speed: bool = True
    accuracy_weights: str = "auto"     # auto (dequantized on CPU, kernels elsewhere) | dequantized | kernel
    tensor_parallel: int = 1
    trust_remote_code: bool = False


def parse_evals(text: str, has_baseline: bool) -> list[str]:
    from qfit.data.tasks import resolve_task_name
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if names == ["none"]:
        return []
    out = []
    for n in names:
        key = n if n in ("ppl", "kl") else resolve_task_name(n)
        if key not in out:
            out.append(key)
    if "kl" in out and not has_baseline:
        raise QfitError("--eval kl compares against a baseline: pass --baseline BASE (or drop kl)")
    return out


def _open(opts: ProfileOptions, ref: str, role: str, progress):
    from qfit.profile.backends import open_backend
    with progress(f"loading {role} {ref}", 1) as tick:
        backend = open_backend(opts.backend, ref, device=opts.device, dtype=opts.dtype, threads=opts.threads,
                               trust_remote_code=opts.trust_remote_code, tensor_parallel=opts.tensor_parallel)
        tick()
    return backend


def _accuracy(opts: ProfileOptions, model, base, progress) -> dict:
    from qfit.data.tasks import LMEVAL_PREFIX, load_task
    from qfit.profile import accuracy
    out: dict = {"tasks": []}
    if "ppl" in opts.evals or "kl" in opts.evals:
        from qfit.data.texts import BUILTIN, load_text
        # built-in sources: the eval split, disjoint from what `qfit quantize` calibrates on; a user's file: all of it
        loaded = load_text(opts.text, split="eval" if opts.text in BUILTIN else "all")
        proto = accuracy.TextProtocol(source=opts.text, max_tokens=opts.ppl_tokens, window=opts.ppl_window,
                                      stride=opts.ppl_stride or opts.ppl_window, bos=opts.bos)
        n_windows = max(1, -(-opts.ppl_tokens // proto.stride))
        with progress("perplexity / KL", n_windows) as tick:
            out["text"] = accuracy.evaluate_text(model, base, loaded.text, proto, tick)
        out["text"]["text_source"] = loaded.source.to_dict()
    for name in opts.evals:
        if name in ("ppl", "kl"):
            continue
        if name.startswith(LMEVAL_PREFIX):
            out["tasks"].append(_lmeval(name[len(LMEVAL_PREFIX):], model, base, opts.limit))
            continue
        spec, items = load_task(name, opts.limit)
        with progress(f"{spec.name} ({len(items)} questions)", len(items) * (2 if base else 1)) as tick:
            out["tasks"].append(accuracy.evaluate_task(model, base, spec, items, opts.bos, tick))
    return out


def _lmeval(task: str, model, base, limit) -> dict:
    from qfit.profile import metrics
    from qfit.profile.lmeval import run_lmeval_task
    res_m = run_lmeval_task(model, task, limit)
    out = {k: v for k, v in res_m.items() if not k.startswith("_")}
    out["model"] = {k: res_m[k] for k in ("acc", "acc_norm") if k in res_m}
    if base is not None:
        res_b = run_lmeval_task(base, task, limit)
        out["base"] = {k: res_b[k] for k in ("acc", "acc_norm") if k in res_b}
        out["retained_pct"] = {k: metrics.retained_ratio(res_m["_per_doc"][k], res_b["_per_doc"][k]).to_dict()
                               for k in res_m["_per_doc"] if k in res_b["_per_doc"]}
    return out


def _speed(opts: ProfileOptions, model, prediction: dict, device: dict, progress) -> dict:
    """The timed runs, with what the machine was doing meanwhile and the verdict on them (qfit.profile.reliability)."""
    import os

    from qfit.profile.conditions import conditions, snapshot
    from qfit.profile.reliability import assess, thresholds
    from qfit.profile.speed import run_speed, speed_steps
    steps = speed_steps(opts.input_lens, opts.batches, opts.trials, opts.warmup)
    before = snapshot()
    with progress("speed", steps) as tick:
        speed = run_speed(model, input_lens=opts.input_lens, batches=opts.batches, output_tokens=opts.output_tokens,
                          trials=opts.trials, warmup=opts.warmup, device_gbps=prediction.get("bandwidth_gbps"),
                          progress=tick)
    speed["conditions"] = conditions(before, snapshot(), os.cpu_count() or 1, device.get("threads"))
    speed["quality"] = assess(speed, speed["conditions"], device["kind"], thresholds())
    return speed


def _predict(opts: ProfileOptions, model) -> dict:
    from qfit.profile.predict import planner_accelerator, planner_prediction
    if not opts.speed:
        return {"available": False, "reason": "speed not measured (--no-speed)"}
    group = None
    qc = model.info.extra.get("quantization_config") if model.info.extra else None
    if isinstance(qc, dict):
        group = qc.get("group_size")
    try:
        acc = planner_accelerator(model.device)
    except QfitError as exc:
        return {"available": False, "reason": f"the device is not one the planner knows: {exc}"}
    # backend names are engine names (qfit.profile.backends normalised them through the engine registry)
    return planner_prediction(model.info.path, precision=model.info.precision, acc=acc, engine=model.name,
                              input_lens=opts.input_lens, batches=opts.batches, output_tokens=opts.output_tokens,
                              gpus=opts.tensor_parallel, group_size=group)


def _device(model, threads) -> dict:
    name = "host CPU"
    if model.device == "cuda":
        import torch
        name = torch.cuda.get_device_name(0)
    elif model.device == "mps":
        name = "Apple GPU (MPS)"
    if model.device == "cpu":
        import torch
        threads = threads or torch.get_num_threads()
    return {"kind": model.device, "name": name, "threads": threads}


def _accuracy_weights(opts: ProfileOptions, model, device: dict) -> str | None:
    """Accuracy on dequantized weights where the kernels are slow (CPU) or when asked: same values, float speed."""
    want = opts.accuracy_weights
    if want == "kernel" or (want == "auto" and device.get("kind") != "cpu"):
        return None
    return model.use_dequantized_weights()


def check_positions(opts: ProfileOptions, info) -> None:
    """Windows and prompts must fit the positions the model was loaded with: beyond them a model scores garbage."""
    limit = info.max_positions
    if not limit:
        return
    longest = max(opts.input_lens) + opts.output_tokens if opts.speed else 0
    if ("ppl" in opts.evals or "kl" in opts.evals) and opts.ppl_window > limit:
        raise QfitError(f"--ppl-window {opts.ppl_window:,} exceeds the {limit:,} positions of {info.path}")
    if longest > limit:
        raise QfitError(f"--input-len up to {max(opts.input_lens):,} + --output-len {opts.output_tokens} = "
                        f"{longest:,} exceed the {limit:,} positions of {info.path}")


def run_profile(opts: ProfileOptions, progress: Callable) -> dict:
    """Speed first with MODEL alone (so the speed phase's memory is MODEL's), then BASE is loaded for the paired
    quality runs; the process's peak memory over the whole run is recorded at the end."""
    from qfit import __version__
    from qfit.profile.predict import compare
    from qfit.profile.report import SCHEMA, git_commit, host_info, library_versions
    from qfit.profile.speed import memory_summary
    model = _open(opts, opts.model, "model", progress)
    check_positions(opts, model.info)
    device = _device(model, opts.threads)
    with progress("planner prediction", 1) as tick:
        prediction = _predict(opts, model)
        tick()
    speed = _speed(opts, model, prediction, device, progress) if opts.speed else None
    base = _open(opts, opts.baseline, "baseline", progress) if opts.baseline and opts.evals else None
    weights_note = _accuracy_weights(opts, model, device) if opts.evals else None
    accuracy = _accuracy(opts, model, base, progress) if opts.evals else {"tasks": []}
    if weights_note:
        accuracy["weights"] = weights_note
    return {
        "schema": SCHEMA, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "qfit": {"version": __version__, "git_commit": git_commit()},
        "host": host_info(), "device": device, "versions": library_versions(model.versions()),
        "backend": model.name, "options": {k: v for k, v in vars(opts).items()},
        "model": model.info.to_dict(), "baseline": base.info.to_dict() if base else None,
        "methods": METHODS, "accuracy": accuracy, "speed": speed, "prediction": prediction,
        "comparison": compare(speed, prediction),
        "memory": memory_summary(speed["peak_memory"] if speed else None, model, base is not None),
    }
