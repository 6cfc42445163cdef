"""Plan: memory breakdown, fit verdict, max context / batch (and speed, from perf.py) for one model x precision x
accelerator x count x engine. Pure given a LoadedModel; the CLI does the I/O and rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qfit.engines import EngineProfile, get_engine
from qfit.errors import QfitError
from qfit.hardware import Accelerator, get_accelerator
from qfit.memory import GIB, MemoryBreakdown, activation_bytes, kv_cache, parse_kv_dtype
from qfit.model.params import ParamCounts, count_params, tensor_groups
from qfit.model.sources import LoadedModel, load_model
from qfit.precision import Precision, WeightBytes, parse_precision, weight_bytes

DEFAULT_CONTEXT = 8192
MAX_BATCH_SEARCH = 65536
# Ladders for "what would fit": from most to least faithful weights, per engine family.
GPU_LADDER = ("bf16", "fp8", "gptq-int8", "gptq-int4", "gptq-int3", "gptq-int2")
GGUF_LADDER = ("gguf-q8_0", "gguf-q6_k", "gguf-q5_k_m", "gguf-q4_k_m", "gguf-q3_k_m", "gguf-q2_k", "gguf-iq2_xxs")


@dataclass
class Plan:
    model: LoadedModel
    params: ParamCounts
    accelerator: Accelerator
    gpus: int
    precision: Precision
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
    performance: Any = None           # qfit.perf.PerfEstimate when the speed model is available

    @property
    def headroom_per_gpu(self) -> float:
        return self.budget_per_gpu - self.memory.per_gpu

    def to_dict(self) -> dict:
        spec = self.model.spec
        acc = self.accelerator
        perf = self.performance.to_dict() if self.performance is not None else None
        return {
            "model": {
                "name": spec.name, "hub_id": spec.hub_id, "source": self.model.kind, "architecture": spec.model_type,
                "attention_kind": spec.attention_kind, "layers": spec.layers, "hidden": spec.hidden,
                "heads": spec.heads, "kv_heads": spec.kv_heads, "head_dim": spec.head_dim, "vocab": spec.vocab,
                "experts": spec.moe.num_experts if spec.moe else None,
                "experts_per_token": spec.moe.top_k if spec.moe else None,
                "params_total": self.params.total, "params_active": self.params.active,
                "params_by_module": self.params.by_module,
            },
            "accelerator": {"name": acc.name, "key": acc.key, "count": self.gpus, "memory_gib": acc.memory_gib,
                            "usable_memory_gib": acc.usable_bytes / GIB, "bandwidth_gbps": acc.bandwidth_gbps},
            "precision": self.precision.name, "group_size": self.precision.group_size,
            "engine": self.engine.name, "context": self.context, "batch": self.batch, "kv_dtype": self.kv_dtype,
            "memory": {**self.memory.to_dict(), "budget_per_gpu_gib": self.budget_per_gpu / GIB,
                       "headroom_per_gpu_gib": self.headroom_per_gpu / GIB},
            "weights": self.weights.to_dict(),
            "fits": self.fits, "reason": self.reason, "max_context": self.max_context, "max_batch": self.max_batch,
            "suggestion": self.suggestion, "min_gpus": self.min_gpus,
            "performance": perf,
            "assumptions": list(self.assumptions),
            "error_band": (perf or {}).get("error_band") or {
                "memory_pct": 5, "basis": "weights exact from the recipe; runtime terms calibrated on "
                                         "../shared/reference/calibration memory rows (see README)"},
        }


# ----------------------------------------------------------------------------------------------------------------


def default_precision(model: LoadedModel) -> str:
    """What the checkpoint ships in: GGUF file type, quantization_config, else its float dtype."""
    if model.header and model.header.file_type:
        return model.header.file_type
    q = model.quantization_config or {}
    method = str(q.get("quant_method", "")).lower()
    if method in {"gptq", "awq"}:
        return f"{method}-int{q.get('bits', 4)}" if method == "gptq" else "awq-int4"
    if method in {"fp8", "mxfp4"}:
        return method
    return {"float16": "fp16", "float32": "fp32"}.get(model.spec.dtype, "bf16")


def choose_engine(name: str | None, precision: Precision, acc: Accelerator) -> EngineProfile:
    if name:
        engine = get_engine(name)
    elif precision.family == "gguf":
        engine = get_engine("llama.cpp")
    elif acc.vendor in {"apple", "cpu"}:  # vLLM/SGLang need a CUDA/ROCm GPU; transformers runs on MPS and CPU
        engine = get_engine("transformers")
    else:
        engine = get_engine("vllm")
    if precision.family == "gguf" and engine.name != "llama.cpp":
        raise QfitError(f"{precision.name} weights run on llama.cpp; pass --engine llama.cpp or a non-GGUF precision")
    if acc.vendor == "apple" and precision.family not in {"float", "gguf"}:
        raise QfitError(f"{precision.name} kernels do not run on Apple GPUs (MPS); use bf16 or a gguf-* precision")
    if engine.name == "llama.cpp" and precision.family != "gguf":
        raise QfitError(f"llama.cpp runs GGUF weights, not {precision.name}; use e.g. --precision gguf-q4_k_m")
    return engine


def backend_of(acc: Accelerator) -> str:
    return {"nvidia": "cuda", "amd": "rocm", "apple": "metal", "intel": "xpu", "cpu": "cpu"}.get(acc.vendor, "cuda")


def tp_problem(spec, engine: EngineProfile, gpus: int) -> str | None:
    """Tensor parallelism splits attention heads across GPUs: vLLM/SGLang refuse counts that do not divide them."""
    if gpus == 1 or not engine.tensor_parallel:
        return None
    if spec.heads % gpus:
        return f"{spec.heads} attention heads do not split across {gpus} GPUs (tensor parallel)"
    if not spec.mla and spec.kv_heads % gpus and gpus % spec.kv_heads:
        return f"{spec.kv_heads} KV heads do not split or replicate evenly across {gpus} GPUs"
    return None


@dataclass(frozen=True)
class _Ctx:
    """Everything fixed for one model x precision x accelerator x count x engine; memory() varies context/batch."""

    model: LoadedModel
    acc: Accelerator
    gpus: int
    precision: Precision
    engine: EngineProfile
    kv_dtype: str
    weights: WeightBytes
    weight_bytes: float
    exact_weights: bool                  # weight_bytes read from the checkpoint's own headers, not the recipe
    act_bytes: float
    overhead: float
    budget: float

    def memory(self, context: int, batch: int, prompt: int) -> MemoryBreakdown:
        spec = self.model.spec
        kv = kv_cache(spec, context, batch, self.kv_dtype, self.engine, self.gpus)
        act = activation_bytes(spec, self.engine, batch, prompt, self.gpus, self.act_bytes, self.acc.memory_gib)
        reserved = self.acc.usable_bytes * self.engine.memory_fraction if self.engine.memory_fraction else None
        return MemoryBreakdown(weights=self.weight_bytes, kv_cache=kv.total_bytes, activations=act,
                               overhead=self.overhead, gpus=self.gpus, kv_per_gpu=kv.per_gpu_bytes,
                               reserved_per_gpu=reserved, notes=kv.notes)

    def fits(self, context: int, batch: int, prompt: int) -> bool:
        return self.memory(context, batch, prompt).per_gpu <= self.budget


@dataclass(frozen=True)
class Weights:
    """A model's weights in one recipe: the recipe's bytes, and what memory counts (the checkpoint's own header bytes
    when the checkpoint already is in that format)."""

    recipe: WeightBytes
    total: float
    exact: bool


def weights_for(model: LoadedModel, precision: Precision) -> Weights:
    wb = weight_bytes(tensor_groups(model.spec), precision)
    exact = model.header is not None and default_precision(model) == precision.name and model.kind != "catalog"
    return Weights(wb, float(model.header.bytes if exact else wb.total), exact)


def _context(model: LoadedModel, acc: Accelerator, gpus: int, precision: Precision, engine: EngineProfile,
             kv_dtype: str | None, weights: Weights | None = None) -> _Ctx:
    """`weights` may be passed in by callers that size many configurations of one recipe (qfit size)."""
    w = weights or weights_for(model, precision)
    backend = backend_of(acc)
    overhead = engine.overhead_gib(backend) * GIB * gpus
    if gpus > 1:
        overhead += engine.tp_overhead_gib * GIB * gpus
    kv = parse_kv_dtype(kv_dtype or precision.kv_default)
    act_bytes = 4.0 if precision.name == "fp32" else 2.0
    budget = acc.usable_bytes * (engine.memory_fraction or 1.0)
    return _Ctx(model, acc, gpus, precision, engine, kv, w.recipe, w.total, w.exact, act_bytes, overhead, budget)


def _search_max(ok, lo: int, hi: int) -> int:
    """Largest n in [lo, hi] with ok(n), assuming ok is monotone (True then False); 0 when ok(lo) is False."""
    if not ok(lo):
        return 0
    if ok(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def _max_context_limit(spec) -> int:
    return int(spec.max_position_embeddings or 131072)


def _assumptions(ctx: _Ctx, kv_notes: tuple[str, ...]) -> list[str]:
    e, p, w = ctx.engine, ctx.precision, ctx.weights
    out = [f"engine {e.name}: {e.description}"]
    if e.note:
        out.append(e.note)
    if e.memory_fraction:
        out.append(f"{e.name} reserves {e.memory_fraction:.0%} of each GPU's memory and fills what weights, "
                   f"activations and overhead leave with KV cache")
    out.append("weights exact from the checkpoint's tensor headers" if ctx.exact_weights else
               f"weights computed from the {p.name} recipe: {w.bits_per_weight:.2f} bits/weight effective"
               + (f"; kept high precision: {', '.join(w.kept_high_precision)}" if w.kept_high_precision else ""))
    out.append(f"KV cache {ctx.kv_dtype}" + (f", allocated in blocks of {e.kv['block_tokens']} tokens"
                                            if e.kv.get("block_tokens", 1) > 1 else ""))
    out.extend(kv_notes)
    out.extend(w.notes)
    out.append(f"runtime overhead {ctx.overhead / ctx.gpus / GIB:.2f} GiB per GPU ({backend_of(ctx.acc)} context"
               + (", CUDA graphs" if e.name in {"vllm", "sglang"} else "")
               + (", tensor-parallel buffers" if ctx.gpus > 1 and e.tensor_parallel else "") + ")")
    if ctx.acc.usable_memory_fraction < 1:
        out.append(f"{ctx.acc.name}: unified memory, {ctx.acc.usable_memory_fraction:.0%} usable by the GPU")
    if ctx.model.spec.vision:
        out.append("vision tower estimated from vision_config (ViT blocks + patch embedding; projector not counted)")
    return out


def make_plan(model: str | LoadedModel, *, gpu: str | Accelerator, precision: str | None = None,
              engine: str | None = None, context: int | None = None, batch: int = 1, gpus: int = 1,
              kv_dtype: str | None = None, group_size: int | None = None, input_len: int | None = None,
              output_len: int | None = None, with_performance: bool = True, suggest: bool = True) -> Plan:
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    acc = gpu if isinstance(gpu, Accelerator) else get_accelerator(gpu)
    prec = parse_precision(precision or default_precision(loaded), group_size)
    eng = choose_engine(engine, prec, acc)
    spec = loaded.spec
    context = context or min(DEFAULT_CONTEXT, _max_context_limit(spec))
    prompt = input_len if input_len is not None else context
    ctx = _context(loaded, acc, gpus, prec, eng, kv_dtype)
    mem = ctx.memory(context, batch, prompt)
    problem = tp_problem(spec, eng, gpus)
    fits = problem is None and mem.per_gpu <= ctx.budget
    if problem:
        reason = problem
    elif fits:
        reason = f"{mem.per_gpu / GIB:.1f} of {ctx.budget / GIB:.1f} GiB per GPU"
    else:
        reason = f"needs {mem.per_gpu / GIB:.1f} GiB per GPU, {ctx.budget / GIB:.1f} GiB available"
    limit = _max_context_limit(spec)
    max_ctx = 0 if problem else _search_max(lambda c: ctx.fits(c, batch, min(prompt, c)), 1, limit)
    max_batch = 0 if problem else _search_max(lambda b: ctx.fits(context, b, prompt), 1, MAX_BATCH_SEARCH)
    plan = Plan(model=loaded, params=count_params(spec), accelerator=acc, gpus=gpus, precision=prec, engine=eng,
                context=context, batch=batch, kv_dtype=ctx.kv_dtype, weights=ctx.weights, memory=mem,
                budget_per_gpu=ctx.budget, fits=fits, reason=reason, max_context=max_ctx, max_batch=max_batch,
                assumptions=_assumptions(ctx, mem.notes))
    if gpus > acc.interconnect.max_gpus and eng.tensor_parallel:
        plan.assumptions.append(f"{gpus} GPUs exceed one {acc.name} scale-up domain "
                                f"({acc.interconnect.max_gpus}): tensor parallel would cross nodes")
    if not fits and suggest:
        plan.suggestion = suggest_alternative(loaded, acc, prec, eng, gpus, context, batch, prompt, kv_dtype)
    if with_performance:
        plan.performance = _performance(plan, prompt, output_len)
    return plan


def _performance(plan: Plan, prompt: int, output_len: int | None):
    try:
        from qfit.perf import estimate_performance
    except ImportError:
        return None
    return estimate_performance(
        plan.model.spec, tensor_groups(plan.model.spec), plan.weights, plan.precision, plan.accelerator,
        gpus=plan.gpus, engine=plan.engine.name, batch=plan.batch, input_len=prompt, context=plan.context,
        kv_dtype=plan.kv_dtype, output_len=output_len)


def suggest_alternative(loaded: LoadedModel, acc: Accelerator, prec: Precision, eng: EngineProfile, gpus: int,
                        context: int, batch: int, prompt: int, kv_dtype: str | None) -> str:
    """The smallest change that fits: more GPUs of this kind (same precision), or a lower precision on this count."""
    options = []
    n = min_gpus(loaded, acc, prec, eng, context, batch, prompt, kv_dtype, start=gpus + 1)
    if n:
        options.append(f"{n} x {acc.name} at {prec.name}")
    ladder = GGUF_LADDER if prec.family == "gguf" else GPU_LADDER
    start = ladder.index(prec.name) + 1 if prec.name in ladder else 0
    for name in ladder[start:]:
        p = parse_precision(name)
        if not tp_problem(loaded.spec, eng, gpus) and _context(loaded, acc, gpus, p, eng, kv_dtype).fits(
                context, batch, prompt):
            options.append(f"{gpus} x {acc.name} at {name}")
            break
    if not options:
        return f"nothing up to 64 x {acc.name} or down to {ladder[-1]} fits {context:,} tokens x {batch}"
    return "would fit: " + "; or ".join(options)


def min_gpus(loaded: LoadedModel, acc: Accelerator, prec: Precision, eng: EngineProfile, context: int, batch: int,
             prompt: int, kv_dtype: str | None, start: int = 1, limit: int = 64) -> int | None:
    """Fewest accelerators (tensor-parallel valid) that hold the workload, or None up to `limit`."""
    for n in range(start, limit + 1):
        if not tp_problem(loaded.spec, eng, n) and _context(loaded, acc, n, prec, eng, kv_dtype).fits(
                context, batch, prompt):
            return n
    return None


def curve_points(plans: list[Plan]) -> list:
    """Plans of one configuration at several batches as the speed model's CurvePoints (for tables and plots)."""
    from qfit.perf.estimate import CurvePoint

    return [CurvePoint(p.batch, p.performance.decode_tokens_per_s, p.performance.aggregate_tokens_per_s,
                       p.performance.tpot_s, p.performance.ttft_s, p.performance.bound, p.memory.per_gpu / GIB, p.fits)
            for p in plans if p.performance is not None]


def plan_matrix(model: str | LoadedModel, gpus_list: list[str], precisions: list[str], **kw) -> list[Plan]:
    """One plan per accelerator x precision (engine chosen per precision unless given)."""
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    accs = [get_accelerator(g) for g in gpus_list]
    precs = [parse_precision(p) for p in precisions]
    gs = kw.pop("group_size", None)
    plans = []
    for acc in accs:
        for p in precs:
            # --group-size applies to the GPTQ/AWQ rows of a matrix, not to formats with their own block layout
            kw["group_size"] = gs if p.family in {"gptq", "awq"} else None
            try:  # engine None: choose_engine picks per precision and device
                plan = make_plan(loaded, gpu=acc, precision=p.name, suggest=False, **kw)
            except QfitError:
                continue  # incompatible engine x precision pair (e.g. llama.cpp x gptq): not a matrix cell
            plan.min_gpus = plan.gpus if plan.fits else min_gpus(
                loaded, acc, plan.precision, plan.engine, plan.context, plan.batch,
                kw.get("input_len") or plan.context, kw.get("kv_dtype"), start=plan.gpus + 1)
            plans.append(plan)
    return plans
