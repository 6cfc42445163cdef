"""`qfit profile --endpoint`'s flags, validated once into EndpointOptions: bad values and flags that only mean
something for an in-process profile are one-line QfitErrors before any connection is made."""

from __future__ import annotations

from qfit.endpoint.client import Timeouts
from qfit.endpoint.http import split_url
from qfit.endpoint.run import EndpointOptions, PlanRequest
from qfit.errors import QfitError
from qfit.units import parse_float, parse_int_list, parse_positive_int, parse_seconds, parse_tokens

DEFAULT_INPUT_LEN, DEFAULT_OUTPUT_LEN, DEFAULT_BATCHES = 512, 128, "1,4,16"
# profile's flags that load or score a checkpoint here: meaningless against a server
IN_PROCESS = {"baseline": "--baseline", "device": "--device", "backend": "--backend", "dtype": "--dtype",
              "evals": "--eval", "ppl_tokens": "--ppl-tokens", "ppl_window": "--ppl-window", "ppl_stride": "--ppl-stride",
              "bos": "--bos", "limit": "--limit", "trials": "--trials", "threads": "--threads",
              "accuracy_weights": "--accuracy-weights", "no_speed": "--no-speed",
              "trust_remote_code": "--trust-remote-code", "old_input_lens": "--input-lens",
              "old_output_tokens": "--output-tokens"}
ENDPOINT_ONLY = {"plan_model": "--model", "gpu": "--gpu", "engine": "--engine", "precision": "--precision",
                 "served_model": "--served-model", "requests": "--requests", "rate": "--rate",
                 "request_timeout": "--request-timeout", "first_token_timeout": "--first-token-timeout",
                 "stall_timeout": "--stall-timeout"}


def refuse_mixing(given: set[str], endpoint: str | None, model: str | None) -> None:
    """`given`: parameter names the user typed."""
    if endpoint is None:
        wrong = [flag for key, flag in ENDPOINT_ONLY.items() if key in given]
        if wrong:
            raise QfitError(f"{wrong[0]} applies to --endpoint URL only")
        if model is None:
            raise QfitError("give MODEL (a checkpoint to load) or --endpoint URL (a running server)")
        return
    if model is not None:
        raise QfitError(f"--endpoint measures a running server: drop MODEL ({model}); name the model for the plan "
                        "with --model")
    wrong = [flag for key, flag in IN_PROCESS.items() if key in given]
    if wrong:
        raise QfitError(f"{wrong[0]} applies to a model qfit loads, not to --endpoint")


def _one(text: str | None, default: int, flag: str) -> int:
    if text is None:
        return default
    if "," in str(text):
        raise QfitError(f"{flag}: one length with --endpoint (the sweep is over concurrency), got {text}")
    return parse_tokens(text, flag)


def _plan(model, gpu, engine, precision, gpus: int) -> PlanRequest | None:
    if model is None and gpu is None:
        if engine or precision:
            raise QfitError("--engine/--precision describe the plan: give --model and --gpu too")
        return None
    if model is None or gpu is None:
        raise QfitError("a plan needs both --model and --gpu" + (" (got --model only)" if gpu is None else
                                                                  " (got --gpu only)"))
    return PlanRequest(model=model, gpu=gpu, engine=engine, precision=precision, gpus=gpus)


def endpoint_options(url: str, *, input_len, output_len, batches, rate, requests, warmup, text, served_model,
                     plan_model, gpu, engine, precision, tensor_parallel, request_timeout, first_token_timeout,
                     stall_timeout, batch_given: bool) -> EndpointOptions:
    try:
        split_url(url)
    except ValueError as exc:
        raise QfitError(f"--endpoint: {exc}") from None
    if rate is not None and batch_given:
        raise QfitError("--rate and -b/--batch are two kinds of sweep: give one")
    rates = tuple(parse_float(r, "--rate", maximum=1e5) for r in str(rate).split(",") if r.strip()) if rate else ()
    if rate is not None and not rates:
        raise QfitError("--rate is empty")
    out_len = _one(output_len, DEFAULT_OUTPUT_LEN, "--output-len")
    if out_len < 2:
        raise QfitError("--output-len must be at least 2 (TPOT needs a second token)")
    t = Timeouts(first_token_s=parse_seconds(first_token_timeout, "--first-token-timeout"),
                 stall_s=parse_seconds(stall_timeout, "--stall-timeout"),
                 total_s=parse_seconds(request_timeout, "--request-timeout"))
    return EndpointOptions(
        url=url, input_len=_one(input_len, DEFAULT_INPUT_LEN, "--input-len"), output_len=out_len,
        concurrencies=tuple(parse_int_list(batches or DEFAULT_BATCHES, "--batch", 4096)), rates=rates,
        requests=parse_positive_int(requests, "--requests", 100_000) if requests is not None else None,
        warmup=0 if str(warmup) == "0" else parse_positive_int(warmup if warmup is not None else 1, "--warmup", 1000),
        served_model=served_model, text=text, timeouts=t,
        plan=_plan(plan_model, gpu, engine, precision, parse_positive_int(tensor_parallel, "--tensor-parallel", 64)))
