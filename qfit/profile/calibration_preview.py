"""What a `qfit calibrate` fit would change: a few fixed reference plans (profiles/planner/measurement.yaml,
`reference_plans`) planned on the device the results were measured on, with the overlays in force now (before) and
with this fit's factors in place of the engine's overlay for that device family (after), through the planner itself.

A reference plan the planner cannot make there (an engine that does not run that precision on that device, a model
that does not fit) is shown with its reason instead of numbers.
"""

from __future__ import annotations

from qfit.errors import QfitError
from qfit.paths import profiles_dir
from qfit.yamlcache import load_records


def reference_plans() -> list[dict]:
    return list(load_records(profiles_dir() / "planner")["measurement"]["reference_plans"])


def _with_factors(registry, engine: str, family: str, fit: dict):
    """The registry with `fit`'s factors as the engine's overlay for `family` (a missing figure reads 1.0, as the
    overlay file that `write_overlay` writes would)."""
    from qfit.engines import EngineRegistry
    from qfit.engines.profile import EngineProfile, Overlay

    profile = registry.engines[engine]
    factor = {k: fit[k]["factor"] if fit[k] else 1.0 for k in ("decode", "prefill")}
    points = sum(fit[k]["points"] for k in ("decode", "prefill") if fit[k])
    overlays = {**profile.overlays, family: Overlay(factor["decode"], factor["prefill"], points, "(this fit)")}
    changed = EngineProfile(**{**profile.__dict__, "overlays": overlays, "_efficiency": {}})
    return EngineRegistry({**registry.engines, engine: changed}, registry.policy)


def _rates(ref: dict, acc, engine: str, registry) -> dict:
    from qfit import api

    p = api.plan(ref["model"], gpu=acc, precision=ref["precision"], engine=engine, batch=int(ref["batch"]),
                 input_len=int(ref["input_len"]), output_len=int(ref["output_len"]), suggest=False, engines=registry)
    if p.performance is None:
        raise QfitError("the planner gave no speed (the model does not fit)")
    return {"prefill_tokens_per_s": round(p.performance.prefill_tokens_per_s, 3),
            "decode_tokens_per_s": round(p.performance.decode_tokens_per_s, 3)}


def preview(fit: dict, accelerator: str) -> dict:
    """{"accelerator", "rows": [{model, precision, batch, input_len, output_len, before, after} | {..., reason}]}."""
    from qfit import resolve

    try:
        acc = resolve.accelerator(accelerator)
    except QfitError as exc:
        return {"accelerator": accelerator, "rows": [], "reason": f"cannot plan on {accelerator}: {exc}"}
    before = resolve.engines()
    after = _with_factors(before, fit["engine"], fit["family"], fit)
    rows = []
    for ref in reference_plans():
        row = {k: ref[k] for k in ("model", "precision", "batch", "input_len", "output_len")}
        try:
            row |= {"before": _rates(ref, acc, fit["engine"], before), "after": _rates(ref, acc, fit["engine"], after)}
        except QfitError as exc:
            row["reason"] = str(exc)
        rows.append(row)
    return {"accelerator": acc.name, "rows": rows}


def imported_after(fits: list[dict], rows: list[dict]) -> None:
    """Each imported row (qfit.calibrate_import.mapping) gets the planner's rates with its engine x family fit in
    force (`after_*`), through the planner itself: the change a calibration makes at the very points it came from."""
    from qfit import api, resolve

    before = resolve.engines()
    for f in fits:
        after = _with_factors(before, f["engine"], f["family"], f)
        for r in rows:
            if (r["engine"], r["family"]) != (f["engine"], f["family"]):
                continue
            p = api.plan(r.get("model_ref") or r["model"], gpu=resolve.accelerator(r["device_ref"]), precision=r["precision"],
                         engine=r["engine"], batch=r["batch"], input_len=r["input_len"], output_len=r["output_len"],
                         context=r["input_len"] + r["output_len"], suggest=False, engines=after)
            if "measured_decode_tokens_per_s_per_seq" in r:
                r["after_decode_tokens_per_s_per_seq"] = round(p.performance.decode_tokens_per_s, 3)
            if "measured_prefill_tokens_per_s" in r:
                r["after_prefill_tokens_per_s"] = round(p.performance.prefill_tokens_per_s, 3)
