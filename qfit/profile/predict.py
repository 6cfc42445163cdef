"""The planner's prediction for what `qfit profile` measured, and the measured/predicted comparison.

`planner_prediction` is the ONE place that calls the planner. It is guarded: while qfit.plan is missing or raises, the
prediction is {"available": false, "reason": ...} and every predicted cell of the report reads "n/a".
`compare` is pure and pairs each measured figure with its prediction and the ratio measured / predicted.
"""

from __future__ import annotations

from typing import Sequence


def planner_device_name(device: str) -> str:
    """Accelerator name the planner's catalog is asked for: the host CPU is the accelerator "cpu"."""
    if device == "cuda":
        import torch
        return torch.cuda.get_device_name(0)
    if device == "mps":
        return "apple-mps"
    return "cpu"


def _plan(make_plan, model_ref, **kw) -> dict:
    plan = make_plan(model_ref, **kw)
    return plan.to_dict() if hasattr(plan, "to_dict") else dict(plan)


def planner_prediction(model_ref: str, *, precision: str, device_name: str, engine: str, input_lens: Sequence[int],
                       batches: Sequence[int], output_tokens: int, gpus: int = 1, group_size: int | None = None) -> dict:
    """Predicted prefill per input length (batch 1), decode per batch (context = prompt + output), and memory."""
    try:
        from qfit.plan import make_plan
    except Exception as exc:  # noqa: BLE001 - any import failure means "no planner yet", never a crash
        return {"available": False, "reason": f"planner not importable: {type(exc).__name__}: {exc}"}
    common = dict(gpu=device_name, precision=precision, engine=engine, gpus=gpus, group_size=group_size)
    try:
        from qfit.model.sources import load_model
        model = load_model(model_ref)  # once: make_plan accepts the loaded model
        prefill, decode = [], []
        for n in input_lens:
            perf = _plan(make_plan, model, context=n, input_len=n, batch=1, **common)["performance"]
            if not perf:
                return {"available": False, "reason": "the planner returned no performance estimate "
                        "(speed model not available)", "request": common}
            prefill.append({"input_len": n, "tokens_per_s": perf.get("prefill_tokens_per_s"), "ttft_s": perf.get("ttft_s")})
        context = min(input_lens) + output_tokens
        last = None
        for b in batches:
            last = _plan(make_plan, model, context=context, input_len=min(input_lens), output_len=output_tokens,
                         batch=b, **common)
            perf = last["performance"] or {}
            decode.append({"batch": b, "context": context, "tokens_per_s_per_seq": perf.get("decode_tokens_per_s"),
                           "tpot_s": perf.get("tpot_s"), "ttft_s": perf.get("ttft_s"), "bound": perf.get("bound"),
                           "memory_total_gib": last.get("memory", {}).get("total_gib")})
    except Exception as exc:  # noqa: BLE001 - the report must survive a planner bug; the reason is recorded
        return {"available": False, "reason": f"planner failed: {type(exc).__name__}: {exc}", "request": common}
    accel = (last or {}).get("accelerator", {})
    perf = (last or {}).get("performance") or {}
    overlay = (perf.get("breakdown") or {}).get("overlay_factors")
    return {"available": True, "request": common | {"model": model_ref}, "prefill": prefill, "decode": decode,
            "accelerator": accel, "bandwidth_gbps": accel.get("bandwidth_gbps"),
            "assumptions": (last or {}).get("assumptions", []) + perf.get("assumptions", []),
            "error_band": perf.get("error_band"),
            **({"overlay_factors": overlay} if overlay else {})}


def _ratio(measured, predicted):
    if measured is None or not predicted:
        return None
    return measured / predicted


def compare(speed: dict | None, prediction: dict) -> dict:
    """Pure: rows of measured vs predicted with ratio = measured / predicted (None where either side is missing)."""
    if not speed:
        return {"prefill": [], "decode": []}
    ok = prediction.get("available", False)
    pre = {p["input_len"]: p for p in prediction.get("prefill", [])} if ok else {}
    dec = {d["batch"]: d for d in prediction.get("decode", [])} if ok else {}
    rows_p = []
    for row in speed["prefill"]:
        p = pre.get(row["input_len"], {})
        m = row["tokens_per_s"]["mean"]
        rows_p.append({"input_len": row["input_len"], "measured_tokens_per_s": m,
                       "predicted_tokens_per_s": p.get("tokens_per_s"), "ratio": _ratio(m, p.get("tokens_per_s"))})
    rows_d = []
    for row in speed["decode"]:
        d = dec.get(row["batch"], {})
        m = row["tokens_per_s_per_seq"]["mean"]
        ttft = row["ttft_s"]["mean"]
        tpot = row["tpot_s"]["mean"]
        rows_d.append({"batch": row["batch"], "measured_tokens_per_s_per_seq": m,
                       "predicted_tokens_per_s_per_seq": d.get("tokens_per_s_per_seq"),
                       "ratio": _ratio(m, d.get("tokens_per_s_per_seq")),
                       "measured_tpot_s": tpot, "predicted_tpot_s": d.get("tpot_s"),
                       "tpot_ratio": _ratio(tpot, d.get("tpot_s")),
                       "measured_ttft_s": ttft, "predicted_ttft_s": d.get("ttft_s"),
                       "ttft_ratio": _ratio(ttft, d.get("ttft_s"))})
    return {"prefill": rows_p, "decode": rows_d}
