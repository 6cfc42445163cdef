"""Fold `qfit profile` results into engine efficiency overlays (the logic behind `qfit calibrate`).

Overlay format (YAML, one file per engine, in qfit.paths.overlay_dir(): ~/.config/qfit/engines/<engine>.yaml):

    engine: transformers
    written_by: qfit calibrate
    calibrations:
      cpu:                          # device family: the planner's backend name (cuda, rocm, metal, xpu, cpu)
        devices: ["Intel Xeon ... (host CPU)"]
        decode_speed_factor: 0.83   # multiply the reviewed profile's predicted decode tokens/s by this
        prefill_speed_factor: 1.12  # multiply predicted prefill tokens/s by this
        points: {decode: 6, prefill: 4}
        error_before: {decode_median_abs_pct: 21.0, prefill_median_abs_pct: 35.0}
        error_after:  {decode_median_abs_pct: 4.1,  prefill_median_abs_pct: 6.0}
        sources: [{file: ..., created: ..., model: ..., precision: ..., qfit_commit: ...}]
        updated: 2026-11-22T17:00:00+00:00

Runs of quantized weights go to their own entry, `<family>/<format>` (`cpu/gptq`, `cuda/awq`, ...): a GPTQ kernel's
speed (GPTQModel's CPU kernel decodes at a few % of the plan) says nothing about float weights, so it must not move
their plans; a quantized plan takes its format's entry, else the family's (qfit.perf.efficiency.overlay_key).

A factor is the median of measured / predicted over every (profile, batch) or (profile, input length) point of that
engine x family; the median resists the odd noisy run. Factors are relative to the predictions recorded in the
profiles, i.e. to the reviewed profiles in profiles/engines/ when the planner applied no overlay (the planner should
record overlay use in its assumptions; this code multiplies an existing overlay factor in when a profile says it
was predicted with one: prediction["overlay_factors"]). The repo's reviewed profiles are never edited.
Error = median |predicted/measured - 1| in %, before and after applying the factor.

Only trusted measurements are folded in: a result whose speed `qfit profile` flagged unreliable (CV, CPU steal,
thread over-subscription: qfit/profile/reliability.py), or one measured before that check existed, is refused unless
the caller accepts it explicitly (`--accept-unreliable`, recorded in the overlay's sources). Each write keeps the
overlay it replaces as <engine>.yaml.prev, so `qfit calibrate --reset` undoes the last calibration.
"""

from __future__ import annotations

import datetime as _dt
import math
import statistics
from collections import defaultdict
from pathlib import Path

from qfit.atomic import write_text
from qfit.errors import QfitError
from qfit.jsonfile import read_json
from qfit.perf.efficiency import overlay_key

# torch device kind -> engine backend, for results whose prediction named no accelerator
_FAMILY_BY_KIND = {"cpu": "cpu", "cuda": "cuda", "mps": "metal"}


def read_results(paths: list[str]) -> list[tuple[str, dict]]:
    """profile.json files (or folders holding one); one-line errors for anything else."""
    out = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            path = path / "profile.json"
        if not path.is_file():
            raise QfitError(f"no profile result at {p}")
        data = read_json(path, "profile result")
        if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("qfit.profile/"):
            raise QfitError(f"{path} is not a qfit profile result (no qfit.profile schema)")
        out.append((str(path), data))
    return out


def family_of(result: dict) -> str:
    """The device family (engine backend) a result was measured on: the planned accelerator's, else the device's."""
    from qfit.engines.profile import BACKENDS
    from qfit.hardware import BACKEND_OF_VENDOR

    acc = (result.get("prediction") or {}).get("accelerator") or {}
    acc = acc if isinstance(acc, dict) else {}
    backend = acc.get("backend") or BACKEND_OF_VENDOR.get(str(acc.get("vendor", "")).lower())
    device = result.get("device") if isinstance(result.get("device"), dict) else {}
    backend = backend or _FAMILY_BY_KIND.get(str(device.get("kind", "")), "cuda")
    if backend not in BACKENDS:
        raise QfitError(f"profile result names an unknown device family {str(backend)!r:.40}")
    return backend


def _rate(path: str, where: str, value) -> float:
    """A measured or predicted rate from a result file: a finite positive number, or the file is refused."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 < value < 1e12
    if not ok:
        raise QfitError(f"{path}: {where} is {value!r:.40}, not a positive finite rate; refusing to calibrate on it")
    return float(value)


def _pairs(path: str, rows, measured: str, predicted: str, prior: float) -> list[tuple[float, float]]:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise QfitError(f"{path}: comparison rows are malformed")
    return [(_rate(path, f"row {i + 1} {measured}", r[measured]), _rate(path, f"row {i + 1} {predicted}",
                                                                        r[predicted]) / prior)
            for i, r in enumerate(rows) if r.get(measured) is not None and r.get(predicted) is not None]


def _engine(path: str, res: dict) -> str:
    """The result's backend as a canonical engine name (never a path: it names the overlay file)."""
    from qfit.engines import load_engines

    engines = load_engines(overlays=False)
    try:
        if res.get("schema") == "qfit.import/1":   # measured by another tool: any engine the planner knows
            return engines.get(str(res.get("backend", ""))).name
        return engines.measurable(str(res.get("backend", ""))).name
    except QfitError:
        raise QfitError(f"{path}: backend {str(res.get('backend'))!r:.40} is not an engine qfit profiles") from None


def collect_points(results: list[tuple[str, dict]]) -> dict:
    """{(engine, family): {"decode": [(measured, predicted)], "prefill": [...], "sources": [...], "devices": set}}."""
    from qfit.profile.reliability import verdict

    groups: dict = defaultdict(lambda: {"decode": [], "prefill": [], "sources": [], "devices": set(),
                                        "accelerators": set()})
    for path, res in results:
        comp = res.get("comparison") or {}
        pred = res.get("prediction") or {}
        if not isinstance(pred, dict) or not pred.get("available") or not isinstance(comp, dict):
            continue
        prior = pred.get("overlay_factors") or {}
        prior = prior if isinstance(prior, dict) else {}
        g = groups[(_engine(path, res), overlay_key(family_of(res), (res.get("model") or {}).get("precision")))]
        decode = _pairs(path, comp.get("decode", []), "measured_tokens_per_s_per_seq",
                        "predicted_tokens_per_s_per_seq", _rate(path, "overlay decode", prior.get("decode", 1.0)))
        prefill = _pairs(path, comp.get("prefill", []), "measured_tokens_per_s", "predicted_tokens_per_s",
                         _rate(path, "overlay prefill", prior.get("prefill", 1.0)))
        if not decode and not prefill:
            continue
        g["decode"] += decode
        g["prefill"] += prefill
        g["devices"].add(str((res.get("device") or {}).get("name", "?")))
        g["accelerators"].add(_accelerator_ref(res))
        trusted, why = verdict(res)
        g["sources"].append({"file": path, "created": res.get("created"), "model": (res.get("model") or {}).get("path"),
                             "precision": (res.get("model") or {}).get("precision"),
                             "qfit_commit": (res.get("qfit") or {}).get("git_commit"),
                             "measurement": "reliable" if trusted else f"accepted although {why}",
                             **({"tool": res["imported"]["tool"]} if "imported" in res else {})})
    return groups


def _accelerator_ref(res: dict) -> str:
    """A name the planner resolves to the device a result ran on: `cpu` for the host, else its catalog key."""
    acc = (res.get("prediction") or {}).get("accelerator") or {}
    acc = acc if isinstance(acc, dict) else {}
    if family_of(res) == "cpu":
        return "cpu"
    return str(acc.get("key") or acc.get("name") or "?")[:80]


def refuse_untrusted(groups: dict) -> None:
    """One line naming the first untrusted result, why, and the way out."""
    bad = [s for g in groups.values() for s in g["sources"] if s["measurement"] != "reliable"]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise QfitError(f"refusing {bad[0]['file']}{more}: {bad[0]['measurement'].removeprefix('accepted although ')}; "
                        "re-profile on a quiet machine, or pass --accept-unreliable to fold it in anyway")


def fit_factor(points: list[tuple[float, float]]) -> dict | None:
    """Pure: median measured/predicted, and the median absolute % error before and after applying it."""
    if not points:
        return None
    factor = statistics.median(m / p for m, p in points)
    before = statistics.median(abs(p / m - 1) * 100 for m, p in points)
    after = statistics.median(abs(p * factor / m - 1) * 100 for m, p in points)
    return {"factor": factor, "points": len(points), "error_before_pct": before, "error_after_pct": after}


def fit(results: list[tuple[str, dict]], accept_unreliable: bool = False) -> list[dict]:
    """Factors per engine x family. Results whose speed was flagged unreliable (or never assessed) are refused, not
    down-weighted: contention slows every row of a run alike, so its points agree with each other and a median over
    them does not resist it; there is no principled weight for a run known to measure the wrong thing."""
    fits = []
    groups = collect_points(results)
    if not accept_unreliable:
        refuse_untrusted(groups)
    for (engine, family), g in sorted(groups.items()):
        dec, pre = fit_factor(g["decode"]), fit_factor(g["prefill"])
        if not dec and not pre:
            continue
        fits.append({"engine": engine, "family": family, "decode": dec, "prefill": pre,
                     "devices": sorted(g["devices"]), "accelerator": min(g["accelerators"]),
                     "sources": g["sources"]})
    if not fits:
        raise QfitError("no measured-vs-predicted pairs in these results: profile with the planner available "
                        "(the prediction must not be n/a) and with speed measured")
    return fits


def overlay_entry(f: dict) -> dict:
    def err(key):
        return {f"{k}_median_abs_pct": round(f[k][key], 2) for k in ("decode", "prefill") if f[k]}
    entry = {"devices": f["devices"], "points": {k: f[k]["points"] for k in ("decode", "prefill") if f[k]},
             "error_before": err("error_before_pct"), "error_after": err("error_after_pct"), "sources": f["sources"],
             "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    for k in ("decode", "prefill"):
        if f[k]:
            entry[f"{k}_speed_factor"] = round(f[k]["factor"], 4)
    return entry


def previous_of(path: Path) -> Path:
    """Where write_overlay keeps the overlay it replaced (the planner reads only <engine>.yaml)."""
    return path.with_name(path.name + ".prev")


def write_overlay(f: dict, path: Path) -> Path:
    """Merge this engine x family entry into the overlay file (other families kept); atomic write. The file it
    replaces is kept beside it (`previous_of`) so `qfit calibrate --reset` can restore it."""
    import yaml
    data, old = {}, None
    if path.is_file():
        try:
            old = path.read_text(encoding="utf-8")
            data = yaml.safe_load(old) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise QfitError(f"cannot read overlay {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("engine") not in (None, f["engine"]):
            raise QfitError(f"{path} is the overlay of engine {data.get('engine')!r}, not {f['engine']!r}")
    data.update({"engine": f["engine"], "written_by": "qfit calibrate"})
    data.setdefault("calibrations", {})[f["family"]] = overlay_entry(f)
    if old is not None:
        write_text(previous_of(path), old)
    elif previous_of(path).exists():
        previous_of(path).unlink()       # a stale backup must not resurrect an overlay the user removed by hand
    return write_text(path, yaml.safe_dump(data, sort_keys=False), mkdir=True)


def _factors(text: str | None) -> dict:
    """{family: {decode, prefill}} of an overlay's text, for saying what a reset removes (unreadable: {})."""
    import yaml
    try:
        cal = (yaml.safe_load(text or "") or {}).get("calibrations") or {}
    except (yaml.YAMLError, AttributeError):
        return {}
    return {str(fam): {k: e.get(f"{k}_speed_factor") for k in ("decode", "prefill") if f"{k}_speed_factor" in e}
            for fam, e in cal.items() if isinstance(e, dict)} if isinstance(cal, dict) else {}


def reset_overlay(path: Path, dry_run: bool = False) -> dict:
    """Undo the last `qfit calibrate` of this overlay: restore the file it replaced, or remove the overlay when it
    replaced none. Atomic: one rename (restore) or one unlink (remove). Returns what was removed and what is now in
    force."""
    prev = previous_of(path)
    if not path.is_file():
        raise QfitError(f"no calibration overlay at {path}: nothing to reset")
    try:
        current, before = path.read_text(encoding="utf-8"), prev.read_text(encoding="utf-8") if prev.is_file() else None
    except OSError as exc:
        raise QfitError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not dry_run:
        if before is not None:
            write_text(path, before)
            prev.unlink()
        else:
            path.unlink()
    return {"path": str(path), "action": "restored" if before is not None else "removed",
            "removed": _factors(current), "now": _factors(before) if before is not None else {}}
