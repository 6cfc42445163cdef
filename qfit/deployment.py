"""Deployment: one model in one recipe on `gpus` x one accelerator under one engine, and the one memory formula
`qfit plan` and `qfit size` share (per-GPU memory as context and batch vary, max context, max batch).

Pure: takes resolved objects (qfit.resolve), reads nothing. The KV cache is exactly linear in the batch (KV per token
x tokens x batch, plus a per-sequence recurrent state), so one sequence's is computed once per context and scaled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from qfit.engines import EngineProfile
from qfit.errors import QfitError
from qfit.hardware import Accelerator
from qfit.memory import (
    GIB,
    KVCache,
    MemoryBreakdown,
    activation_bytes,
    kv_cache,
    parse_kv_dtype,
)
from qfit.model.params import layer_groups, tensor_groups
from qfit.model.sources import LoadedModel
from qfit.model.spec import ModelSpec
from qfit.precision import Recipe, WeightBytes, weight_bytes

MAX_BATCH_SEARCH = 65536


@dataclass(frozen=True)
class Weights:
    """A model's weights in one recipe: the recipe's bytes, and what memory counts (the checkpoint's own header bytes
    when the checkpoint already is in that format). `vision_left_out`: bytes of a vision tower not counted (GGUF keeps
    it in a separate mmproj file; `--text-only` for the other formats)."""

    recipe: WeightBytes
    total: float
    exact: bool
    vision_left_out: float = 0.0


def weights_for(model: LoadedModel, recipe: Recipe, text_only: bool = False) -> Weights:
    # a recipe with per-layer widths (a mixed-precision checkpoint) is sized block by block
    groups = layer_groups(model.spec) if recipe.per_layer else tensor_groups(model.spec)
    wb = weight_bytes(groups, recipe)
    exact = model.header is not None and model.native_precision == recipe.name and model.kind != "catalog"
    total = float(model.header.bytes if exact else wb.total)
    if model.spec.vision is None or not (text_only or recipe.family == "gguf"):
        return Weights(wb, total, exact)
    lm = weight_bytes(tuple(g for g in groups if g.role != "vision"), recipe)
    tower = float(wb.total - lm.total)
    # a GGUF file's own header bytes already hold the language model only
    return Weights(lm, total - tower if exact and recipe.family != "gguf" else (total if exact else lm.total), exact,
                   tower)


def tp_problem(spec: ModelSpec, engine: EngineProfile, gpus: int) -> str | None:
    """Tensor parallelism splits attention heads across GPUs: vLLM/SGLang refuse counts that do not divide them."""
    if gpus == 1 or not engine.tensor_parallel:
        return None
    if spec.heads % gpus:
        return f"{spec.heads} attention heads do not split across {gpus} GPUs (tensor parallel)"
    if not spec.mla and spec.kv_heads % gpus and gpus % spec.kv_heads:
        return f"{spec.kv_heads} KV heads do not split or replicate evenly across {gpus} GPUs"
    return None


def search_max(ok, lo: int, hi: int) -> int:
    """Largest n in [lo, hi] with ok(n), assuming ok is monotone (True then False); 0 when ok(lo) is False."""
    if not ok(lo):
        return 0
    if ok(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


@dataclass(frozen=True)
class KVPool:
    bytes_per_gpu: float        # what the engine leaves for KV blocks (and recurrent state) on one GPU
    tokens: int                 # that pool in tokens of KV (attention layers; a sequence's state not counted)
    max_concurrency: float      # sequences of the plan's context it holds, state included
    state_bytes_per_seq: float  # recurrent state one sequence holds on one GPU (hybrid models; 0 otherwise)

    def to_dict(self) -> dict:
        return {"pool_per_gpu_gib": self.bytes_per_gpu / GIB, "capacity_tokens": self.tokens,
                "max_concurrency": round(self.max_concurrency, 2),
                "state_per_sequence_mib": self.state_bytes_per_seq / 2**20}


@dataclass(frozen=True, eq=False)
class Deployment:
    model: LoadedModel
    acc: Accelerator
    gpus: int
    recipe: Recipe
    engine: EngineProfile
    kv_dtype: str
    weights: Weights
    act_bytes: float            # activation element width (fp32 models run fp32 activations)
    overhead: float             # runtime overhead, all GPUs together
    budget: float               # bytes per GPU the engine may fill
    pp: int = 1                 # pipeline stages (one per node across nodes): gpus = tensor-parallel size x pp
    gpu_layers: int | None = None   # llama.cpp -ngl N with --ram: only these layers' KV is on the GPUs (None: all)
    _kv: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, model: LoadedModel, acc: Accelerator, gpus: int, recipe: Recipe, engine: EngineProfile,
              kv_dtype: str | None = None, weights: Weights | None = None, pp: int = 1) -> Deployment:
        """`weights` may be passed in by callers that size many configurations of one recipe (qfit size); `pp`
        pipeline stages split the layers (and with them weights and KV) of `gpus // pp` tensor-parallel GPUs each."""
        if pp < 1 or gpus % pp:
            raise QfitError(f"{gpus} GPUs do not split into {pp} pipeline stages")
        overhead = engine.overhead_gib(acc.backend) * GIB * gpus
        if gpus > 1:
            overhead += engine.tp_overhead_gib * GIB * gpus
        return cls(model, acc, gpus, recipe, engine, parse_kv_dtype(kv_dtype or recipe.kv_default),
                   weights or weights_for(model, recipe), 4.0 if recipe.name == "fp32" else 2.0, overhead,
                   acc.usable_bytes * (engine.memory_fraction or 1.0), pp)

    @property
    def tp(self) -> int:
        """GPUs of one pipeline stage, which split every layer of the stage (tensor parallel)."""
        return self.gpus // self.pp

    @property
    def tp_problem(self) -> str | None:
        return tp_problem(self.model.spec, self.engine, self.tp)

    def kv_one(self, context: int) -> KVCache:
        """KV cache and recurrent state of one sequence at `context` tokens (memoised per context). A pipeline stage
        holds the KV of its own layers only: the largest stage has ceil(layers / pp) of them."""
        if context not in self._kv:
            kv = kv_cache(self.model.spec, context, 1, self.kv_dtype, self.engine, self.tp)
            if self.gpu_layers is not None:   # llama.cpp keeps the KV of CPU-side layers in host memory
                layers = self.model.spec.layers
                kv = replace(kv, per_gpu_bytes=kv.per_gpu_bytes * self.gpu_layers / layers, notes=kv.notes + (
                    f"-ngl {self.gpu_layers}: the GPUs hold the KV of their {self.gpu_layers} of {layers} layers",))
            if self.pp > 1:
                layers = self.model.spec.layers
                share = math.ceil(layers / self.pp) / layers
                kv = replace(kv, per_gpu_bytes=kv.per_gpu_bytes * share, notes=kv.notes + (
                    f"pipeline parallel: {self.pp} stages of up to {math.ceil(layers / self.pp)} of {layers} layers; "
                    "each GPU holds its stage's KV and weights (embedding and LM head counted as evenly split)",))
            self._kv[context] = kv
        return self._kv[context]

    def memory(self, context: int, batch: int, prompt: int) -> MemoryBreakdown:
        kv = self.kv_one(context)
        # every pipeline stage runs the whole micro-batch through its layers: the TP group's peak, on each stage
        act = self.pp * activation_bytes(self.model.spec, self.engine, batch, prompt, self.tp, self.act_bytes,
                                         self.acc.memory_gib, f"{self.acc.key} {self.acc.name}")
        reserved = self.acc.usable_bytes * self.engine.memory_fraction if self.engine.memory_fraction else None
        return MemoryBreakdown(weights=self.weights.total, kv_cache=kv.total_bytes * batch, activations=act,
                               overhead=self.overhead, gpus=self.gpus, kv_per_gpu=kv.per_gpu_bytes * batch,
                               reserved_per_gpu=reserved, notes=kv.notes)

    def per_gpu(self, context: int, batch: int, prompt: int) -> float:
        return self.memory(context, batch, prompt).per_gpu

    def fits(self, context: int, batch: int, prompt: int) -> bool:
        return self.tp_problem is None and self.per_gpu(context, batch, prompt) <= self.budget

    def kv_pool(self, context: int, prompt: int) -> KVPool:
        """The KV pool one GPU holds beside weights, activations and overhead, in bytes and in tokens, and how many
        sequences of `context` tokens it holds: the figures vLLM logs at start-up ("GPU KV cache size: N tokens",
        "Maximum concurrency for L tokens per request: X"), so a plan can be checked against a server log."""
        fixed = self.memory(context, 1, prompt)
        pool = max(0.0, self.budget - (fixed.per_gpu - fixed.kv_per_gpu))
        kv = self.kv_one(context)
        state = kv.state_bytes / self.gpus    # TP ranks split the state's heads, stages its layers
        per_token = (kv.per_gpu_bytes - state) / context
        return KVPool(pool, int(pool // per_token) if per_token > 0 else 0,
                      pool / kv.per_gpu_bytes if kv.per_gpu_bytes > 0 else 0.0, state)

    def max_context(self, batch: int, prompt: int, limit: int) -> int:
        return search_max(lambda c: self.fits(c, batch, min(prompt, c)), 1, limit)

    def max_batch(self, context: int, prompt: int, cap: int = MAX_BATCH_SEARCH) -> int:
        """Most sequences that fit (up to `cap`): predicted from the linear KV term, then confirmed by search."""
        ok = lambda b: self.fits(context, b, prompt)  # noqa: E731
        if not ok(1):
            return 0
        m1 = self.per_gpu(context, 1, prompt)
        slope = self.per_gpu(context, 2, prompt) - m1
        est = cap if slope <= 0 else max(1, min(cap, 1 + math.floor((self.budget - m1) / slope)))
        if ok(est):
            return est if est == cap or not ok(est + 1) else search_max(ok, est, cap)
        return search_max(ok, 1, est)
