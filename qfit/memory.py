"""Memory model (pure): KV cache per attention kind, recurrent state, activations and engine overhead.

Totals are across all GPUs (the JSON contract); per-GPU figures divide by the count after accounting for what tensor
parallelism replicates (KV heads when GPUs > KV heads, the MLA latent on every rank).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qfit.errors import QfitError
from qfit.model.spec import ModelSpec

if TYPE_CHECKING:    # the engine registry reads memory's KV dtype table: a runtime import would be circular
    from qfit.engines import EngineProfile

GIB = 2**30
# Bytes per cached element. q8_0/q4_0 are llama.cpp's block formats (34 bytes / 32 values, 18 / 32).
KV_DTYPES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0,
             "q8_0": 34 / 32, "q4_0": 18 / 32}
_KV_ALIASES = {"f16": "fp16", "float16": "fp16", "bfloat16": "bf16", "f32": "fp32", "float32": "fp32",
               "auto": "bf16", "int8": "q8_0", "fp8-e4m3": "fp8_e4m3", "fp8-e5m2": "fp8_e5m2"}
# Recurrent (Gated DeltaNet) state is kept in fp32 by the reference kernels (mamba_ssm_dtype float32).
STATE_BYTES = 4


def parse_kv_dtype(name: str) -> str:
    key = (name or "").strip().lower()
    key = _KV_ALIASES.get(key, key)
    if key not in KV_DTYPES:
        raise QfitError(f"unknown KV cache dtype {name!r} (known: fp16, bf16, fp8, q8_0, q4_0, fp32)")
    return key


@dataclass(frozen=True)
class KVCache:
    """KV cache and recurrent state for `batch` sequences of `context` tokens."""

    total_bytes: float          # all GPUs together (replicas counted)
    per_gpu_bytes: float
    bytes_per_token: float      # per sequence, one GPU's view summed over GPUs, at full context
    state_bytes: float          # recurrent state, all sequences, all GPUs
    notes: tuple[str, ...]


def _kv_layer_bytes(spec: ModelSpec, engine: EngineProfile, elem: float, tp: int) -> tuple[float, float, str | None]:
    """(bytes per token per full/sliding layer summed over GPUs, per GPU, note)."""
    if spec.mla:
        m = spec.mla
        if engine.kv.get("mla") == "expanded":
            per = spec.heads * (m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim) * elem
            return per, per / tp, "MLA cached expanded per head (transformers modeling code)"
        latent = (m.kv_lora_rank + m.qk_rope_head_dim) * elem
        note = "MLA latent replicated on every tensor-parallel rank" if tp > 1 else None
        return latent * tp, latent, note
    if tp > 1 and engine.tensor_parallel:
        heads_per_gpu = math.ceil(spec.kv_heads / tp)
        note = (f"{spec.kv_heads} KV heads < {tp} GPUs: KV heads replicated" if tp > spec.kv_heads else None)
        per_gpu = 2 * heads_per_gpu * spec.head_dim * elem
        return per_gpu * tp, per_gpu, note
    per = 2 * spec.kv_heads * spec.head_dim * elem
    return per, per / tp, None


def recurrent_state_bytes(spec: ModelSpec, batch: int, elem: float) -> float:
    """Gated-DeltaNet layers: a (key_dim x value_dim) state per value head in fp32 + the short conv's window."""
    if not spec.linear:
        return 0.0
    la = spec.linear
    ssm = la.num_value_heads * la.key_head_dim * la.value_head_dim * STATE_BYTES
    conv_channels = 2 * la.num_key_heads * la.key_head_dim + la.num_value_heads * la.value_head_dim
    conv = conv_channels * (la.conv_kernel - 1) * max(elem, 2.0)
    return spec.count("linear") * (ssm + conv) * batch


def kv_cache(spec: ModelSpec, context: int, batch: int, kv_dtype: str, engine: EngineProfile, gpus: int) -> KVCache:
    elem = KV_DTYPES[kv_dtype]
    tp = gpus if engine.tensor_parallel else 1
    layer_total, layer_gpu, note = _kv_layer_bytes(spec, engine, elem, tp)
    block = int(engine.kv.get("block_tokens", 1))
    padded = math.ceil(context / block) * block
    full_layers = spec.count("full")
    sliding_layers = spec.count("sliding")
    window = min(padded, math.ceil((spec.sliding_window or 0) / block) * block + block) if sliding_layers else 0
    if engine.kv.get("sliding") != "capped":
        window = padded
    tokens_total = full_layers * padded + sliding_layers * window
    kv_total = layer_total * tokens_total * batch
    kv_gpu = layer_gpu * tokens_total * batch
    state = recurrent_state_bytes(spec, batch, elem)
    notes = tuple(n for n in (note,) if n)
    if sliding_layers:
        notes += (f"{sliding_layers} sliding-window layers cache at most {window:,} tokens",)
    if state:
        notes += (f"{spec.count('linear')} linear-attention layers hold a fixed recurrent state per sequence",)
    if engine.multi_gpu == "layer_split" and gpus > 1:
        kv_gpu = kv_total / gpus
    return KVCache(total_bytes=kv_total + state, per_gpu_bytes=kv_gpu + state / gpus,
                   bytes_per_token=layer_total * (full_layers + (sliding_layers if context <= window else 0)),
                   state_bytes=state, notes=notes)


def _ffn_width(spec: ModelSpec) -> int:
    """Intermediate activations per token of the widest MLP block: routed experts count top-k times."""
    widths = [spec.intermediate] if spec.moe is None or len(spec.moe.moe_layers) < spec.layers else []
    if spec.moe:
        m = spec.moe
        widths.append(m.top_k * m.expert_intermediate + m.shared_experts * m.shared_intermediate)
    return max(widths)


def batch_tier(activation: dict, device_gib: float, device_name: str = "") -> dict | None:
    """The engine's device-dependent batch defaults (vLLM: max_num_batched_tokens and max_num_seqs by GPU memory):
    the first tier whose memory the device has and whose exceptions do not name it."""
    name = device_name.lower()
    for tier in activation.get("batch_tiers") or ():
        if device_gib >= tier["min_gib"] and not any(x in name for x in tier.get("except", ())):
            return tier
    return None


def activation_bytes(spec: ModelSpec, engine: EngineProfile, batch: int, prompt_tokens: int, gpus: int,
                     act_bytes: float, device_gib: float, device_name: str = "") -> float:
    """Peak transient memory of one forward pass over the prefill chunk, all GPUs together."""
    a = engine.activation
    tier = batch_tier(a, device_gib, device_name)
    logits_rows = tier["max_seqs"] if tier else a["logits_tokens"]
    if tier:  # vLLM: its profiling run at the device's default max_num_batched_tokens
        tokens = tier["profile_tokens"]
    elif "profile_tokens" in a:  # SGLang: fixed profiling chunk, independent of the request
        small = device_gib < a.get("small_gpu_gib", 0)
        tokens = a["profile_tokens_small_gpu"] if small else a["profile_tokens"]
    elif "ubatch_tokens" in a:  # llama.cpp: one micro-batch
        tokens = min(a["ubatch_tokens"], batch * prompt_tokens)
        act_bytes = a.get("activation_bytes", act_bytes)
    else:  # transformers: the whole prompt of every sequence at once
        tokens = batch * prompt_tokens
    tp = gpus if engine.tensor_parallel else 1
    per_token = (a["mlp_intermediate_factor"] * _ffn_width(spec) / tp + a["hidden_factor"] * spec.hidden) * act_bytes
    logits = min(logits_rows, tokens) * spec.vocab * a["logits_bytes"]
    if "ubatch_tokens" in a:
        # ggml's graph allocator reuses buffers: the peak is the largest live set, dominated by logits or MLP.
        per_gpu = max(per_token * tokens, logits)
    else:
        per_gpu = per_token * tokens + logits
    per_gpu += a.get("fixed_gib", 0.0) * GIB
    return per_gpu * (gpus if engine.tensor_parallel else 1)


@dataclass(frozen=True)
class MemoryBreakdown:
    weights: float
    kv_cache: float
    activations: float
    overhead: float
    gpus: int
    kv_per_gpu: float
    reserved_per_gpu: float | None = None   # what the engine grabs up front (vLLM/SGLang memory fraction)
    notes: tuple[str, ...] = ()             # how the KV cache was sized (sliding caps, replication, state)

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.activations + self.overhead

    @property
    def per_gpu(self) -> float:
        return (self.weights + self.activations + self.overhead) / self.gpus + self.kv_per_gpu

    @property
    def allocated(self) -> float:
        """What the framework allocator sees (torch.cuda.max_memory_allocated): no CUDA context or graph pool."""
        return self.weights + self.kv_cache + self.activations

    def to_dict(self) -> dict:
        return {
            "weights_gib": self.weights / GIB, "kv_cache_gib": self.kv_cache / GIB,
            "activations_gib": self.activations / GIB, "overhead_gib": self.overhead / GIB,
            "total_gib": self.total / GIB, "per_gpu_gib": self.per_gpu / GIB,
            "allocator_peak_gib": self.allocated / GIB,
            "reserved_per_gpu_gib": None if self.reserved_per_gpu is None else self.reserved_per_gpu / GIB,
        }
