"""The sizing search (pure, over resolved objects): accelerator x GPUs per replica (tensor parallel within a node,
or pipeline parallel over several nodes) x replicas x recipe x engine -> every configuration that meets the workload,
with the binding constraint of those that do not.

What does not depend on the accelerator is computed once per recipe (weight bytes, the speed model's shape and weight
traffic); memory is the planner's own Deployment (one formula for plan and size); for each accelerator x recipe x
engine x TP the fewest replicas is found by a memory bound then a binary search on speed and throughput.

Replicas over several nodes (qfit.size.nodes) use the Deployment(pp=) memory and the pipeline hops of `qfit plan
--nodes`; they are searched where they could be cheaper than the accelerator's single-node configurations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from qfit.deployment import Deployment, Weights, tp_problem, weights_for
from qfit.engines import EngineProfile, EngineRegistry
from qfit.errors import QfitError
from qfit.hardware import Accelerator
from qfit.memory import GIB
from qfit.model.params import tensor_groups
from qfit.model.sources import LoadedModel
from qfit.perf.estimate import PerfEstimate
from qfit.perf.pipeline import Internode
from qfit.precision import Recipe, WeightBytes, parse_recipe
from qfit.quality import Quality, QualityTable
from qfit.size.cost import Cost, CostParams, cost_of
from qfit.size.nodes import Layout, node_layouts
from qfit.size.speed import ReplicaSpeed, SpeedInputs
from qfit.workload import Workload

DEFAULT_PRECISIONS = ("bf16", "fp8", "gptq-int8", "gptq-int4", "awq-int4", "gguf-q8_0", "gguf-q4_k_m")
MAX_TOTAL_GPUS = 64


@dataclass
class Option:
    """One configuration that meets every constraint: `replicas` x (`nodes` x `tp` GPUs: tensor/layer parallel within
    a node, one pipeline stage per node)."""

    acc: Accelerator
    precision: Recipe
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
    perf: PerfEstimate | None = None   # the full estimate (band, assumptions) of the rows that are shown
    speed: ReplicaSpeed | None = field(default=None, repr=False)
    nodes: int = 1                     # nodes per replica (pipeline stages)
    internode: Internode | None = None   # the link between them (nodes > 1)

    @property
    def shape(self) -> Layout:
        return Layout(self.nodes, self.tp)

    @property
    def gpus(self) -> int:
        return self.shape.gpus * self.replicas

    @property
    def decode_tok_s(self) -> float:
        return 1.0 / self.tpot_s

    @property
    def label(self) -> str:
        where = self.layout if self.nodes == 1 else f"{self.replicas} x [{self.shape.text}]"
        return f"{self.gpus} x {self.acc.short_name} ({where}) {self.precision.name} ({self.engine.name})"

    @property
    def layout(self) -> str:
        """'2x4' = 2 replicas of 4 GPUs each (tensor parallel, or layer split for llama.cpp/transformers); '1x(2x8)' =
        1 replica over 2 nodes of 8 GPUs (tensor parallel within a node, a pipeline stage per node)."""
        return f"{self.replicas}x{self.shape.short}"

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
            "accelerator": self.acc.name, "key": self.acc.key, "gpus": self.gpus,
            "gpus_per_replica": self.shape.gpus, "replicas": self.replicas, **self.shape.to_dict(),
            "internode": self.internode.key if self.internode else None, "precision": self.precision.name, "engine": self.engine.name,
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
    nodes: int = 1              # nodes per replica (tp GPUs each)

    @property
    def shape(self) -> Layout:
        return Layout(self.nodes, self.tp)

    def to_dict(self) -> dict:
        return {"accelerator": self.acc.name, "precision": self.precision, "engine": self.engine,
                "gpus_per_replica": self.shape.gpus, "nodes_per_replica": self.nodes, "constraint": self.constraint,
                "detail": self.detail, "shortfall": round(self.shortfall, 3)}


@dataclass
class SearchResult:
    options: list[Option]
    failures: list[Failure]
    skipped: list[str] = field(default_factory=list)     # accelerator x precision x engine pairs not evaluated, why
    evaluated: int = 0                                   # accelerator x precision x engine x replica layouts


@dataclass(frozen=True)
class _PrecisionData:
    precision: Recipe
    w: Weights
    speed: SpeedInputs

    @property
    def weights(self) -> WeightBytes:
        return self.w.recipe


def _precision_data(model: LoadedModel, recipes: tuple[Recipe, ...]) -> list[_PrecisionData]:
    groups = tensor_groups(model.spec)
    out = []
    for r in recipes:
        w = weights_for(model, r)
        out.append(_PrecisionData(r, w, SpeedInputs.build(model.spec, groups, w.recipe)))
    return out


def _stand_in(model: LoadedModel, pd: _PrecisionData, acc: Accelerator, engines: EngineRegistry,
              requested: set[str], cache: dict[str, _PrecisionData]) -> _PrecisionData | None:
    """bf16 on a GPU without bf16 (V100, T4) is offered as fp16, which engines load it as (policy `device_support`);
    None when that stand-in was asked for anyway (no duplicate rows)."""
    need = engines.policy.device_need(pd.precision.name, acc)
    if need is None or not need.instead:
        return pd
    if need.instead in requested:
        return None
    if need.instead not in cache:
        cache[need.instead] = _precision_data(model, (parse_recipe(need.instead),))[0]
    return cache[need.instead]


def _tp_counts(model: LoadedModel, acc: Accelerator, eng: EngineProfile, per_node: int, total: int) -> list[int]:
    limit = min(acc.tp_limit(per_node), total)   # the same rule plan states (PCIe past NVLink-bridge pairs)
    return [t for t in range(1, limit + 1) if tp_problem(model.spec, eng, t) is None]


def _engines(acc: Accelerator, r: Recipe, registry: EngineRegistry, names: tuple[str, ...] | None,
             kv_dtype: str | None) -> list[EngineProfile] | str:
    """Engines that run recipe r on acc; a string says why none does (an incompatible pair is skipped)."""
    out, why = [], []
    for name in names or (None,):
        try:
            out.append(registry.choose(name, r, acc, kv_dtype))
        except QfitError as exc:
            why.append(str(exc))
    return out or "; ".join(dict.fromkeys(why))


class _Evaluator:
    """Checks one accelerator x precision x engine x TP replica shape against the workload as replicas vary."""

    def __init__(self, w: Workload, mem: Deployment, speed: ReplicaSpeed, bmax: int):
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


def _option(ev: _Evaluator, acc, pd: _PrecisionData, eng, shape: Layout, r: int, quality: Quality,
            link: Internode | None) -> Option:
    w = ev.w
    b = math.ceil(w.concurrency / r)
    tpot, cap = ev.metrics(r)
    thr = cap * w.output_tokens if cap is not None else r * b / tpot
    served = w.rps * w.output_tokens if w.rps else w.concurrency / tpot
    return Option(acc, pd.precision, eng, shape.tp, r, b, ev.bmax, ev.mem.per_gpu(w.context, b, w.prompt),
                  ev.mem.budget, tpot, ev.ttft, cap, thr, served, quality, speed=ev.speed, nodes=shape.nodes,
                  internode=link if shape.nodes > 1 else None)


def _memory_failure(acc, pd, eng, shape: Layout, mem: Deployment, w: Workload, rmax: int, bmax: int) -> Failure:
    budget, n = mem.budget, shape.gpus
    if bmax == 0:
        need = mem.per_gpu(w.context, 1, w.prompt)
        return Failure(acc, pd.precision.name, eng.name, shape.tp, "memory",
                       f"one user at {w.context:,} tokens needs {need / GIB:.1f} GiB per GPU on {shape.text}, "
                       f"{budget / GIB:.1f} GiB available", need / budget, nodes=shape.nodes)
    r_mem = math.ceil(w.concurrency / bmax)
    what = f"{n}-GPU replica" if shape.nodes == 1 else f"replica of {shape.text}"
    return Failure(acc, pd.precision.name, eng.name, shape.tp, "memory",
                   f"{bmax} users fit per {what}: {w.concurrency} users need {r_mem * n} GPUs "
                   f"(limit {rmax * n})", r_mem / rmax, nodes=shape.nodes)


def _search_shape(w: Workload, model, acc, pd, eng, shape: Layout, kv_dtype, total: int, res: SearchResult,
                  quality: QualityTable, link: Internode | None = None) -> None:
    n = shape.gpus
    mem = Deployment.build(model, acc, n, pd.precision, eng, kv_dtype, weights=pd.w, pp=shape.nodes)
    rmax = max(1, min(total // n, w.concurrency))
    bmax = mem.max_batch(w.context, w.prompt, cap=w.concurrency)
    if not bmax or math.ceil(w.concurrency / bmax) > rmax:
        res.failures.append(_memory_failure(acc, pd, eng, shape, mem, w, rmax, bmax))
        return
    try:
        speed = ReplicaSpeed(pd.speed, acc, pd.precision.name, eng, shape.tp, mem.kv_dtype, pp=shape.nodes,
                             link=link, act_bytes=mem.act_bytes)
    except QfitError as exc:
        res.skipped.append(f"{acc.short_name} {pd.precision.name} ({eng.name}): {exc}")
        return
    ev = _Evaluator(w, mem, speed, bmax)
    fail = dict(nodes=shape.nodes)
    if w.max_ttft_s and ev.ttft > w.max_ttft_s:
        res.failures.append(Failure(acc, pd.precision.name, eng.name, shape.tp, "ttft",
                                    f"TTFT {ev.ttft:.3g} s for a {w.prompt:,}-token prompt > {w.max_ttft_s:g} s",
                                    ev.ttft / w.max_ttft_s, ev.ttft, **fail))
        return
    r = ev.fewest_replicas(math.ceil(w.concurrency / bmax), rmax)
    if r is None:
        constraint, short, got = ev.failing(rmax)
        what = (f"{got:.1f} tok/s per user < {w.min_tokens_per_s:g}" if constraint == "speed"
                else f"{got:.2f} req/s capacity < {w.rps:g}")
        res.failures.append(Failure(acc, pd.precision.name, eng.name, shape.tp, constraint,
                                    f"{what} even at {rmax} replicas ({rmax * n} GPUs)", short, got, **fail))
        return
    res.options.append(_option(ev, acc, pd, eng, shape, r, quality.of(pd.precision.name), link))


def _search_nodes(w: Workload, model, acc, pd, eng, counts: list[int], kv_dtype, res: SearchResult, quality,
                  nodes: _NodeSearch, start: int) -> None:
    """Replicas over several nodes, smallest first, while one could still be cheaper than the configurations this
    accelerator x precision x engine already has (options from index `start` on): see qfit.size.nodes."""
    fewest = min((o.gpus for o in res.options[start:]), default=math.inf)
    for shape in node_layouts(counts, nodes.max_nodes, nodes.max_gpus, model.spec.layers):
        if shape.gpus >= fewest:
            return
        res.evaluated += 1
        before = len(res.options)
        _search_shape(w, model, acc, pd, eng, shape, kv_dtype, nodes.max_gpus, res, quality, nodes.link)
        fewest = min([fewest, *(o.gpus for o in res.options[before:])])


@dataclass(frozen=True)
class _NodeSearch:
    max_nodes: int
    max_gpus: int
    link: Internode | None


def search(model: LoadedModel, w: Workload, accelerators: list[Accelerator], recipes: tuple[Recipe, ...],
           engines: EngineRegistry, quality: QualityTable, *, engine_names: tuple[str, ...] | None = None,
           kv_dtype: str | None = None, max_gpus_per_node: int = 8, max_total_gpus: int = MAX_TOTAL_GPUS,
           costs: CostParams | None = None, max_nodes: int = 1, link: Internode | None = None) -> SearchResult:
    """Every accelerator x recipe x engine x TP shape (and, with `max_nodes` > 1, the multi-node replica layouts of
    qfit.size.nodes over `link`), each with its fewest replicas that meet the workload."""
    if max_nodes > 1 and link is None:
        raise QfitError("a search over several nodes needs the link between them (qfit.perf.pipeline.internode)")
    res, nodes = SearchResult([], []), _NodeSearch(max_nodes, max_total_gpus, link)
    pdata = _precision_data(model, recipes)
    stand_ins: dict[str, _PrecisionData] = {}
    requested = {r.name for r in recipes}
    for acc in accelerators:
        for pd in filter(None, (_stand_in(model, p, acc, engines, requested, stand_ins) for p in pdata)):
            engs = _engines(acc, pd.precision, engines, engine_names, kv_dtype)
            if isinstance(engs, str):
                res.skipped.append(f"{acc.short_name} {pd.precision.name}: {engs}")
                continue
            for eng in engs:
                counts, start = _tp_counts(model, acc, eng, max_gpus_per_node, max_total_gpus), len(res.options)
                for tp in counts:
                    res.evaluated += 1
                    _search_shape(w, model, acc, pd, eng, Layout(1, tp), kv_dtype, max_total_gpus, res, quality)
                if max_nodes > 1 and eng.tensor_parallel:     # multi-node ranks: vLLM, SGLang (as plan's check)
                    _search_nodes(w, model, acc, pd, eng, counts, kv_dtype, res, quality, nodes, start)
    params = costs or CostParams()
    for o in res.options:
        o.cost = cost_of(o.acc, o.gpus, o.served_tok_s, params)
    return res
