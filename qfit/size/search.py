"""The sizing search (pure, given a loaded model): accelerator x GPUs per replica (tensor parallel) x replicas x
precision x engine -> every configuration that meets the workload, with the binding constraint of those that do not.

Speed: what does not depend on the accelerator is computed once per precision (weight bytes, the speed model's shape
and weight traffic); memory reuses the planner's `_Ctx.memory` (no make_plan per configuration); for each accelerator x
precision x engine x TP the fewest replicas is found by a memory bound then a binary search on speed and throughput.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from qfit.engines import EngineProfile
from qfit.errors import QfitError
from qfit.hardware import Accelerator
from qfit.memory import GIB, activation_bytes, kv_cache
from qfit.model.params import tensor_groups
from qfit.model.sources import LoadedModel
from qfit.plan import Weights, _context, _Ctx, _search_max, backend_of, choose_engine, tp_problem, weights_for
from qfit.precision import Precision, WeightBytes, parse_precision
from qfit.size.cost import Cost, CostParams, cost_of
from qfit.size.quality import Quality, quality_of
from qfit.size.speed import ReplicaSpeed, SpeedInputs

DEFAULT_PRECISIONS = ("bf16", "fp8", "gptq-int8", "gptq-int4", "awq-int4", "gguf-q8_0", "gguf-q4_k_m")
MAX_TOTAL_GPUS = 64


@dataclass(frozen=True)
class Workload:
    context: int                       # KV reserved per user (memory is checked for every user at this length)
    concurrency: int                   # users decoding at once
    rps: float | None = None           # requests per second to sustain (needs input/output tokens)
    input_tokens: int | None = None    # prompt length: TTFT and prefill share of capacity (default: the context)
    output_tokens: int | None = None
    min_tokens_per_s: float | None = None   # per-user decode speed
    max_ttft_s: float | None = None

    @property
    def prompt(self) -> int:
        return self.input_tokens or self.context

    @property
    def decode_context(self) -> int:
        """KV length decode is timed at: the end of a request (worst case), else the full context."""
        if self.input_tokens and self.output_tokens:
            return min(self.context, self.input_tokens + self.output_tokens)
        return self.context


@dataclass
class Option:
    """One configuration that meets every constraint: `replicas` x (`tp` GPUs tensor/layer parallel)."""

    acc: Accelerator
    precision: Precision
    engine: EngineProfile
    tp: int
    replicas: int
    batch: int                         # users per replica = ceil(concurrency / replicas)
    max_batch: int                     # users one replica holds at the context (memory)
    per_gpu_bytes: float
    budget_bytes: float
    tpot_s: float
    ttft_s: float
    capacity_rps: float | None
    throughput_tok_s: float            # output tokens/s the configuration can deliver
    served_tok_s: float                # output tokens/s at the workload (what $/M tokens divides by)
    quality: Quality
    cost: Cost | None = None
    perf: object = None                # qfit.perf.PerfEstimate of the shown rows (real call)
    speed: ReplicaSpeed | None = field(default=None, repr=False)

    @property
    def gpus(self) -> int:
        return self.tp * self.replicas

    @property
    def decode_tok_s(self) -> float:
        return 1.0 / self.tpot_s

    @property
    def label(self) -> str:
        return f"{self.gpus} x {self.acc.short_name} ({self.layout}) {self.precision.name} ({self.engine.name})"

    @property
    def layout(self) -> str:
        """'2x4' = 2 replicas of 4 GPUs each (tensor parallel, or layer split for llama.cpp/transformers)."""
        return f"{self.replicas}x{self.tp}"

    def headroom(self, w: Workload) -> dict:
        out = {"memory_per_gpu_gib": (self.budget_bytes - self.per_gpu_bytes) / GIB,
               "memory_pct": 100 * (1 - self.per_gpu_bytes / self.budget_bytes),
               "max_concurrency": self.max_batch * self.replicas}
        if w.min_tokens_per_s:
            out["speed_x"] = self.decode_tok_s / w.min_tokens_per_s
        if w.max_ttft_s:
            out["ttft_x"] = w.max_ttft_s / self.ttft_s
        if w.rps and self.capacity_rps:
            out["throughput_x"] = self.capacity_rps / w.rps
        return out

    def to_dict(self, w: Workload) -> dict:
        return {
            "accelerator": self.acc.name, "key": self.acc.key, "gpus": self.gpus, "gpus_per_replica": self.tp,
            "replicas": self.replicas, "precision": self.precision.name, "engine": self.engine.name,
            "batch_per_replica": self.batch, "max_batch_per_replica": self.max_batch,
            "memory_per_gpu_gib": round(self.per_gpu_bytes / GIB, 3), "budget_per_gpu_gib": round(self.budget_bytes / GIB, 3),
            "decode_tokens_per_s_per_user": round(self.decode_tok_s, 2), "tpot_s": round(self.tpot_s, 5),
            "ttft_s": round(self.ttft_s, 4),
            "capacity_rps": None if self.capacity_rps is None else round(self.capacity_rps, 3),
            "throughput_tokens_per_s": round(self.throughput_tok_s, 1), "served_tokens_per_s": round(self.served_tok_s, 1),
            "headroom": {k: round(v, 3) for k, v in self.headroom(w).items()},
            "quality": self.quality.to_dict(), "cost": self.cost.to_dict() if self.cost else None,
            "performance": self.perf.to_dict() if self.perf is not None else None,
        }


@dataclass(frozen=True)
class Failure:
    acc: Accelerator
    precision: str
    engine: str
    tp: int
    constraint: str      # memory | speed | ttft | throughput
    detail: str
    shortfall: float     # >= 1: how far from meeting the constraint (need / have)
    best: float | None = None   # best value reached for that constraint (tok/s, s, rps)

    def to_dict(self) -> dict:
        return {"accelerator": self.acc.name, "precision": self.precision, "engine": self.engine, "gpus_per_replica": self.tp,
                "constraint": self.constraint, "detail": self.detail, "shortfall": round(self.shortfall, 3)}


@dataclass
class SearchResult:
    options: list[Option]
    failures: list[Failure]
    skipped: list[str] = field(default_factory=list)     # accelerator x precision x engine pairs not evaluated, why
    evaluated: int = 0                                   # accelerator x precision x engine x TP combinations


@dataclass(frozen=True)
class _PrecisionData:
    precision: Precision
    w: Weights
    speed: SpeedInputs

    @property
    def weights(self) -> WeightBytes:
        return self.w.recipe

    @property
    def weight_total(self) -> float:
        return self.w.total


def _precision_data(model: LoadedModel, names: tuple[str, ...]) -> list[_PrecisionData]:
    groups = tensor_groups(model.spec)
    out = []
    for name in names:
        p = parse_precision(name)
        w = weights_for(model, p)
        out.append(_PrecisionData(p, w, SpeedInputs.build(model.spec, groups, w.recipe)))
    return out


def memory_context(model: LoadedModel, acc: Accelerator, tp: int, pd: _PrecisionData, eng: EngineProfile,
                   kv_dtype: str | None) -> _Ctx:
    """The planner's per-configuration memory context (plan._context) without recomputing weight bytes."""
    return _context(model, acc, tp, pd.precision, eng, kv_dtype, weights=pd.w)


class ReplicaMemory:
    """Per-GPU memory of one replica as a function of its batch: the planner's `_Ctx.memory` with the KV cache of one
    sequence computed once (kv_cache is exactly linear in batch: KV per token x tokens x batch, plus a per-sequence
    recurrent state) and shared by every accelerator with the same TP, engine and KV dtype."""

    def __init__(self, ctx: _Ctx, context: int, prompt: int, kv_cache_memo: dict):
        self.ctx, self.context, self.prompt = ctx, context, prompt
        key = (context, ctx.gpus, ctx.engine.name, ctx.kv_dtype)
        if key not in kv_cache_memo:
            kv_cache_memo[key] = kv_cache(ctx.model.spec, context, 1, ctx.kv_dtype, ctx.engine, ctx.gpus).per_gpu_bytes
        self.kv_per_seq = kv_cache_memo[key]
        eng = ctx.engine
        self._flat_act = None
        if "profile_tokens" in eng.activation:  # vLLM/SGLang: activation peak does not depend on the batch
            self._flat_act = self._act(1)

    def _act(self, batch: int) -> float:
        c = self.ctx
        return activation_bytes(c.model.spec, c.engine, batch, self.prompt, c.gpus, c.act_bytes, c.acc.memory_gib)

    def per_gpu(self, batch: int) -> float:
        c = self.ctx
        act = self._flat_act if self._flat_act is not None else self._act(batch)
        return (c.weight_bytes + act + c.overhead) / c.gpus + batch * self.kv_per_seq

    def fits(self, batch: int) -> bool:
        return self.per_gpu(batch) <= self.ctx.budget

    def max_batch(self, cap: int) -> int:
        """Most sequences one replica holds (up to `cap`): predicted from the linear KV term, then confirmed."""
        if not self.fits(1):
            return 0
        m1 = self.per_gpu(1)
        slope = self.per_gpu(2) - m1
        est = cap if slope <= 0 else max(1, min(cap, 1 + int((self.ctx.budget - m1) // slope)))
        if self.fits(est):
            return est if est == cap or not self.fits(est + 1) else _search_max(self.fits, est, cap)
        return _search_max(self.fits, 1, est)


def _tp_counts(model: LoadedModel, acc: Accelerator, eng: EngineProfile, per_node: int, total: int) -> list[int]:
    limit = min(per_node, acc.interconnect.max_gpus, total)
    return [t for t in range(1, limit + 1) if tp_problem(model.spec, eng, t) is None]


def _engines(acc: Accelerator, p: Precision, names: tuple[str, ...] | None) -> list[EngineProfile] | str:
    """Engines that run precision p on acc; a string says why none does (an incompatible pair is skipped)."""
    out, why = [], []
    for name in names or (None,):
        try:
            eng = choose_engine(name, p, acc)
            eng.overhead_gib(backend_of(acc))
        except QfitError as exc:
            why.append(str(exc))
            continue
        out.append(eng)
    return out or "; ".join(dict.fromkeys(why))


class _Evaluator:
    """Checks one accelerator x precision x engine x TP replica shape against the workload as replicas vary."""

    def __init__(self, w: Workload, mem: ReplicaMemory, speed: ReplicaSpeed, bmax: int):
        self.w, self.mem, self.speed, self.bmax = w, mem, speed, bmax
        self.ttft = speed.prefill_s(1, w.prompt)

    def metrics(self, r: int) -> tuple[float, float | None]:
        """(TPOT at this replica count's batch, total capacity in requests/s or None without --rps)."""
        w = self.w
        b = math.ceil(w.concurrency / r)
        tpot = self.speed.tpot(b, w.decode_context)
        if not w.rps:
            return tpot, None
        # GPU time per request on a replica holding b users: its own prefill (batched prefill amortised over b
        # prompts) plus its share of the decode steps it is in (O steps, each serving b users).
        pre = self.speed.prefill_s(b, w.prompt) / b
        return tpot, r / (pre + w.output_tokens * tpot / b)

    def failing(self, r: int) -> tuple[str, float, float] | None:
        """(constraint, shortfall, achieved) of the first constraint r replicas miss, or None when all hold."""
        w = self.w
        tpot, cap = self.metrics(r)
        if w.min_tokens_per_s and 1 / tpot < w.min_tokens_per_s:
            return "speed", w.min_tokens_per_s * tpot, 1 / tpot
        if w.rps and cap < w.rps:
            return "throughput", w.rps / cap, cap
        return None

    def fewest_replicas(self, r_mem: int, rmax: int) -> int | None:
        """Smallest r in [r_mem, rmax] meeting speed and throughput (both improve with r), None if even rmax fails."""
        if self.failing(r_mem) is None:
            return r_mem
        if self.failing(rmax) is not None:
            return None
        lo, hi = r_mem, rmax
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if self.failing(mid) is None else (mid, hi)
        return hi


def _option(ev: _Evaluator, acc, pd: _PrecisionData, eng, tp: int, r: int) -> Option:
    w = ev.w
    b = math.ceil(w.concurrency / r)
    tpot, cap = ev.metrics(r)
    thr = cap * w.output_tokens if cap is not None else r * b / tpot
    served = w.rps * w.output_tokens if w.rps else w.concurrency / tpot
    return Option(acc, pd.precision, eng, tp, r, b, ev.bmax, ev.mem.per_gpu(b), ev.mem.ctx.budget, tpot, ev.ttft, cap,
                  thr, served, quality_of(pd.precision.name), speed=ev.speed)


def _memory_failure(acc, pd, eng, tp, mem: ReplicaMemory, w: Workload, rmax: int, bmax: int) -> Failure:
    budget = mem.ctx.budget
    if bmax == 0:
        need = mem.per_gpu(1)
        return Failure(acc, pd.precision.name, eng.name, tp, "memory",
                       f"one user at {w.context:,} tokens needs {need / GIB:.1f} GiB per GPU on {tp} GPU(s), "
                       f"{budget / GIB:.1f} GiB available", need / budget)
    r_mem = math.ceil(w.concurrency / bmax)
    return Failure(acc, pd.precision.name, eng.name, tp, "memory",
                   f"{bmax} users fit per {tp}-GPU replica: {w.concurrency} users need {r_mem * tp} GPUs "
                   f"(limit {rmax * tp})", r_mem / rmax)


def _search_shape(w: Workload, model, acc, pd, eng, tp, kv_dtype, total: int, res: SearchResult, memo: dict) -> None:
    mem = ReplicaMemory(memory_context(model, acc, tp, pd, eng, kv_dtype), w.context, w.prompt, memo)
    rmax = max(1, min(total // tp, w.concurrency))
    bmax = mem.max_batch(w.concurrency)
    if not bmax or math.ceil(w.concurrency / bmax) > rmax:
        res.failures.append(_memory_failure(acc, pd, eng, tp, mem, w, rmax, bmax))
        return
    try:
        speed = ReplicaSpeed(pd.speed, acc, pd.precision.name, eng.name, tp, mem.ctx.kv_dtype)
    except QfitError as exc:
        res.skipped.append(f"{acc.short_name} {pd.precision.name} ({eng.name}): {exc}")
        return
    ev = _Evaluator(w, mem, speed, bmax)
    if w.max_ttft_s and ev.ttft > w.max_ttft_s:
        res.failures.append(Failure(acc, pd.precision.name, eng.name, tp, "ttft",
                                    f"TTFT {ev.ttft:.3g} s for a {w.prompt:,}-token prompt > {w.max_ttft_s:g} s",
                                    ev.ttft / w.max_ttft_s, ev.ttft))
        return
    r = ev.fewest_replicas(math.ceil(w.concurrency / bmax), rmax)
    if r is None:
        constraint, short, got = ev.failing(rmax)
        what = (f"{got:.1f} tok/s per user < {w.min_tokens_per_s:g}" if constraint == "speed"
                else f"{got:.2f} req/s capacity < {w.rps:g}")
        res.failures.append(Failure(acc, pd.precision.name, eng.name, tp, constraint,
                                    f"{what} even at {rmax} replicas ({rmax * tp} GPUs)", short, got))
        return
    res.options.append(_option(ev, acc, pd, eng, tp, r))


def search(model: LoadedModel, w: Workload, accelerators: list[Accelerator], *, precisions=DEFAULT_PRECISIONS,
           engines: tuple[str, ...] | None = None, kv_dtype: str | None = None, max_gpus_per_node: int = 8,
           max_total_gpus: int = MAX_TOTAL_GPUS, costs: CostParams | None = None) -> SearchResult:
    """Every accelerator x precision x engine x TP shape, each with its fewest replicas that meet the workload."""
    res = SearchResult([], [])
    memo: dict = {}   # KV bytes of one sequence per (context, TP, engine, KV dtype): shared across accelerators
    pdata = _precision_data(model, tuple(precisions))
    for acc in accelerators:
        for pd in pdata:
            engs = _engines(acc, pd.precision, engines)
            if isinstance(engs, str):
                res.skipped.append(f"{acc.short_name} {pd.precision.name}: {engs}")
                continue
            for eng in engs:
                for tp in _tp_counts(model, acc, eng, max_gpus_per_node, max_total_gpus):
                    res.evaluated += 1
                    _search_shape(w, model, acc, pd, eng, tp, kv_dtype, max_total_gpus, res, memo)
    params = costs or CostParams()
    for o in res.options:
        o.cost = cost_of(o.acc, o.gpus, o.served_tok_s, params)
    return res
