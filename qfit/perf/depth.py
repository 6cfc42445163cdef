"""Decode at depth: what the speed estimate reads and computes at the plan's KV depth, and whether that depth lies
beyond what the engine x backend's factors were fitted at (profiles/planner/long_context.yaml says why it matters;
it reaches here read at the edge, as the engines' Policy.long_context).
"""

from __future__ import annotations

from qfit.perf.efficiency import Efficiency


def calibrated_depth(facts: dict, engine: str, backend: str) -> tuple[dict, str] | None:
    """({decode, prefill}, backend): the deepest KV the engine's rows were measured at on this backend or, for a
    backend whose factors are borrowed (profiles/engines priors), on the engine's first calibrated backend (None: no
    rows for the engine at all)."""
    rows = (facts.get("calibrated") or {}).get(engine) or {}
    if backend in rows:
        return rows[backend], backend
    return next(((v, b) for b, v in rows.items()), None)


def kv_share(kv_bytes: float, step_bytes: float) -> float:
    return kv_bytes / step_bytes if step_bytes > 0 else 0.0


def widen_kind(band: dict, kind: str, factor: float, why: str) -> dict:
    """The band's `kind`_* percentages (decode or prefill) times `factor`, the reason appended to its basis."""
    out = {k: (round(v * factor, 1) if k.startswith(kind) and k.endswith("_pct") and isinstance(v, (int, float))
               else v) for k, v in band.items()}
    out["basis"] = f"{band.get('basis', 'calibration residuals')}; {kind} x{factor:g} for {why}"
    return out


def depth_band(eff: Efficiency, context: int, prompt: int, kv_bytes: float, step_bytes: float, attn_flops: float,
               band: dict) -> tuple[dict, list[str]]:
    """(error band, assumption lines) for decode timed at `context` tokens of KV, reading `kv_bytes` of KV out of
    `step_bytes` per step (per GPU, all sequences) with `attn_flops` of attention per sequence, after a prefill of
    `prompt` tokens."""
    share = kv_share(kv_bytes, step_bytes)
    notes = [f"decode timed at {context:,} tokens of KV: each step reads {kv_bytes / 1e9:.3g} GB of KV and recurrent state per GPU "
             f"({share:.0%} of its bytes) and {attn_flops / 1e9:.3g} GFLOP of attention per sequence; long-context slow-down "
             "follows from these (no separate long-context factor)"]
    f = eff.policy.long_context
    if not f:
        return band, notes
    found = calibrated_depth(f, eff.engine, eff.backend)
    depth, on = found or ({}, eff.backend)
    factor = float(f["factor"])
    for kind, length, matters in (("decode", context, share >= float(f["min_kv_share"])), ("prefill", prompt, True)):
        fitted = int(depth.get(kind, 0))
        if length > fitted and matters and length > 0:
            where = f"its rows reach {fitted:,} tokens" if depth else "no rows"
            why = f"{kind} at {length:,} tokens beyond the calibrated depth ({eff.engine}/{on}: {where})"
            notes.append(f"{why}: attention kernels assumed as efficient as at short context (uncalibrated)")
            band = widen_kind(band, kind, factor, why)
    return band, notes
