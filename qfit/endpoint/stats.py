"""Pure statistics over one level's request records (no I/O), the definitions vLLM's benchmark_serving uses:

- TTFT: request sent -> first token-bearing chunk.
- ITL (inter-token latency): the gaps between successive token-bearing chunks, pooled over the level's requests.
- TPOT: (last token - first token) / (output tokens - 1), per request with at least two tokens.
- E2E: request sent -> stream closed.
- Output tokens per request: the stream's usage.completion_tokens when the server sent it, else the chunks counted.
- Request throughput: completed requests / level wall time (first request sent -> last one ended); output-token
  throughput: output tokens of completed requests / the same wall time.
Each distribution: mean, p50/p90/p99 (linear interpolation), std, CV, min, max (qfit.profile.metrics.summarize).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from qfit.endpoint.client import Record
from qfit.profile.metrics import summarize


def output_tokens(rec: Record) -> int:
    return rec.usage_completion_tokens if rec.usage_completion_tokens is not None else len(rec.token_times)


def _summary(values: Sequence[float]) -> dict | None:
    return summarize(values).to_dict() if values else None


def _tpot(rec: Record) -> float | None:
    n = output_tokens(rec)
    if n < 2 or len(rec.token_times) < 2:
        return None
    return (rec.token_times[-1] - rec.token_times[0]) / (n - 1)


def level_stats(records: Sequence[Record], output_len: int) -> dict:
    """Everything reported for one concurrency (or rate) level; failed requests count in errors only."""
    ok = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    ends = [r.end_s for r in records if r.end_s is not None]
    wall = (max(ends) - min(r.start_s for r in records)) if ends else 0.0
    tokens = sum(output_tokens(r) for r in ok)
    tpots = [t for t in (_tpot(r) for r in ok) if t is not None]
    itl = [b - a for r in ok for a, b in zip(r.token_times, r.token_times[1:])]
    prompts = [r.usage_prompt_tokens for r in ok if r.usage_prompt_tokens is not None]
    return {
        "requests": len(records), "completed": len(ok), "failed": len(failed),
        "errors": dict(Counter(r.error_kind for r in failed)),
        "first_error": next((f"{r.error_kind}: {r.error}" for r in failed), None),
        "short_outputs": sum(1 for r in ok if output_tokens(r) < output_len),
        "wall_s": round(wall, 6),
        "request_throughput_per_s": len(ok) / wall if ok and wall > 0 else None,
        "output_tokens_per_s": tokens / wall if ok and wall > 0 else None,
        "output_tokens": _summary([output_tokens(r) for r in ok]),
        "prompt_tokens_served": _summary(prompts),
        "ttft_s": _summary([r.token_times[0] for r in ok if r.token_times]),
        "itl_s": _summary(itl),
        "tpot_s": _summary(tpots),
        "e2e_s": _summary([r.end_s - r.start_s for r in ok]),
    }


def measured_speed(levels: Sequence[dict], input_len: int) -> dict:
    """The figures `qfit calibrate` reads from a profile (qfit.profile.predict.compare's input shape): decode per
    concurrency as 1 / mean TPOT per stream, prefill as served prompt tokens / mean TTFT at the lowest concurrency
    (TTFT there includes the network round trip and any queueing, so it understates the engine's prefill rate)."""
    decode, prefill = [], []
    for lv in levels:
        if lv.get("concurrency") is None or not lv["tpot_s"] or not lv["ttft_s"]:
            continue
        decode.append({"batch": lv["concurrency"], "tokens_per_s_per_seq": {"mean": 1.0 / lv["tpot_s"]["mean"]},
                       "tpot_s": {"mean": lv["tpot_s"]["mean"]}, "ttft_s": {"mean": lv["ttft_s"]["mean"]}})
    if decode:
        lowest = min(d["batch"] for d in decode)
        first = next(lv for lv in levels if lv.get("concurrency") == lowest)
        served = first["prompt_tokens_served"]["mean"] if first["prompt_tokens_served"] else input_len
        prefill.append({"input_len": input_len, "prompt_tokens_served": served,
                        "tokens_per_s": {"mean": served / first["ttft_s"]["mean"]}})
    return {"prefill": prefill, "decode": decode}
