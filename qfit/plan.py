"""Plan: memory breakdown, fit verdict, max context / batch and speed for one model x recipe x accelerator x count x
engine x workload; suggestions when it does not fit; the precision x accelerator matrix.

Pure: takes resolved objects only (qfit.resolve turns what the user typed into them; qfit.api does both for the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from qfit import speculative
from qfit.deployment import Deployment, KVPool, Weights, weights_for
from qfit.engines import EngineProfile, EngineRegistry
from qfit.errors import QfitError
from qfit.hardware import Accelerator
from qfit.memory import GIB, MemoryBreakdown
from qfit.model.params import ParamCounts, count_params, tensor_groups
from qfit.model.sources import LoadedModel
from qfit.offload import HostMemory, Offload, apply_speed, plan_offload
from qfit.perf.estimate import CurvePoint, PerfEstimate, estimate_performance
from qfit.perf.pipeline import Internode, pipeline_adjust
from qfit.precision import Recipe, WeightBytes, parse_recipe
from qfit.quantize.mixed.budget import mixed_suggestion
from qfit.speculative import Speculation
from qfit.workload import Workload

DEFAULT_CONTEXT = 8192
MAX_GPUS = 64
# Ladders for "what would fit": from most to least faithful weights, per engine family.
GPU_LADDER = ("bf16", "fp8", "gptq-int8", "gptq-int4", "gptq-int3", "gptq-int2")
GGUF_LADDER = ("gguf-q8_0", "gguf-q6_k", "gguf-q5_k_m", "gguf-q4_k_m", "gguf-q3_k_m", "gguf-q2_k", "gguf-iq2_xxs")


@dataclass
class Plan:
    model: LoadedModel
    params: ParamCounts
    accelerator: Accelerator
    gpus: int
    precision: Recipe
    engine: EngineProfile
    context: int
    batch: int
    kv_dtype: str
    weights: WeightBytes
    memory: MemoryBreakdown
    budget_per_gpu: float
    fits: bool
    reason: str
    max_context: int
    max_batch: int
    assumptions: list[str] = field(default_factory=list)
    suggestion: str | None = None
    min_gpus: int | None = None       # fewest accelerators of this kind that fit (None: not computed / none up to 64)
    performance: PerfEstimate | None = None
    kv_pool: KVPool | None = None     # the KV pool in bytes and tokens, and the sequences of `context` it holds
    pipeline: int = 1                 # pipeline stages, one per node (gpus = tensor parallel x pipeline)
    internode: Internode | None = None   # the link between the nodes (pipeline > 1)
    offload: Offload | None = None    # the GPU/host split when --ram was given and the GPUs alone do not hold it
    speculative: dict | None = None   # --spec mtp: draft tokens, acceptance, draft memory, the engine's flag

    @property
    def tensor_parallel(self) -> int:
        return self.gpus // self.pipeline

    @property
    def headroom_per_gpu(self) -> float:
        return self.budget_per_gpu - self.memory.per_gpu

    def to_dict(self) -> dict:
        spec, acc, params = self.model.spec, self.accelerator, self.params
        perf = self.performance.to_dict() if self.performance is not None else None
        policy = self.engine.policy
        return {
            "model": {
                "name": spec.name, "hub_id": spec.hub_id, "source": self.model.kind, "architecture": spec.model_type,
                "attention_kind": spec.attention_kind, "layers": spec.layers, "hidden": spec.hidden,
                "heads": spec.heads, "kv_heads": spec.kv_heads, "head_dim": spec.head_dim, "vocab": spec.vocab,
                "experts": spec.moe.num_experts if spec.moe else None,
                "experts_per_token": spec.moe.top_k if spec.moe else None,
                "params_total": params.total, "params_active": params.active, "params_by_module": params.by_module,
            },
            "accelerator": {"name": acc.name, "key": acc.key, "vendor": acc.vendor, "backend": acc.backend,
                            "count": self.gpus, "memory_gib": acc.memory_gib,
                            "usable_memory_gib": acc.usable_bytes / GIB, "bandwidth_gbps": acc.bandwidth_gbps},
            "precision": self.precision.name, "group_size": self.precision.group_size,
            "recipe": self.precision.to_dict(),
            "engine": self.engine.name, "context": self.context, "batch": self.batch, "kv_dtype": self.kv_dtype,
            "memory": {**self.memory.to_dict(), "budget_per_gpu_gib": self.budget_per_gpu / GIB,
                       "headroom_per_gpu_gib": self.headroom_per_gpu / GIB},
            "weights": self.weights.to_dict(),
            "fits": self.fits, "reason": self.reason, "max_context": self.max_context, "max_batch": self.max_batch,
            "suggestion": self.suggestion, "min_gpus": self.min_gpus,
            "parallel": {"tensor": self.tensor_parallel, "pipeline": self.pipeline, "nodes": self.pipeline,
                         "gpus_per_node": self.tensor_parallel,
                         "internode": self.internode.key if self.internode else None},
            "kv_cache": self.kv_pool.to_dict() if self.kv_pool else None,
            "offload": self.offload.to_dict() if self.offload else None,
            "speculative": self.speculative,
            "performance": perf,
            "assumptions": list(self.assumptions),
            "error_band": (perf or {}).get("error_band") or {"memory_pct": policy.memory_band_pct,
                                                              "basis": policy.memory_band_basis},
        }


def default_context(model: LoadedModel) -> int:
    return min(DEFAULT_CONTEXT, context_limit(model))


def context_limit(model: LoadedModel) -> int:
    """The longest context a plan searches: the model's trained maximum (128k when its config does not say)."""
    return int(model.spec.max_position_embeddings or 131072)


def _assumptions(dep: Deployment, kv_notes: tuple[str, ...], context: int) -> list[str]:
    e, r, w = dep.engine, dep.recipe, dep.weights.recipe
    out = [f"engine {e.name}: {e.description}"]
    if e.note:
        out.append(e.note)
    if e.memory_fraction:
        out.append(f"{e.name} reserves {e.memory_fraction:.0%} of each GPU's memory and fills what weights, "
                   f"activations and overhead leave with KV cache")
    out.append("weights exact from the checkpoint's tensor headers" if dep.weights.exact else
               f"weights computed from the {r.name} recipe: {w.bits_per_weight:.2f} bits/weight effective"
               + (f"; kept high precision: {', '.join(w.kept_high_precision)}" if w.kept_high_precision else ""))
    block = e.kv.get("block_tokens", 1)
    out.append(f"KV cache {dep.kv_dtype}" + (f", allocated in blocks of {block} tokens" if block > 1 else ""))
    out.extend(kv_notes)
    out.extend(w.notes)
    out.append(f"runtime overhead {dep.overhead / dep.gpus / GIB:.2f} GiB per GPU ({dep.acc.backend} context"
               + (", CUDA graphs" if e.name in {"vllm", "sglang"} else "")
               + (", tensor-parallel buffers" if dep.gpus > 1 and e.tensor_parallel else "") + ")")
    if dep.pp > 1:
        out.append(f"{dep.pp} nodes x {dep.tp} GPUs: tensor parallel within a node, pipeline parallel across nodes "
                   f"(one stage per node)")
    if dep.acc.usable_memory_fraction < 1 and dep.acc.vendor == "cpu":
        out.append(f"{dep.acc.name}: {dep.acc.usable_memory_fraction:.0%} of RAM available when planned "
                   "(MemAvailable: what other processes leave)")
    elif dep.acc.usable_memory_fraction < 1:
        out.append(f"{dep.acc.name}: unified memory, {dep.acc.usable_memory_fraction:.0%} usable by the GPU")
    if dep.model.spec.vision:
        out.append(_vision_note(dep))
    if dep.model.spec.max_position_embeddings and context > dep.model.spec.max_position_embeddings:
        out.append(f"WARNING: context {context:,} exceeds the model's max_position_embeddings "
                   f"({dep.model.spec.max_position_embeddings:,}): the memory is computed, but the model was not "
                   "trained for it")
    node = dep.acc.tp_limit(e.policy.gpus_per_node)
    if dep.tp > node:
        out.append(f"WARNING: {dep.gpus} GPUs exceed one node ({node} x {dep.acc.short_name}, the limit `qfit size` "
                   "also applies): the split would cross nodes over the network (engines use pipeline parallel or "
                   "llama.cpp RPC there), which this estimate does not model")
    return out


def _vision_note(dep: Deployment) -> str:
    est = "estimated from vision_config (ViT blocks + patch embedding; projector not counted)"
    left = dep.weights.vision_left_out
    if not left:
        return f"vision tower counted ({dep.recipe.name} checkpoints and their engines load it), {est}; --text-only " \
               "leaves it out"
    if dep.recipe.family == "gguf":
        return (f"vision tower not counted ({left / 1e9:.2f} GB in this recipe, {est}): GGUF files hold the language "
                "model only; the tower is a separate mmproj file that llama-server loads with --mmproj")
    return (f"--text-only: vision tower not counted ({left / 1e9:.2f} GB, {est}); needs a text-only checkpoint or an "
            "engine setting that skips loading it")


def _verdict(dep: Deployment, mem: MemoryBreakdown) -> tuple[bool, str]:
    problem = dep.tp_problem
    if problem:
        return False, problem
    if mem.per_gpu <= dep.budget:
        return True, f"{mem.per_gpu / GIB:.1f} of {dep.budget / GIB:.1f} GiB per GPU"
    return False, f"needs {mem.per_gpu / GIB:.1f} GiB per GPU, {dep.budget / GIB:.1f} GiB available"


def make_plan(model: LoadedModel, acc: Accelerator, recipe: Recipe, engine: EngineProfile, workload: Workload, *,
              gpus: int = 1, kv_dtype: str | None = None, weights: Weights | None = None,
              with_performance: bool = True, suggest: bool = True, pp: int = 1,
              link: Internode | None = None, host: HostMemory | None = None, spec: Speculation | None = None) -> Plan:
    """`pp` > 1: `gpus` split into `pp` nodes of `gpus // pp` (TP within a node, a pipeline stage per node) joined
    by `link` (qfit.perf.pipeline.internode reads the profiles; the core reads nothing)."""
    if pp > 1 and link is None:
        raise QfitError("a plan over several nodes needs the link between them (qfit.perf.pipeline.internode)")
    dep = Deployment.build(model, acc, gpus, recipe, engine, kv_dtype, weights, pp=pp)
    link = link if pp > 1 else None
    w = workload
    mem = dep.memory(w.context, w.batch, w.prompt)
    fits, reason = _verdict(dep, mem)
    plan = Plan(model=model, params=count_params(model.spec), accelerator=acc, gpus=gpus, precision=recipe,
                engine=engine, context=w.context, batch=w.batch, kv_dtype=dep.kv_dtype, weights=dep.weights.recipe,
                memory=mem, budget_per_gpu=dep.budget, fits=fits, reason=reason,
                max_context=dep.max_context(w.batch, w.prompt, context_limit(model)),
                max_batch=dep.max_batch(w.context, w.prompt), assumptions=_assumptions(dep, mem.notes, w.context),
                kv_pool=dep.kv_pool(w.context, w.prompt), pipeline=pp, internode=link)
    if with_performance:
        plan.performance = estimate_performance(
            model.spec, tensor_groups(model.spec), dep.weights.recipe, recipe.name, acc,
            efficiency=engine.efficiency(acc.backend, recipe.name), gpus=dep.tp, batch=w.batch, input_len=w.prompt,
            context=w.decode_context, kv_dtype=dep.kv_dtype, output_len=w.output_tokens)
        if pp > 1:
            plan.performance = pipeline_adjust(plan.performance, model.spec, pp, link, batch=w.batch,
                                               input_len=w.prompt, act_bytes=dep.act_bytes, output_len=w.output_tokens)
    if spec is not None:
        _speculate(plan, dep, w, spec)
    if not plan.fits and host is not None and dep.tp_problem is None:
        _offload(plan, dep, w, host)
    if not plan.fits and suggest and pp == 1:
        plan.suggestion = suggest_alternative(dep, w, kv_dtype)
    return plan


def _offload(plan: Plan, dep: Deployment, w: Workload, host: HostMemory) -> None:
    """Split the deployment between GPU and host memory (--ram) where the engine can (qfit.offload)."""
    off = plan_offload(dep, plan.memory, host)
    if off is None:
        plan.assumptions.append(f"--ram given, but {host.unsupported_note(dep.engine.name)}")
        return
    plan.offload = off
    if not off.fits:
        plan.reason = off.reason
        return
    m = plan.memory
    on_gpu = replace(dep, weights=replace(dep.weights, total=dep.weights.total - off.host_weight_bytes), _kv={},
                     gpu_layers=off.gpu_layers if off.kind == "layers" else None)
    plan.memory = replace(m, weights=m.weights - off.host_weight_bytes, kv_cache=m.kv_cache - off.host_kv_bytes,
                          kv_per_gpu=m.kv_per_gpu - off.host_kv_bytes / dep.gpus)
    plan.fits, plan.reason = True, off.reason
    plan.max_context = on_gpu.max_context(w.batch, w.prompt, context_limit(dep.model))
    plan.max_batch = on_gpu.max_batch(w.context, w.prompt)
    plan.kv_pool = on_gpu.kv_pool(w.context, w.prompt)
    plan.assumptions.append(f"offload: {off.host_bytes / GIB:.1f} GiB in host memory ({off.flag}); max context, max "
                            "batch and KV pool keep this split" + ("" if off.kind == "moe_experts" else
                                                                   " (the GPU holds its layers' KV, the host the "
                                                                   "rest's)"))
    if plan.performance is not None:
        plan.performance, plan.offload = apply_speed(plan.performance, off, dep, w.batch, w.prompt, w.output_tokens,
                                                      w.decode_context / w.context)
        plan.reason += f", ~{plan.performance.decode_tokens_per_s:.0f} tok/s decode"


def _speculate(plan: Plan, dep: Deployment, w: Workload, s: Speculation) -> None:
    """Count the MTP layers' memory and time decode as drafted by them (qfit.speculative)."""
    spec = dep.model.spec
    if not spec.mtp_layers:
        raise QfitError(f"--spec mtp: {spec.name} has no multi-token-prediction layer")
    how = s.support(dep.engine.name)
    if how is None:
        plan.assumptions.append(f"--spec given, but {s.unsupported_note(dep.engine.name)}")
        return
    draft = speculative.draft_of(dep, w.batch, w.context, w.decode_context)
    m = plan.memory
    plan.memory = replace(m, weights=m.weights + draft.weight_bytes, kv_cache=m.kv_cache + draft.kv_bytes,
                          kv_per_gpu=m.kv_per_gpu + draft.kv_bytes / dep.gpus)
    plan.fits, plan.reason = _verdict(dep, plan.memory)
    with_mtp = replace(dep, weights=replace(dep.weights, total=dep.weights.total + draft.weight_bytes), _kv={})
    plan.max_context = with_mtp.max_context(w.batch, w.prompt, context_limit(dep.model))
    plan.max_batch = with_mtp.max_batch(w.context, w.prompt)
    plan.kv_pool = with_mtp.kv_pool(w.context, w.prompt)
    plan.speculative = speculative.summary(s, draft, how["flag"])
    n, a = s.draft_tokens, s.acceptance
    plan.assumptions.append(
        f"speculative decoding (--spec mtp:{n}): the MTP layer drafts {n} token(s) per step, each accepted with "
        f"probability {a:g} (the user's figure), {s.expected_tokens:.3g} tokens per step = (1 - A^(n+1)) / (1 - A); "
        f"a step = one pass over {n + 1} tokens per sequence + {n} MTP passes; MTP weights "
        f"{draft.weight_bytes / GIB:.2f} GiB and KV {draft.kv_bytes / GIB:.2f} GiB counted (max context/batch count "
        f"the weights only); the engine's fixed per-step overhead is paid once per step, not per draft pass; "
        f"{dep.engine.name}: {how['flag']}")
    if spec.linear and dep.engine.name == "vllm" and w.batch >= int(s.facts.get("hybrid_warning_batch", 4)):
        plan.assumptions.append("WARNING: hybrid models with MTP at batch >= 4 have had vLLM scheduler problems "
                                "(vllm issue #55533)")
    if plan.performance is not None:
        eff = dep.engine.efficiency(dep.acc.backend, dep.recipe.name)
        verify = estimate_performance(spec, tensor_groups(spec), dep.weights.recipe, dep.recipe.name, dep.acc,
                                      efficiency=eff, gpus=dep.gpus, batch=w.batch * (n + 1), input_len=w.prompt,
                                      context=w.decode_context, kv_dtype=dep.kv_dtype)
        plan.performance = speculative.apply_speed(plan.performance, verify, draft, s, eff, dep.acc.bandwidth_gbps,
                                                   w.batch, w.output_tokens)


def _fits_with(dep: Deployment, w: Workload, kv_dtype: str | None, gpus: int | None = None,
               recipe: Recipe | None = None) -> bool:
    """Would the same deployment fit with another GPU count or recipe (`kv_dtype`: what the user asked for)?"""
    text_only = bool(dep.weights.vision_left_out) and dep.recipe.family != "gguf"    # --text-only carries over
    weights = weights_for(dep.model, recipe, text_only) if recipe else dep.weights
    other = Deployment.build(dep.model, dep.acc, gpus or dep.gpus, recipe or dep.recipe, dep.engine, kv_dtype, weights)
    return other.fits(w.context, w.batch, w.prompt)


def min_gpus(dep: Deployment, w: Workload, kv_dtype: str | None, start: int = 1, limit: int = MAX_GPUS) -> int | None:
    """Fewest accelerators of this kind (tensor-parallel valid) that hold the workload, or None up to `limit`."""
    return next((n for n in range(start, limit + 1) if _fits_with(dep, w, kv_dtype, gpus=n)), None)


def suggest_alternative(dep: Deployment, w: Workload, kv_dtype: str | None) -> str:
    """The smallest change that fits: more GPUs of this kind (same recipe), or a lower precision on this count."""
    options, acc, name = [], dep.acc, dep.recipe.name
    n = min_gpus(dep, w, kv_dtype, start=dep.gpus + 1)
    if n:
        options.append(f"{n} x {acc.name} at {name}")
    ladder = GGUF_LADDER if dep.recipe.family == "gguf" else GPU_LADDER
    start = ladder.index(name) + 1 if name in ladder else 0
    lower = next((p for p in ladder[start:] if _fits_with(dep, w, kv_dtype, recipe=parse_recipe(p))), None)
    if lower:
        options.append(f"{dep.gpus} x {acc.name} at {lower}")
    if lower in (None, "gptq-int3", "gptq-int2") and name in GPU_LADDER[:GPU_LADDER.index("gptq-int3")]:
        mixed = mixed_suggestion(dep, w)       # between uniform 4-bit (does not fit) and all 2-bit (fits)
        if mixed:
            options.append(f"{dep.gpus} x {acc.name} at {mixed}")
    if not options:
        return f"nothing up to {MAX_GPUS} x {acc.name} or down to {ladder[-1]} fits {w.context:,} tokens x {w.batch}"
    return "would fit: " + "; or ".join(options)


def curve_points(plans: list[Plan]) -> list[CurvePoint]:
    """Plans of one configuration at several batches as the speed model's CurvePoints (for tables and plots)."""
    return [CurvePoint(p.batch, p.performance.decode_tokens_per_s, p.performance.aggregate_tokens_per_s,
                       p.performance.tpot_s, p.performance.ttft_s, p.performance.bound, p.memory.per_gpu / GIB, p.fits)
            for p in plans if p.performance is not None]


def plan_matrix(model: LoadedModel, accs: list[Accelerator], recipes: list[Recipe], engines: EngineRegistry,
                workload: Workload, *, engine: str | None = None, gpus: int = 1,
                kv_dtype: str | None = None, text_only: bool = False) -> list[Plan]:
    """One plan per accelerator x recipe (the engine chosen per recipe and device unless named); pairs no engine
    runs are not cells of the matrix."""
    plans = []
    for acc in accs:
        for recipe in recipes:
            try:
                eng = engines.choose(engine, recipe, acc, kv_dtype)
            except QfitError:
                continue
            dep = Deployment.build(model, acc, gpus, recipe, eng, kv_dtype, weights_for(model, recipe, text_only))
            plan = make_plan(model, acc, recipe, eng, workload, gpus=gpus, kv_dtype=kv_dtype, weights=dep.weights,
                             suggest=False)
            plan.min_gpus = gpus if plan.fits else min_gpus(dep, workload, kv_dtype, start=gpus + 1)
            plans.append(plan)
    return plans
