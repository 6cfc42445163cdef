"""Imported measurements -> the planner's inputs -> profile-shaped comparisons that `qfit calibrate`'s fit takes.

Each measurement is planned with the same model, device, engine, precision, batch and lengths (the overlays in force
now, whose factors are recorded so the fit divides them out, as for profile.json). What a file does not record comes
from the flags (`--gpu`, `--engine`, `--model`, `--precision`) and a missing one is refused by name, never guessed;
a flag overrides the file. No precision anywhere means the checkpoint's own dtype (what a server loads by default).
Files are grouped into one result per (model, precision, device, engine), so each group has one overlay prior.
"""

from __future__ import annotations

from dataclasses import dataclass

from qfit.calibrate_import import Measurement
from qfit.errors import QfitError


@dataclass(frozen=True)
class Flags:
    gpu: str | None = None
    engine: str | None = None
    model: str | None = None
    precision: str | None = None


def _setup(path: str, m: Measurement, flags: Flags):
    from qfit import resolve

    engine, device, model = flags.engine or m.engine, flags.gpu or m.device, flags.model or m.model
    if engine is None:
        raise QfitError(f"{path}: {m.tool} does not record which engine served the requests: pass --engine "
                        "(vllm, sglang, llama.cpp, transformers)")
    if device is None:
        raise QfitError(f"{path}: {m.tool} does not record the GPU: pass --gpu NAME (e.g. --gpu H100)")
    try:
        resolve.engines().get(engine)
    except QfitError as exc:
        raise QfitError(f"{path}: engine {engine!r:.40}: {exc}") from None
    try:
        acc = resolve.accelerator(device)
    except QfitError as exc:
        raise QfitError(f"{path}: device {device!r:.60} is not one qfit knows ({exc}); pass --gpu NAME "
                        "(--gpu cpu: this machine's CPU)") from None
    try:
        loaded = resolve.model(model)
    except QfitError as exc:
        raise QfitError(f"{path}: model {model!r:.60} does not resolve ({exc}); pass --model NAME") from None
    return engine, device, acc, loaded, flags.precision or m.precision


def _predict(loaded, acc, engine: str, precision: str | None, m: Measurement):
    from qfit import api

    p = api.plan(loaded, gpu=acc, precision=precision, engine=engine, batch=m.batch, input_len=m.input_len,
                 output_len=m.output_len, context=m.input_len + m.output_len, suggest=False)
    if p.performance is None:
        raise QfitError(f"the planner gives no speed for {m.label}: {p.reason or 'the model does not fit'}")
    return p


def _quality(cvs: list[float], tool: str) -> dict:
    from qfit.profile.reliability import thresholds

    limit = thresholds().max_cv
    flags = [f"CV {100 * cv:.0f} % across {tool}'s repetitions > {100 * limit:.0f} %" for cv in cvs if cv > limit]
    return {"reliable": not flags, "flags": flags[:1]}


def _new_group(engine: str, device: str, plan, m: Measurement, ref: str) -> dict:
    """ref: the model as the file or --model named it, which the preview resolves again (a GGUF's display name,
    e.g. its general.name, would not resolve)."""
    d = plan.to_dict()
    overlay = d["performance"]["breakdown"].get("overlay_factors")
    return {"schema": "qfit.import/1", "created": None, "backend": engine, "device": {"name": device},
            "model": {"path": ref, "precision": d["precision"]}, "qfit": {},
            "prediction": {"available": True, "accelerator": d["accelerator"],
                           **({"overlay_factors": overlay} if overlay else {})},
            "comparison": {"decode": [], "prefill": []}, "imported": {"tool": m.tool, "rows": []}, "_cvs": []}


def _row(path: str, m: Measurement, plan, device: str, ref: str) -> dict:
    from qfit.perf.efficiency import overlay_key

    perf = plan.performance
    d = plan.to_dict()
    row = {"file": path, "tool": m.tool, "label": m.label, "engine": d["engine"], "device": d["accelerator"]["name"],
           "device_ref": device, "family": overlay_key(d["accelerator"]["backend"], d["precision"]),
           "model": d["model"]["name"], "model_ref": ref, "precision": d["precision"], "batch": m.batch,
           "input_len": m.input_len,
           "output_len": m.output_len}
    if m.decode_tokens_per_s_per_seq is not None:
        row |= {"measured_decode_tokens_per_s_per_seq": round(m.decode_tokens_per_s_per_seq, 3),
                "predicted_decode_tokens_per_s_per_seq": round(perf.decode_tokens_per_s, 3)}
    if m.prefill_tokens_per_s is not None:
        row |= {"measured_prefill_tokens_per_s": round(m.prefill_tokens_per_s, 3),
                "predicted_prefill_tokens_per_s": round(perf.prefill_tokens_per_s, 3)}
    return row


def to_results(path: str, measurements: list[Measurement], flags: Flags) -> list[tuple[str, dict]]:
    """One profile-shaped result per (model, precision, device, engine) of this file."""
    groups: dict = {}
    for m in measurements:
        engine, device, acc, loaded, precision = _setup(path, m, flags)
        try:
            plan = _predict(loaded, acc, engine, precision, m)
        except QfitError as exc:
            raise QfitError(f"{path}: {exc}") from None
        d = plan.to_dict()
        g = groups.setdefault((d["model"]["name"], d["precision"], acc.key, engine),
                              _new_group(engine, device, plan, m, flags.model or m.model))
        row = _row(path, m, plan, device, flags.model or m.model)
        g["imported"]["rows"].append(row)
        if "measured_decode_tokens_per_s_per_seq" in row:
            g["comparison"]["decode"].append({"batch": m.batch, "measured_tokens_per_s_per_seq":
                                              m.decode_tokens_per_s_per_seq,
                                              "predicted_tokens_per_s_per_seq": plan.performance.decode_tokens_per_s})
        if "measured_prefill_tokens_per_s" in row:
            g["comparison"]["prefill"].append({"input_len": m.input_len, "measured_tokens_per_s":
                                               m.prefill_tokens_per_s,
                                               "predicted_tokens_per_s": plan.performance.prefill_tokens_per_s})
        if m.cv is not None:
            g["_cvs"].append(m.cv)
    for g in groups.values():
        g["speed"] = {"quality": _quality(g.pop("_cvs"), g["imported"]["tool"])}
    return [(path, g) for g in groups.values()]


def read_all(paths: list[str], flags: Flags) -> tuple[list[tuple[str, dict]], list[dict]]:
    """Every RESULT as (path, profile-shaped result) for the fit, and the imported rows (predicted vs measured).
    Flags that would change nothing (no imported file) are refused rather than silently ignored."""
    from qfit.calibrate_import import read_any

    results, rows = [], []
    for p in paths:
        kind, path, payload = read_any(p)
        if kind == "profile":
            results.append((path, payload))
            continue
        for item in to_results(path, payload, flags):
            results.append(item)
            rows += item[1]["imported"]["rows"]
    given = [f"--{k}" for k, v in vars(flags).items() if v is not None]
    if given and not rows:
        raise QfitError(f"{', '.join(given)} apply to imported benchmark files only; these RESULTS are qfit profile "
                        "results, which record their own setup")
    return results, rows
