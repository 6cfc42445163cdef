"""The endpoint profile's JSON (schema qfit.profile.endpoint/1, documented in docs/json.md) and the plan beside it."""

from __future__ import annotations

from datetime import datetime, timezone

from qfit.endpoint.probe import Server
from qfit.endpoint.stats import measured_speed

SCHEMA = "qfit.profile.endpoint/1"


def prediction(opts) -> dict:
    """The planner's curve for the same lengths and concurrencies, or why there is none."""
    plan = opts.plan
    if plan is None:
        return {"available": False, "reason": "no plan drawn: give --model, --gpu (and --engine) to compare with "
                                              "qfit plan's prediction"}
    if opts.rates:
        return {"available": False, "reason": "no plan drawn: the planner predicts fixed concurrencies, not request "
                                              "rates (use -b/--batch)"}
    from qfit import resolve
    from qfit.errors import QfitError
    from qfit.profile.predict import planner_prediction
    try:
        acc = resolve.accelerator(plan.gpu)
    except QfitError as exc:
        return {"available": False, "reason": f"no plan drawn: {exc}"}
    pred = planner_prediction(plan.model, precision=plan.precision, acc=acc, engine=plan.engine,
                              input_lens=[opts.input_len], batches=list(opts.concurrencies),
                              output_tokens=opts.output_len, gpus=plan.gpus)
    if not pred["available"]:
        pred["reason"] = "no plan drawn: " + pred["reason"]
    return pred


def build_result(opts, server: Server, text_source: dict, levels: list[dict], pred: dict,
                 interrupted: bool = False) -> dict:
    from qfit import __version__
    from qfit.profile.predict import compare
    from qfit.profile.report import host_info

    measured = measured_speed(levels, opts.input_len)
    plan = opts.plan
    failed = sum(lv["failed"] for lv in levels)
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "qfit": __version__,
        "client_host": host_info(),
        "endpoint": {"url": server.base, "api": "/v1/completions", "served_model": server.served_model,
                     "models_listed": server.models_listed},
        "model": plan.model if plan else None,
        "engine": plan.engine if plan else None,
        "device": {"gpu": plan.gpu, "gpus": plan.gpus} if plan else None,
        "precision": plan.precision if plan else None,
        "protocol": {
            "input_len": opts.input_len, "output_len": opts.output_len,
            "input_len_probe_served": server.prompt_tokens_probe, "prompt_chars": server.prompt_chars,
            "prompt_tokens_source": "usage.prompt_tokens" if server.prompt_tokens_probe is not None
            else f"estimate ({server.prompt_chars} characters; the server reports no usage)",
            "output_tokens_source": "usage.completion_tokens" if server.usage_in_stream else "chunks counted",
            "fields_accepted": sorted(server.extras), "mode": "rate" if opts.rates else "concurrency",
            "levels": [v for _, v in opts.levels()], "warmup_requests": opts.warmup,
            "requests_per_level": [opts.requests_for(k, v) for k, v in opts.levels()],
            "temperature": 0.0, "text": text_source, "timeouts": opts.timeouts.to_dict(), "seed": opts.seed,
            "prompts": "one per request, cut from the text at distinct offsets (no shared prefix to cache)",
        },
        "levels": levels,
        "complete": failed == 0 and not interrupted and len(levels) == len(opts.levels()),
        "interrupted": interrupted,
        "measured": measured,
        "prediction": pred,
        "comparison": compare(measured, pred),
    }
