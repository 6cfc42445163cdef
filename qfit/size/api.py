"""`size()`: validate the request, run the search, rank and explain; `SizeResult.to_dict()` drives JSON, CSV and tables.
Pure over resolved objects (qfit.api.size resolves what the user typed)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from qfit.engines import EngineRegistry
from qfit.errors import QfitError
from qfit.hardware import Accelerator
from qfit.model.params import ParamCounts, count_params
from qfit.model.sources import LoadedModel
from qfit.perf.pipeline import Internode
from qfit.precision import Recipe
from qfit.quality import QualityTable
from qfit.size import rank
from qfit.size.cost import CostParams
from qfit.size.nodes import MAX_NODES
from qfit.size.search import MAX_TOTAL_GPUS, Option, SearchResult, search
from qfit.workload import Workload


@dataclass
class SizeResult:
    model: LoadedModel
    params: ParamCounts
    workload: Workload
    precisions: tuple[str, ...]
    engines: tuple[str, ...] | None
    accelerators: list[Accelerator]
    costs: CostParams
    max_gpus_per_node: int
    max_total_gpus: int
    found: SearchResult
    by_rent: list[Option]
    by_tco: list[Option]
    frontier: list[Option]
    chosen: Option | None
    cheaper_failed: list[dict]
    quality: QualityTable = field(default_factory=lambda: QualityTable({}))
    notes: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    max_nodes: int = 1
    internode: Internode | None = None

    def to_dict(self, top: int = 10) -> dict:
        w = self.workload
        return {
            "model": {"name": self.model.spec.name, "hub_id": self.model.spec.hub_id, "params_total": self.params.total,
                      "params_active": self.params.active},
            "workload": {"context": w.context, "concurrency": w.concurrency, "rps": w.rps,
                         "input_tokens": w.input_tokens, "output_tokens": w.output_tokens,
                         "min_tokens_per_s": w.min_tokens_per_s, "max_ttft_s": w.max_ttft_s,
                         "decode_timed_at_context": w.decode_context, "ttft_prompt_tokens": w.prompt},
            "search": {"accelerators": len(self.accelerators), "precisions": list(self.precisions),
                       "engines": list(self.engines) if self.engines else "auto",
                       "max_gpus_per_node": self.max_gpus_per_node, "max_total_gpus": self.max_total_gpus,
                       "max_nodes_per_replica": self.max_nodes,
                       "internode": self._link(),
                       "shapes_evaluated": self.found.evaluated, "feasible": len(self.found.options),
                       "seconds": self.seconds},
            "costs": {"hours_per_month": self.costs.hours_per_month, "months": self.costs.months,
                      "power_usd_per_kwh": self.costs.power_usd_per_kwh,
                      "prices_file": self.costs.prices.path if self.costs.prices else None},
            "chosen": self.chosen.to_dict(w) if self.chosen else None,
            "by_rent": [o.to_dict(w) for o in self.by_rent[:top]],
            "by_tco": [o.to_dict(w) for o in self.by_tco[:top]],
            "pareto": [o.to_dict(w) for o in self.frontier],
            "cheaper_failed": self.cheaper_failed,
            "infeasible": self._infeasible(),
            "quality": {p: self.quality.of(p).to_dict() for p in self.precisions},
            "unpriced": {"rent": rank.unpriced(self.found.options, "rent"),
                         "tco": rank.unpriced(self.found.options, "tco")},
            "skipped": self.found.skipped, "notes": self.notes,
        }


    def _link(self) -> dict | None:
        k = self.internode
        if k is None or self.max_nodes == 1:
            return None
        return {"key": k.key, "name": k.name, "bandwidth_gbps": k.bandwidth_gbps, "latency_us": k.latency_us,
                "source": k.source}

    def _infeasible(self) -> dict:
        """Accelerators with no feasible configuration -> the closest attempt's binding constraint."""
        ok = {o.acc.key for o in self.found.options}
        out = {}
        for acc in self.accelerators:
            f = None if acc.key in ok else rank.closest_failure(self.found.failures, acc.key)
            if f is not None:
                out[acc.short_name] = f.to_dict()
        return out


def _validate(w: Workload, max_gpus_per_node: int, max_total: int, max_nodes: int, link: Internode | None) -> None:
    if w.concurrency < 1:
        raise QfitError(f"--concurrency must be at least 1 user, got {w.concurrency}")
    if w.rps is not None and not w.rps > 0:
        raise QfitError(f"--rps must be positive, got {w.rps:g}")
    if w.rps and not (w.input_tokens and w.output_tokens):
        raise QfitError("--rps needs --input-len and --output-len (a request's prefill and decode work)")
    if w.input_tokens and w.output_tokens and w.input_tokens + w.output_tokens > w.context:
        raise QfitError(f"--input-tokens + --output-tokens = {w.input_tokens + w.output_tokens:,} exceeds --context "
                        f"{w.context:,}; closest: --context {w.input_tokens + w.output_tokens}")
    if w.input_tokens and w.input_tokens > w.context:
        raise QfitError(f"--input-tokens {w.input_tokens:,} exceeds --context {w.context:,}")
    for what, v in (("--min-tokens-per-s", w.min_tokens_per_s), ("--max-ttft", w.max_ttft_s)):
        if v is not None and not v > 0:
            raise QfitError(f"{what} must be positive, got {v:g}")
    if not 1 <= max_gpus_per_node <= max_total:
        raise QfitError(f"--max-gpus-per-node must be between 1 and the GPU limit {max_total}, got {max_gpus_per_node}")
    if not 1 <= max_nodes <= MAX_NODES:
        raise QfitError(f"--max-nodes must be between 1 and {MAX_NODES}, got {max_nodes}")
    if max_nodes > 1 and link is None:
        raise QfitError("replicas over several nodes need the link between them (qfit.perf.pipeline.internode)")


def _attach_performance(options: list[Option], w: Workload) -> None:
    """Shown rows get the real qfit.perf estimate (error band, assumptions)."""
    for o in options:
        if o.perf is None and o.speed is not None:
            o.perf = o.speed.estimate(batch=o.batch, input_len=w.prompt, context=w.decode_context,
                                      output_len=w.output_tokens)


def _node_note(max_nodes: int, link: Internode | None, found: list[Option]) -> list[str]:
    if max_nodes == 1:
        return []
    n = sum(o.nodes > 1 for o in found)
    return [f"multi-node replicas (up to {max_nodes} nodes, {n} feasible): tensor parallel within a node, one pipeline "
            f"stage per node over {link.name} ({link.bandwidth_gbps:g} GB/s, {link.latency_us:g} us per hop assumed), "
            "as `qfit plan --nodes`; tried for replicas larger than one node's tensor-parallel group while they could "
            "cost less than the accelerator's single-node options; speed band widened, no stage overlap credited; the network "
            "(adapters, switches) is not in the cost"]


def _notes(model: LoadedModel, res: SearchResult, w: Workload, found: list[Option]) -> list[str]:
    limit = model.spec.max_position_embeddings
    notes = [f"--context {w.context:,} exceeds the model's max_position_embeddings ({limit:,}): the memory is "
             "computed, but the model was not trained for it"] if limit and w.context > limit else []
    notes += [
        f"memory: every one of the {w.concurrency} users holds {w.context:,} tokens of KV; users split evenly over "
        "replicas (ceil(concurrency / replicas) per replica)",
        f"per-user speed: decode step at the replica's batch with {w.decode_context:,} tokens of KV (worst case)",
        f"TTFT: one {w.prompt:,}-token prompt prefilled on an idle replica (queueing behind other prefills not modelled)",
        "power: TDP x GPUs, an upper bound (GPUs only; no host, network or cooling)",
    ]
    if w.rps:
        notes.append("capacity per replica = 1 / (prefill s per request + output tokens x TPOT / batch)")
    for kind, label in (("rent", "rental ranking"), ("tco", "TCO ranking (needs list price and TDP)")):
        missing = rank.unpriced(found, kind)
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            notes.append(f"not in the {label}: {len(missing)} feasible accelerators have no price ({shown})")
    if res.skipped:
        notes.append(f"{len(res.skipped)} accelerator x precision x engine pairs skipped (engine cannot run them)")
    return notes


def size(model: LoadedModel, workload: Workload, accelerators: list[Accelerator], recipes: tuple[Recipe, ...],
         engines: EngineRegistry, *, quality: QualityTable, engine_names: tuple[str, ...] | None = None,
         kv_dtype: str | None = None, max_gpus_per_node: int = 8, max_total_gpus: int = MAX_TOTAL_GPUS,
         costs: CostParams | None = None, top: int = 10, with_performance: bool = True, max_nodes: int = 1,
         link: Internode | None = None) -> SizeResult:
    """Search, rank by rent and TCO, Pareto frontier, explanation. Raises QfitError (one line) when nothing fits.
    `max_nodes` > 1: replicas may also span up to that many nodes joined by `link` (qfit.size.nodes)."""
    t0, c0 = time.perf_counter(), time.process_time()
    _validate(workload, max_gpus_per_node, max_total_gpus, max_nodes, link)
    costs = costs or CostParams()
    res = search(model, workload, accelerators, recipes, engines, quality, engine_names=engine_names,
                 kv_dtype=kv_dtype, max_gpus_per_node=max_gpus_per_node, max_total_gpus=max_total_gpus, costs=costs,
                 max_nodes=max_nodes, link=link)
    t1, c1 = time.perf_counter(), time.process_time()
    if not res.options:
        raise QfitError(rank.impossible_message(res, workload))
    rent, tco = rank.by_rent(res.options), rank.by_tco(res.options)
    front = rank.pareto(rent)
    chosen = rent[0] if rent else (tco[0] if tco else min(res.options, key=lambda o: (o.gpus, -o.decode_tok_s)))
    cheaper = rank.explain_cheaper(res, chosen, accelerators, costs.prices) if rent else []
    if with_performance:
        _attach_performance([chosen, *rent[:top], *tco[:top], *front], workload)
    seconds = {"search_wall": t1 - t0, "search_cpu": c1 - c0,
               "total_wall": time.perf_counter() - t0, "total_cpu": time.process_time() - c0}
    return SizeResult(model, count_params(model.spec), workload, tuple(r.name for r in recipes), engine_names,
                      accelerators, costs, max_gpus_per_node, max_total_gpus, res, rent, tco, front, chosen, cheaper,
                      quality, _notes(model, res, workload, res.options) + _node_note(max_nodes, link, res.options),
                      {k: round(v, 4) for k, v in seconds.items()}, max_nodes, link if max_nodes > 1 else None)
