"""Leave-one-model-out figures for scripts/validate_planner.py: what `qfit calibrate` would buy on a model it never saw.

For each model of the calibration set, the engine x device-family factors `qfit calibrate` fits (the median of
measured / predicted per engine x overlay key: the family for float weights, `family/format` for quantized ones;
qfit.profile.calibration.fit_factor, qfit.perf.efficiency.overlay_key) are fitted on the rows of every OTHER model and
applied to the held-out model's rows. Three columns per kind: uncalibrated (the reviewed profiles alone), in-sample
(factors fitted on all rows, the held-out model included) and leave-one-model-out.

Like `qfit calibrate`, decode factors come from decode rows and prefill factors from prefill rows; end-to-end rows
are predicted with both applied and fit nothing. Memory has no calibration factor, so its three columns agree.
Caveat stated with the figures: the reviewed profiles' `fitted:` sections were themselves fitted on the rows not held
out by calibration.HELD_OUT_SOURCES, so "uncalibrated" is out-of-sample only for the held-out (Qwen3 H20) rows.
"""

from __future__ import annotations

from dataclasses import replace

from calibration import SPEED_KINDS, build_cases, case_efficiency, predict, rel_error, summarize

# Issue 12's targets: kind -> (median abs error ceiling %, share within +-25 % floor or None)
TARGETS = {"memory": (3.0, None), "decode": (10.0, 80.0), "prefill": (20.0, None), "e2e": (15.0, None)}
FACTOR_KIND = {"decode": "decode", "prefill": "prefill"}     # which rows feed which factor (e2e rows: none)


def factor_keys(case) -> tuple[tuple, tuple]:
    """(format entry, family entry) the overlay lookup tries, in order (qfit.perf.efficiency._apply_overlay)."""
    from qfit.perf.efficiency import overlay_key

    return (case.engine, overlay_key(case.backend, case.precision)), (case.engine, case.backend)


def fit_factors(scored: list[tuple]) -> dict:
    """{(engine, key): {"decode": f, "prefill": f}} from (case, uncalibrated prediction) pairs, as qfit calibrate."""
    from qfit.profile.calibration import fit_factor

    points: dict = {}
    for case, pred in scored:
        kind = FACTOR_KIND.get(case.kind)
        if kind:
            points.setdefault(factor_keys(case)[0], {}).setdefault(kind, []).append((case.row["measured"], pred))
    out = {}
    for key, kinds in points.items():
        out[key] = {k: fit_factor(p)["factor"] for k, p in kinds.items()}
    return out


def calibrated(case, factors: dict) -> float:
    """The case predicted with the factors the planner's overlay lookup would take: its format's, else its family's."""
    fmt_key, fam_key = factor_keys(case)
    found = factors.get(fmt_key) or factors.get(fam_key)
    if not found:
        return predict(case)
    eff = replace(case_efficiency(case, case.precision), decode_speed_factor=found.get("decode", 1.0),
                  prefill_speed_factor=found.get("prefill", 1.0))
    return predict(case, eff)


def resolve_cases(rows: list[dict]) -> tuple[list, list[dict]]:
    """(cases, refusals): a row the planner refuses is counted with its one-line reason, never dropped silently."""
    from qfit.errors import QfitError

    cases, refused = [], []
    for row in rows:
        try:
            cases += build_cases([row])
        except QfitError as exc:
            refused.append({"id": row["id"], "model": row["model"], "precision": row["precision"], "why": str(exc)})
    return cases, refused


def leave_one_model_out(cases: list) -> list[dict]:
    """One result per speed case: measured, uncalibrated / in-sample / LOO predictions and their errors."""
    base = [(c, predict(c)) for c in cases]
    everything = fit_factors(base)
    out = []
    for model in sorted({c.row["model"] for c in cases}):
        train = fit_factors([(c, p) for c, p in base if c.row["model"] != model])
        for c, p in base:
            if c.row["model"] != model:
                continue
            m = c.row["measured"]
            ins, loo = calibrated(c, everything), calibrated(c, train)
            out.append({"id": c.id, "kind": c.kind, "engine": c.engine, "model": model, "measured": m,
                        "uncalibrated": round(p, 3), "in_sample": round(ins, 3), "loo": round(loo, 3),
                        "error": {"uncalibrated": rel_error(p, m), "in_sample": rel_error(ins, m),
                                  "loo": rel_error(loo, m)}})
    return out


def table(results: list[dict]) -> dict:
    """{scope: {kind: {column: summary}}} for scope = overall and each engine."""
    scopes = ["overall"] + sorted({r["engine"] for r in results})
    out = {}
    for scope in scopes:
        rows = [r for r in results if scope in ("overall", r["engine"])]
        out[scope] = {}
        for kind in SPEED_KINDS + ("memory",):
            sel = [r for r in rows if r["kind"] == kind]
            if sel:
                out[scope][kind] = {col: summarize([r["error"][col] for r in sel])
                                    for col in ("uncalibrated", "in_sample", "loo")}
    return out


def meets(kind: str, s: dict) -> bool:
    ceiling, floor = TARGETS[kind]
    return s["median_abs_pct"] <= ceiling and (floor is None or s["within_25_pct"] >= floor)


def markdown(tab: dict, refused: list[dict]) -> str:
    lines = ["| engine | kind | rows | target | uncalibrated | in-sample | leave-one-model-out | LOO meets target |",
             "|---|---|---|---|---|---|---|---|"]
    for scope, kinds in tab.items():
        for kind, cols in kinds.items():
            ceiling, floor = TARGETS[kind]
            target = f"≤ {ceiling:g} %" + (f", ≥ {floor:g} % in ±25 %" if floor else "")
            cells = [f"{s['median_abs_pct']:.1f} % ({s['within_25_pct']:.0f} % in ±25 %)" for s in cols.values()]
            lines.append(f"| {scope} | {kind} | {cols['loo']['n']} | {target} | {' | '.join(cells)} | "
                         f"{'yes' if meets(kind, cols['loo']) else 'no'} |")
    lines.append("")
    lines.append(f"Refused cases: {len(refused)}" + ("" if not refused else " (" + "; ".join(
        f"{r['id']}: {r['why']}" for r in refused) + ")"))
    return "\n".join(lines)
