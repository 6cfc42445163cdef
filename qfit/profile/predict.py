"""The planner's prediction for what `qfit profile` measured, and the measured/predicted comparison.

`planner_prediction` is the ONE place profile calls the planner, through qfit.api like the CLI. A configuration the
planner cannot describe (a quantization method it does not model, an engine that does not run there) is recorded as
{"available": false, "reason": ...} and every predicted cell of the report reads "n/a"; anything else is a bug and
surfaces as one. `compare` is pure and pairs each measured figure with its prediction (ratio = measured / predicted).
"""

from __future__ import annotations

from typing import Sequence

from qfit import detect
from qfit.errors import QfitError
from qfit.hardware import Accelerator


def planner_accelerator(device: str) -> Accelerator:
    """The catalogued device a profile ran on: a CUDA GPU by its torch name, an Apple GPU (MPS) by its chip, memory
    and core count, the host CPU (`cpu`) as qfit.resolve measures it."""
    from qfit import resolve

    if device == "cuda":
        import torch
        return resolve.accelerator(torch.cuda.get_device_name(0))
    if device == "mps":
        brand, memory = detect.sysctl("machdep.cpu.brand_string"), int(detect.sysctl("hw.memsize"))
        return resolve.accelerator(detect.apple_device_name(brand, memory, detect.apple_gpu_cores()))
    return resolve.accelerator("cpu")


def planner_prediction(model_ref, *, precision: str, acc: Accelerator, engine: str, input_lens: Sequence[int],
                       batches: Sequence[int], output_tokens: int, gpus: int = 1, group_size: int | None = None) -> dict:
    """Predicted prefill per input length (batch 1), decode per batch (context = prompt + output), and memory."""
    from qfit import api, resolve

    common = dict(gpu=acc.name, precision=precision, engine=engine, gpus=gpus, group_size=group_size)
    try:
        model = resolve.model(str(model_ref))   # once: every plan below reuses the loaded model
        kw = dict(gpu=acc, precision=precision, engine=engine, gpus=gpus, group_size=group_size, suggest=False)
        prefill = [_prefill_row(api.plan(model, context=n, input_len=n, **kw), n) for n in input_lens]
        context = min(input_lens) + output_tokens
        decode_plans = api.plans(model, batches=list(batches), context=context, input_len=min(input_lens),
                                 output_len=output_tokens, **kw)
    except QfitError as exc:
        return {"available": False, "reason": f"the planner cannot describe this configuration: {exc}",
                "request": common}
    decode = [_decode_row(p, context) for p in decode_plans]
    last = decode_plans[-1].to_dict()
    perf = last["performance"]
    overlay = perf["breakdown"].get("overlay_factors")
    return {"available": True, "request": common | {"model": str(model_ref)}, "prefill": prefill, "decode": decode,
            "accelerator": last["accelerator"], "bandwidth_gbps": acc.bandwidth_gbps,
            "assumptions": last["assumptions"] + perf["assumptions"], "error_band": perf["error_band"],
            **({"overlay_factors": overlay} if overlay else {})}


def _prefill_row(plan, n: int) -> dict:
    perf = plan.performance
    return {"input_len": n, "tokens_per_s": round(perf.prefill_tokens_per_s, 2), "ttft_s": round(perf.ttft_s, 4)}


def _decode_row(plan, context: int) -> dict:
    perf = plan.performance.to_dict()
    return {"batch": plan.batch, "context": context, "tokens_per_s_per_seq": perf["decode_tokens_per_s"],
            "tpot_s": perf["tpot_s"], "ttft_s": perf["ttft_s"], "bound": perf["bound"],
            "memory_total_gib": plan.to_dict()["memory"]["total_gib"]}


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
