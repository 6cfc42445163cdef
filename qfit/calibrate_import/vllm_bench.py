"""`vllm bench serve --save-result` JSON (vllm/benchmarks/serve.py, main: result_json = setup fields + the
benchmark() result dict). Fields read: model_id, request_rate, max_concurrency, completed, total_input_tokens,
total_output_tokens, median_tpot_ms, median_ttft_ms.

The batch is `max_concurrency` with every request released at once (request_rate "inf"); a finite rate gives a
concurrency that varies over the run, so such files are refused. Decode per sequence = 1000 / median TPOT (TPOT
excludes the first token, as the planner's decode rate does). Prefill = mean prompt / median TTFT, kept only at
concurrency 1: with more requests in flight TTFT includes waiting behind the others.
"""

from __future__ import annotations

from qfit.calibrate_import import Measurement, field, number, text
from qfit.errors import QfitError


def parse(path: str, data: dict) -> list[Measurement]:
    rate = field(path, data, "request_rate")
    if rate != "inf":
        raise QfitError(f"{path}: request_rate is {rate!r:.20}: only runs that release every request at once "
                        "(--request-rate inf, the default) with --max-concurrency N have a known batch")
    conc = field(path, data, "max_concurrency")
    if conc is None:
        raise QfitError(f"{path}: max_concurrency is null, so the batch the server ran is unknown: rerun vllm bench "
                        "serve with --max-concurrency N")
    batch = number(path, "max_concurrency", conc, integer=True)
    done = number(path, "completed", field(path, data, "completed"), integer=True)
    input_len = round(number(path, "total_input_tokens", field(path, data, "total_input_tokens")) / done)
    output_len = round(number(path, "total_output_tokens", field(path, data, "total_output_tokens")) / done)
    tpot = number(path, "median_tpot_ms", field(path, data, "median_tpot_ms"))
    ttft = number(path, "median_ttft_ms", field(path, data, "median_ttft_ms"))
    if input_len < 1 or output_len < 2:
        raise QfitError(f"{path}: {input_len} prompt / {output_len} output tokens per request: too few to time decode")
    return [Measurement(tool="vllm bench serve", label=f"max_concurrency {batch}",
                        model=text(path, "model_id", field(path, data, "model_id")), engine=None, device=None,
                        precision=None, batch=batch, input_len=input_len, output_len=output_len,
                        decode_tokens_per_s_per_seq=1000.0 / tpot,
                        prefill_tokens_per_s=input_len / (ttft / 1000.0) if batch == 1 else None)]
