"""Plan: memory breakdown, fit verdict, max context / batch and speed for one model x recipe x accelerator x count x
engine x workload; suggestions when it does not fit; the precision x accelerator matrix.

Pure: takes resolved objects only (qfit.resolve turns what the user typed into them; qfit.api does both for the CLI).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qfit.deployment import Deployment, KVPool, Weights
from qfit.engines import EngineProfile, EngineRegistry
from qfit.errors import QfitError
from qfit.hardware import Accelerator
from qfit.memory import GIB, MemoryBreakdown
from qfit.model.params import ParamCounts, count_params, tensor_groups
from qfit.model.sources import LoadedModel
from qfit.perf.estimate import CurvePoint, PerfEstimate, estimate_performance
from qfit.precision import Recipe, WeightBytes, parse_recipe
from qfit.quantize.mixed.budget import mixed_suggestion
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
            "kv_cache": self.kv_pool.to_dict() if self.kv_pool else None,
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
    if dep.acc.usable_memory_fraction < 1 and dep.acc.vendor == "cpu":
        out.append(f"{dep.acc.name}: {dep.acc.usable_memory_fraction:.0%} of RAM available when planned "
                   "(MemAvailable: what other processes leave)")
    elif dep.acc.usable_memory_fraction < 1:
        out.append(f"{dep.acc.name}: unified memory, {dep.acc.usable_memory_fraction:.0%} usable by the GPU")
    if dep.model.spec.vision:
        out.append("vision tower estimated from vision_config (ViT blocks + patch embedding; projector not counted)")
    if dep.model.spec.max_position_embeddings and context > dep.model.spec.max_position_embeddings:
        out.append(f"WARNING: context {context:,} exceeds the model's max_position_embeddings "
                   f"({dep.model.spec.max_position_embeddings:,}): the memory is computed, but the model was not "
                   "trained for it")
    node = dep.acc.tp_limit(e.policy.gpus_per_node)
    if dep.gpus > node:
        out.append(f"WARNING: {dep.gpus} GPUs exceed one node ({node} x {dep.acc.short_name}, the limit `qfit size` "
                   "also applies): the split would cross nodes over the network (engines use pipeline parallel or "
                   "llama.cpp RPC there), which this estimate does not model")
    return out


def _verdict(dep: Deployment, mem: MemoryBreakdown) -> tuple[bool, str]:
    problem = dep.tp_problem
    if problem:
        return False, problem
    if mem.per_gpu <= dep.budget:
        return True, f"{mem.per_gpu / GIB:.1f} of {dep.budget / GIB:.1f} GiB per GPU"
    return False, f"needs {mem.per_gpu / GIB:.1f} GiB per GPU, {dep.budget / GIB:.1f} GiB available"


def make_plan(model: LoadedModel, acc: Accelerator, recipe: Recipe, engine: EngineProfile, workload: Workload, *,
              gpus: int = 1, kv_dtype: str | None = None, weights: Weights | None = None,
              with_performance: bool = True, suggest: bool = True) -> Plan:
    dep = Deployment.build(model, acc, gpus, recipe, engine, kv_dtype, weights)
    w = workload
    mem = dep.memory(w.context, w.batch, w.prompt)
    fits, reason = _verdict(dep, mem)
    plan = Plan(model=model, params=count_params(model.spec), accelerator=acc, gpus=gpus, precision=recipe,
                engine=engine, context=w.context, batch=w.batch, kv_dtype=dep.kv_dtype, weights=dep.weights.recipe,
                memory=mem, budget_per_gpu=dep.budget, fits=fits, reason=reason,
                max_context=dep.max_context(w.batch, w.prompt, context_limit(model)),
                max_batch=dep.max_batch(w.context, w.prompt), assumptions=_assumptions(dep, mem.notes, w.context),
                kv_pool=dep.kv_pool(w.context, w.prompt))
    if not fits and suggest:
        plan.suggestion = suggest_alternative(dep, w, kv_dtype)
    if with_performance:
        plan.performance = estimate_performance(
            model.spec, tensor_groups(model.spec), dep.weights.recipe, recipe.name, acc,
            efficiency=engine.efficiency(acc.backend, recipe.name), gpus=gpus, batch=w.batch, input_len=w.prompt,
            context=w.context, kv_dtype=dep.kv_dtype, output_len=w.output_tokens)
    return plan


def _fits_with(dep: Deployment, w: Workload, kv_dtype: str | None, gpus: int | None = None,
               recipe: Recipe | None = None) -> bool:
    """Would the same deployment fit with another GPU count or recipe (`kv_dtype`: what the user asked for)?"""
    other = Deployment.build(dep.model, dep.acc, gpus or dep.gpus, recipe or dep.recipe, dep.engine, kv_dtype,
                             None if recipe else dep.weights)
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
                kv_dtype: str | None = None) -> list[Plan]:
    """One plan per accelerator x recipe (the engine chosen per recipe and device unless named); pairs no engine
    runs are not cells of the matrix."""
    plans = []
    for acc in accs:
        for recipe in recipes:
            try:
                eng = engines.choose(engine, recipe, acc, kv_dtype)
            except QfitError:
                continue
            dep = Deployment.build(model, acc, gpus, recipe, eng, kv_dtype)
            plan = make_plan(model, acc, recipe, eng, workload, gpus=gpus, kv_dtype=kv_dtype, weights=dep.weights,
                             suggest=False)
            plan.min_gpus = gpus if plan.fits else min_gpus(dep, workload, kv_dtype, start=gpus + 1)
            plans.append(plan)
    return plans
