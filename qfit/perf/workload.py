"""Pure: what one decode step or one prefill chunk has to move and compute, from the model's shape alone.

Nothing here knows about engines or devices. The numbers are counts (bytes, FLOPs) that roofline.py turns into time.
"""

from __future__ import annotations

from dataclasses import dataclass

from qfit.memory import KV_DTYPES, STATE_BYTES, parse_kv_dtype
from qfit.model.spec import ModelSpec
from qfit.model.tensors import TensorGroup
from qfit.precision.weights import EXPERT_ROLES, WeightBytes


def kv_dtype_bytes(kv_dtype: str | None) -> float:
    """Bytes per cached element: the memory model's table, so memory and speed never disagree on KV size."""
    return KV_DTYPES[parse_kv_dtype((kv_dtype or "fp16").lower().removeprefix("gguf-"))]


@dataclass(frozen=True)
class Shape:
    """The attention-relevant shape of a model, one entry per layer kind: counts of layers of each kind."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    full_layers: int
    sliding_layers: int
    sliding_window: int
    mla_layers: int
    mla_latent: int            # kv_lora_rank + qk_rope_head_dim: what one MLA layer caches per token
    mla_qk_dim: int            # per-head q.k dim in the absorbed form (kv_lora_rank + rope dim)
    mla_v_dim: int             # per-head value dim in the absorbed form (kv_lora_rank)
    linear_layers: int
    linear_state_elems: int    # per linear-attention layer and sequence
    num_experts: int
    top_k: int
    moe_layers: int = 0        # layers whose MLP is routed (an engine's per-expert loop runs in each)
    shared_experts: int = 0    # always-on experts per routed layer


def shape_of(spec: ModelSpec) -> Shape:
    count = {k: spec.count(k) for k in ("full", "sliding", "linear")}
    mla_layers, lora, rope = 0, 0, 0
    if spec.mla:   # ModelSpec marks MLA layers "full": they cache the latent, not per-head K and V
        mla_layers, count["full"] = count["full"], 0
        lora, rope = spec.mla.kv_lora_rank, spec.mla.qk_rope_head_dim
    lin = spec.linear
    state = lin.num_value_heads * lin.key_head_dim * lin.value_head_dim if lin else 0
    experts, top_k = (spec.moe.num_experts, spec.moe.top_k) if spec.moe else (0, 0)
    return Shape(spec.layers, spec.hidden, spec.heads, spec.kv_heads, spec.head_dim, count["full"], count["sliding"],
                 spec.sliding_window or 0, mla_layers, lora + rope, lora + rope, lora, count["linear"], state, experts,
                 top_k, len(spec.moe.moe_layers) if spec.moe else 0, spec.moe.shared_experts if spec.moe else 0)


def linear_calls(shape: Shape, every_expert: bool) -> int:
    """Linear-module calls of one forward pass: 4 attention projections per layer (q, k, v, o; an approximation for
    MLA and linear-attention layers), 3 per dense MLP, and per routed layer 3 per expert run: top-k routed (or every
    expert, when the engine loops over all of them) plus the shared experts."""
    routed = shape.num_experts if every_expert else shape.top_k
    dense = shape.layers - shape.moe_layers
    return 4 * shape.layers + 3 * dense + 3 * shape.moe_layers * (routed + shape.shared_experts)


def kv_tokens_seen(shape: Shape, context: int) -> dict[str, int]:
    """Tokens each layer kind attends over at this context (sliding layers stop at the window)."""
    window = min(context, shape.sliding_window) if shape.sliding_window else context
    return {"full": context, "sliding": window, "mla": context}


def kv_bytes_read(shape: Shape, context: int, kv_bytes: float, shard: int = 1) -> float:
    """KV cache bytes one sequence's decode step reads at this context, per GPU when KV heads are split `shard` ways."""
    seen = kv_tokens_seen(shape, context)
    per_tok_std = 2 * shape.kv_heads * shape.head_dim * kv_bytes / shard
    std = (shape.full_layers * seen["full"] + shape.sliding_layers * seen["sliding"]) * per_tok_std
    mla = shape.mla_layers * seen["mla"] * shape.mla_latent * kv_bytes   # latent is replicated across TP ranks
    return std + mla


def state_bytes_rw(shape: Shape, shard: int = 1) -> float:
    """Recurrent state read and written once per step per sequence (linear-attention layers)."""
    return 2 * shape.linear_layers * shape.linear_state_elems * STATE_BYTES / shard


def attention_flops(shape: Shape, context: int) -> float:
    """FLOPs of score and value products for ONE new token attending over `context` cached tokens."""
    seen = kv_tokens_seen(shape, context)
    std = 4 * shape.heads * shape.head_dim * (shape.full_layers * seen["full"] + shape.sliding_layers * seen["sliding"])
    mla = 2 * shape.heads * (shape.mla_qk_dim + shape.mla_v_dim) * shape.mla_layers * seen["mla"]
    lin = 4 * shape.linear_layers * shape.linear_state_elems   # state update + readout, independent of context
    return std + mla + lin


def prefill_attention_flops(shape: Shape, start: int, tokens: int) -> float:
    """Attention FLOPs of a causal chunk of `tokens` new tokens appended after `start` cached tokens.

    Token i of the chunk attends over start + i + 1 positions; the sum is closed-form (no loop) so long prompts stay cheap.
    Sliding layers see at most the window: approximated by min(mean span, window).
    """
    mean_span = start + (tokens + 1) / 2
    full = 4 * shape.heads * shape.head_dim * tokens * mean_span
    win = shape.sliding_window or mean_span
    sliding = 4 * shape.heads * shape.head_dim * tokens * min(mean_span, win)
    mla = 2 * shape.heads * (shape.mla_qk_dim + shape.mla_v_dim) * tokens * mean_span
    lin = 4 * shape.linear_state_elems * tokens
    return (shape.full_layers * full + shape.sliding_layers * sliding + shape.mla_layers * mla
            + shape.linear_layers * lin)


def expert_coverage(num_experts: int, top_k: int, tokens: int) -> float:
    """Expected fraction of a layer's routed experts hit by `tokens` tokens routed uniformly and independently.

    1 - (1 - k/E)^n: k/E at one token, -> 1 as the batch grows. Uniform routing is the optimistic-coverage assumption
    (real routers are skewed, so fewer distinct experts are read: this errs towards more bytes, i.e. slower).
    """
    if num_experts <= 0 or top_k <= 0:
        return 1.0
    return 1.0 - (1.0 - top_k / num_experts) ** max(tokens, 1)


@dataclass(frozen=True)
class WeightTraffic:
    dense_bytes: float          # read once per step whatever the batch (attention, shared experts, lm_head, ...)
    expert_bytes_total: float   # all routed experts of all layers, stored bytes
    active_params: float        # parameters multiplied per token (2 FLOPs each)
    num_experts: int
    top_k: int

    def bytes_for(self, tokens: int) -> float:
        return self.dense_bytes + self.expert_bytes_total * expert_coverage(self.num_experts, self.top_k, tokens)


def weight_traffic(groups: list[TensorGroup], weights: WeightBytes, shape: Shape) -> WeightTraffic:
    """Split the batch-1 active bytes into a part every step reads and a routed-expert part that grows with batch."""
    by_role = dict(weights.by_role)
    active_bytes = float(weights.active)
    expert_total = float(sum(v for role, v in by_role.items() if role in EXPERT_ROLES))
    experts, top_k = shape.num_experts, shape.top_k
    if expert_total and experts:
        dense = max(active_bytes - expert_total * top_k / experts, 0.0)
    else:
        dense, expert_total = active_bytes, 0.0
    # An untied embedding table is a lookup: a decode step reads one row of it, not the table.
    if any(g.role == "lm_head" for g in groups) and by_role.get("embed"):
        embed_rows = max((g.rows for g in groups if g.role == "embed"), default=1)
        dense = max(dense - by_role["embed"] * (1 - 1 / embed_rows), 0.0)
    # The embedding is a lookup (no FLOPs); with tied embeddings it doubles as lm_head, which is a full matmul.
    active_params = float(sum(g.active_params for g in groups if g.role != "embed"))
    if not any(g.role == "lm_head" for g in groups):
        active_params += float(sum(g.numel for g in groups if g.role == "embed"))
    return WeightTraffic(dense, expert_total, active_params, experts, top_k)
