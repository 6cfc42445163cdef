"""The library's front door: what the user typed goes in, a result object comes out. Each function resolves names
to objects once (qfit.resolve) and calls the pure core (qfit.plan, qfit.size); the CLI only parses and renders.

    from qfit import api
    p = api.plan("Qwen/Qwen2.5-72B-Instruct", gpu="A6000", precision="gptq-int4")
    p.fits, p.max_context, p.performance.decode_tokens_per_s

Already-resolved objects (LoadedModel, Accelerator) are accepted wherever a name is, so a caller that plans many
configurations of one model resolves it once.
"""

from __future__ import annotations

from qfit import resolve
from qfit.deployment import weights_for
from qfit.engines import EngineRegistry
from qfit.errors import QfitError
from qfit.hardware import Accelerator
from qfit.model.sources import LoadedModel
from qfit.plan import Plan, default_context, make_plan, plan_matrix
from qfit.workload import Workload


def _workload(loaded: LoadedModel, context: int | None, batch: int, input_len: int | None,
              output_len: int | None) -> Workload:
    """A request's tokens must fit its context: a prompt (plus output) longer than --context is refused; without
    --context the context grows to hold them."""
    need = (input_len or 0) + (output_len or 0)
    if context is not None and need > context:
        raise QfitError(f"--input-len + --output-len = {need:,} tokens exceed --context {context:,}; "
                        f"closest: --context {need}")
    return Workload(context=context or max(default_context(loaded), need), batch=batch, input_tokens=input_len,
                    output_tokens=output_len)


def plans(model: str | LoadedModel, *, gpu: str | Accelerator, batches: list[int], precision: str | None = None,
          engine: str | None = None, context: int | None = None, gpus: int = 1, kv_dtype: str | None = None,
          group_size: int | None = None, input_len: int | None = None, output_len: int | None = None,
          with_performance: bool = True, suggest: bool = True, engines: EngineRegistry | None = None,
          nodes: int = 1, internode: str | None = None, ram: str | None = None, ram_bandwidth: str | None = None,
          cpu: str | None = None, text_only: bool = False, spec: str | None = None,
          spec_acceptance: str | None = None) -> list[Plan]:
    """One configuration at each batch size (a single plan for one batch; a curve for several). `nodes` > 1: the
    `gpus` split over that many machines (TP within one, a pipeline stage each) joined by the `internode` link.
    `ram` (with `ram_bandwidth` or a `cpu` platform name): host memory as a second tier when the GPUs alone do not
    hold it."""
    from qfit.launch.layout import check_layout
    from qfit.perf.pipeline import internode as link_named

    host = _host(ram, ram_bandwidth, cpu)
    speculation = _spec(spec, spec_acceptance)
    loaded, acc = resolve.model(model), resolve.accelerator(gpu)
    recipe = resolve.recipe(precision, loaded, group_size)
    registry = engines or resolve.engines()
    eng = registry.choose(engine, recipe, acc, kv_dtype)
    if gpus % nodes:
        raise QfitError(f"{gpus} GPUs do not split over {nodes} nodes")
    check_layout(loaded.spec, acc, eng, gpus, nodes)
    link = link_named(internode) if nodes > 1 else None
    weights = weights_for(loaded, recipe, text_only)      # once for every batch of the curve
    return [make_plan(loaded, acc, recipe, eng, _workload(loaded, context, b, input_len, output_len), gpus=gpus,
                      kv_dtype=kv_dtype, weights=weights, with_performance=with_performance, suggest=suggest,
                      pp=nodes, link=link, host=host, spec=speculation)
            for b in batches]


def _spec(spec: str | None, acceptance: str | None):
    if spec is None:
        if acceptance is not None:
            raise QfitError("--spec-acceptance goes with --spec mtp[:n]")
        return None
    from qfit.speculative import speculation

    return speculation(spec, acceptance)


def _host(ram: str | None, ram_bandwidth: str | None, cpu: str | None):
    if ram is None:
        if ram_bandwidth is not None or cpu is not None:
            raise QfitError("--ram-bandwidth and --cpu describe host memory: give --ram too (e.g. --ram 64GB)")
        return None
    from qfit.offload import host_memory

    return host_memory(ram, ram_bandwidth, cpu)


def plan(model: str | LoadedModel, *, gpu: str | Accelerator, batch: int = 1, **kw) -> Plan:
    """One model x precision x accelerator x count x engine (keywords as `plans`)."""
    return plans(model, gpu=gpu, batches=[batch], **kw)[0]


def matrix(model: str | LoadedModel, gpus_list: list[str], precisions: list[str], *, engine: str | None = None,
           context: int | None = None, batch: int = 1, gpus: int = 1, kv_dtype: str | None = None,
           group_size: int | None = None, input_len: int | None = None,
           output_len: int | None = None, text_only: bool = False) -> list[Plan]:
    """Every precision x accelerator (the engine chosen per cell unless named; --group-size applies to GPTQ/AWQ rows)."""
    loaded = resolve.model(model)
    accs = [resolve.accelerator(g) for g in gpus_list]
    recipes = [resolve.recipe(p, loaded, group_size, strict=False) for p in precisions]
    registry = resolve.engines()
    if engine:
        registry.get(engine)          # an unknown engine name is an error, not an empty matrix
    workload = _workload(loaded, context, batch, input_len, output_len)
    return plan_matrix(loaded, accs, recipes, registry, workload, engine=engine, gpus=gpus, kv_dtype=kv_dtype,
                       text_only=text_only)


def size(model: str | LoadedModel, workload: Workload, *, gpus_allowed: list[str] | None = None,
         precisions: tuple[str, ...] | None = None, engines: tuple[str, ...] | None = None,
         max_nodes: int | None = None, internode: str | None = None, **kw):
    """qfit size: the cheapest hardware that serves `workload` (keywords as qfit.size.size). Replicas may span up to
    `max_nodes` nodes (default qfit.size.nodes.DEFAULT_MAX_NODES) over the `internode` link (default: plan's)."""
    import time

    from qfit.perf.pipeline import internode as link_named
    from qfit.quality import load_quality
    from qfit.size import DEFAULT_PRECISIONS
    from qfit.size import size as run_size
    from qfit.size.nodes import DEFAULT_MAX_NODES

    t0, c0 = time.perf_counter(), time.process_time()
    registry = resolve.engines()
    for name in engines or ():
        registry.get(name)   # an unknown engine name is a one-line error, not a silently empty search
    parsed = (resolve.recipe(p) for p in precisions or DEFAULT_PRECISIONS)
    recipes = tuple({r.name: r for r in parsed}.values())     # "int4,gptq-int4" is one recipe
    loaded, accs, quality = resolve.model(model), resolve.accelerators(gpus_allowed), load_quality()
    max_nodes = DEFAULT_MAX_NODES if max_nodes is None else max_nodes
    link = link_named(internode) if max_nodes > 1 or internode else None    # a misspelt name is an error either way
    load = {"load_wall": round(time.perf_counter() - t0, 4), "load_cpu": round(time.process_time() - c0, 4)}
    result = run_size(loaded, workload, accs, recipes, registry, engine_names=engines, quality=quality,
                      max_nodes=max_nodes, link=link if max_nodes > 1 else None, **kw)
    result.seconds = {**load, **result.seconds}
    return result


def survey(gpu: str | Accelerator | None = None, *, models: list[str] | None = None, family: str | None = None,
           min_params: float | None = None, max_params: float | None = None, moe: bool | None = None,
           context: int | None = None, batch: int = 1, gpus: int | None = None, input_len: int | None = None,
           output_len: int | None = None, engine: str | None = None, sort: str = "size", top: int | None = None):
    """Which models run on this hardware (`qfit plan --gpu X` without --model): every catalog model, or `models`, at its
    most faithful precision that fits, ranked. `gpu` None or "auto": the local hardware, detected (qfit.detect)."""
    from qfit.model.sources import catalog_models
    from qfit.quality import load_quality
    from qfit.survey import Request, SurveyResult, select
    from qfit.survey import survey as run_survey

    detected = None
    if gpu is None or (isinstance(gpu, str) and gpu.strip().lower() == "auto"):
        from qfit.detect import detect

        found = detect()
        detected = f"{found.count} x {found.name} (detected by {found.how})"
        gpu, gpus = found.name, gpus or found.count
    acc, registry = resolve.accelerator(gpu), resolve.engines()
    if engine:
        registry.get(engine)
    loaded = [resolve.model(m) for m in models] if models else catalog_models()
    chosen = select(loaded, family=family, min_params=min_params, max_params=max_params, moe=moe)
    if not chosen:
        raise QfitError("no model passes the filters (--family, --min-params/--max-params, --moe/--dense)")
    req = Request(context, batch, input_len, output_len, gpus or 1)
    rows = run_survey(chosen, acc, registry, load_quality(), req, engine=engine, sort=sort)
    return SurveyResult(acc, req, rows[:top] if top else rows, len(chosen), detected, sort)
