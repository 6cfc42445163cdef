"""Speed and memory measurement: prefill tokens/s per input length, decode tokens/s per batch, TTFT, TPOT.

Protocol (recorded in the report): `warmup` untimed repetitions of every measurement, then `trials` timed ones.
- Prefill: one forward pass over `input_len` seeded random token ids at batch 1, ending with the argmax of the last
  logits (so lazy engines finish); prefill tokens/s = input_len / time.
- Decode at batch B: prompt of the smallest input length, then `output_tokens` greedy steps with the KV cache.
  TTFT = prompt forward + first token; TPOT = time of each later step; decode tokens/s per sequence = 1 / TPOT,
  aggregate = B / TPOT. Per-trial means give the spread (std, CV) across trials; percentiles pool every step.
- Achieved bandwidth = (weight bytes read per step + KV bytes read at the mean context) / mean TPOT; as a fraction of
  the device's bandwidth when the planner's accelerator catalog knows it, else n/a.
"""

from __future__ import annotations

import resource
import sys
from typing import Callable, Sequence

from qfit.profile.metrics import mean, summarize


def process_peak_rss(scope: str) -> dict:
    """Peak resident set size of this process so far: its high-water mark, model loading included."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # Linux reports KiB, macOS bytes
    return {"kind": "process-peak-rss", "bytes": int(peak * scale), "scope": scope,
            "how": "resource.getrusage(RUSAGE_SELF).ru_maxrss: the process's high-water mark (not the device's)"}


SPEED_SCOPE = "end of the speed phase: MODEL alone (loading included), before any baseline was loaded"


def memory_summary(speed_peak: dict | None, backend, with_baseline: bool) -> dict:
    """What peaked, said for each figure: the process over the whole run, and the speed phase's figure (the device
    allocator's on a GPU, else the process's)."""
    whole = process_peak_rss("whole run: MODEL" + (" and BASE" if with_baseline else "") + " loaded, every evaluation")
    return {"process_peak_rss": whole, "speed_phase_peak": speed_peak, "device": backend.device}


def bandwidth(read_bytes_per_step: float | None, tpot_s: float, device_gbps: float | None) -> dict:
    """Pure: achieved GB/s (decimal) and its fraction of the device's figure."""
    if not read_bytes_per_step or tpot_s <= 0:
        return {"achieved_gbps": None, "device_gbps": device_gbps, "fraction": None}
    achieved = read_bytes_per_step / tpot_s / 1e9
    return {"achieved_gbps": achieved, "device_gbps": device_gbps,
            "fraction": achieved / device_gbps if device_gbps else None}


def decode_read_bytes(info, batch: int, context: float) -> float | None:
    """Bytes one decode step reads: weights once for the batch, plus every sequence's KV cache at `context` tokens."""
    if info.decode_read_bytes is None:
        return None
    kv = (info.kv_bytes_per_token or 0) * batch * context
    return info.decode_read_bytes + kv


def _repeat(fn: Callable[[], object], warmup: int, trials: int, tick: Callable[[], None]) -> list:
    for _ in range(warmup):
        fn()
        tick()
    out = []
    for _ in range(trials):
        out.append(fn())
        tick()
    return out


def measure_prefill(backend, input_lens: Sequence[int], warmup: int, trials: int, tick) -> list[dict]:
    rows = []
    for n in input_lens:
        times = _repeat(lambda: backend.time_prefill(n, 1), warmup, trials, tick)
        rates = [n / t for t in times]
        rows.append({"input_len": n, "batch": 1, "time_s": summarize(times).to_dict(),
                     "tokens_per_s": summarize(rates).to_dict()})
    return rows


def measure_decode(backend, batches: Sequence[int], input_len: int, output_tokens: int, warmup: int, trials: int,
                   tick, device_gbps: float | None) -> list[dict]:
    rows = []
    for b in batches:
        runs = _repeat(lambda: backend.time_decode(b, input_len, output_tokens), warmup, trials, tick)
        steps = [s for r in runs for s in r.step_s]
        trial_tpot = [mean(r.step_s) for r in runs if r.step_s]
        if not steps:
            raise ValueError("decode produced no timed steps: --output-tokens must be at least 2")
        tpot = summarize(steps)
        per_seq = summarize([1 / t for t in trial_tpot])
        context = input_len + output_tokens / 2
        rows.append({
            "batch": b, "input_len": input_len, "output_tokens": output_tokens,
            "ttft_s": summarize([r.ttft_s for r in runs]).to_dict(),
            "tpot_s": tpot.to_dict(),
            "tokens_per_s_per_seq": per_seq.to_dict(),
            "tokens_per_s_total": summarize([b / t for t in trial_tpot]).to_dict(),
            "bandwidth": bandwidth(decode_read_bytes(backend.info, b, context), tpot.mean, device_gbps)
            | {"context_tokens": context, "read_bytes_per_step": decode_read_bytes(backend.info, b, context)},
        })
    return rows


def run_speed(backend, *, input_lens: Sequence[int], batches: Sequence[int], output_tokens: int, trials: int,
              warmup: int, device_gbps: float | None, progress=None) -> dict:
    """Everything speed-related for one backend; `progress` is an optional callable(advance=1) for a progress bar."""
    tick = progress or (lambda: None)
    backend.reset_peak_memory()
    prefill = measure_prefill(backend, input_lens, warmup, trials, tick)
    decode = measure_decode(backend, batches, min(input_lens), output_tokens, warmup, trials, tick, device_gbps)
    return {"protocol": {"warmup": warmup, "trials": trials, "input_lens": list(input_lens), "batches": list(batches),
                         "output_tokens": output_tokens, "decode_prompt_len": min(input_lens),
                         "ids": "seeded random token ids (timing does not depend on content)"},
            "prefill": prefill, "decode": decode, "peak_memory": backend.peak_memory()}


def speed_steps(input_lens: Sequence[int], batches: Sequence[int], trials: int, warmup: int) -> int:
    """Number of progress ticks run_speed will make."""
    return (len(input_lens) + len(batches)) * (trials + warmup)
