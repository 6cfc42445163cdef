"""The sweep: probe the server, then per level (a concurrency, or a request rate) send the level's requests, each a
streamed completion of the asked lengths, and keep every record, failed or not. Levels run one after another with a
fresh set of prompts; a level's failures are counted and the sweep goes on, so partial results are never lost."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from dataclasses import dataclass, replace

from qfit.endpoint.client import Record, Timeouts, completion_body, stream_completion
from qfit.endpoint.probe import Server, probe
from qfit.endpoint.prompts import prompt_at
from qfit.endpoint.stats import level_stats

API_KEY_ENV = ("QFIT_API_KEY", "OPENAI_API_KEY")   # sent as a bearer token when set; never written anywhere


@dataclass(frozen=True)
class PlanRequest:
    model: str
    gpu: str
    engine: str | None
    precision: str | None
    gpus: int = 1


@dataclass(frozen=True)
class EndpointOptions:
    url: str
    input_len: int
    output_len: int
    concurrencies: tuple[int, ...] = (1, 4, 16)
    rates: tuple[float, ...] = ()          # requests/s (Poisson arrivals); replaces the concurrency sweep when given
    requests: int | None = None            # per level; default: 4 x concurrency, at least 8 (rate: 8 x rate, >= 16)
    warmup: int = 1
    served_model: str | None = None
    text: str = "xsum"
    timeouts: Timeouts = Timeouts()
    seed: int = 0
    plan: PlanRequest | None = None

    def levels(self) -> list[tuple[str, float]]:
        return [("rate", r) for r in self.rates] if self.rates else [("concurrency", c) for c in self.concurrencies]

    def requests_for(self, kind: str, value: float) -> int:
        if self.requests is not None:
            return self.requests
        return max(8, 4 * int(value)) if kind == "concurrency" else max(16, round(8 * value))


def headers() -> dict:
    key = next((os.environ[k] for k in API_KEY_ENV if os.environ.get(k)), None)
    return {"Authorization": f"Bearer {key}"} if key else {}


async def _level(opts: EndpointOptions, server: Server, text: str, kind: str, value: float, first_index: int,
                 tick) -> list[Record]:
    n = opts.requests_for(kind, value)
    records = [Record() for _ in range(n)]
    url, hdrs = server.completions_url(), headers()
    t0 = time.perf_counter()

    async def one(i: int) -> None:
        records[i].start_s = time.perf_counter() - t0
        body = completion_body(server.served_model, prompt_at(text, first_index + i, server.prompt_chars),
                               opts.output_len, stream=True, extras=server.extras)
        await stream_completion(url, body, opts.timeouts, hdrs, records[i])
        tick()

    if kind == "concurrency":
        queue = iter(range(n))

        async def worker() -> None:
            for i in queue:
                await one(i)
        await asyncio.gather(*(worker() for _ in range(min(n, int(value)))))
    else:
        rng, tasks = random.Random(opts.seed), []
        for i in range(n):
            tasks.append(asyncio.ensure_future(one(i)))
            await asyncio.sleep(rng.expovariate(value))
        await asyncio.gather(*tasks)
    return records


def sweep(opts: EndpointOptions, server: Server, text: str, progress) -> tuple[list[dict], bool]:
    """Warm-up requests (not reported), then each level's stats, in order; and whether Ctrl-C cut the sweep short
    (the levels finished before it are kept)."""
    levels: list[dict] = []

    async def go() -> None:
        index = 1000   # prompts 0..999 are left to the probe and warm-up
        if opts.warmup:
            with progress("warm-up requests (not reported)", opts.warmup) as tick:
                await _level(replace(opts, requests=opts.warmup), server, text, "concurrency", 1, index, tick)
            index += opts.warmup
        for kind, value in opts.levels():
            n = opts.requests_for(kind, value)
            label = f"concurrency {int(value)}" if kind == "concurrency" else f"{value:g} requests/s"
            with progress(f"{label}: {n} requests of {opts.input_len}+{opts.output_len} tokens", n) as tick:
                records = await _level(opts, server, text, kind, value, index, tick)
            index += n
            levels.append({kind: int(value) if kind == "concurrency" else value} | level_stats(records, opts.output_len))
    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        return levels, True
    return levels, False


def run_endpoint(opts: EndpointOptions, progress) -> dict:
    from qfit.data.texts import load_text
    from qfit.endpoint.result import build_result, prediction

    loaded = load_text(opts.text, split="all")
    text = loaded.text
    pred = prediction(opts)     # before the sweep: whatever the planner says cannot cost the measurement
    if opts.plan is not None and not pred["available"]:
        print(f"qfit profile: {pred['reason']}", file=sys.stderr, flush=True)   # now, not after a long sweep
    server = probe(opts.url, opts.served_model, text, opts.input_len, opts.timeouts, headers())
    levels, interrupted = sweep(opts, server, text, progress)
    return build_result(opts, server, loaded.source.to_dict(), levels, pred, interrupted)
