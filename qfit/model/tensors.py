"""The contract between parameter counting (params.py) and weight formats (precision.py).

params.py describes a model as a list of TensorGroup: tensors of one role and shape that repeat `count` times
(e.g. every layer's q_proj, or every expert's down_proj). precision.py turns each group into bytes for a recipe,
deciding per role what a format quantizes and what it keeps in 16/32 bit. Keeping roles explicit is what lets a
GGUF Q4_K_M recipe bump attn_v/ffn_down to Q6_K, or GPTQ keep embeddings, lm_head and routers in 16 bit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BLOCK_PREFIX = re.compile(r"^(?:.*\.)?layers\.(?:\d+\.)?")

# Roles of 2-D weight matrices inside transformer blocks: what weight-only quantizers (GPTQ/AWQ/GGUF) compress.
LINEAR_ROLES = frozenset({
    "attn_q", "attn_k", "attn_v", "attn_o",          # standard / GQA attention (q may include a gate, see spec)
    "mla_q_a", "mla_q_b", "mla_kv_a", "mla_kv_b",    # DeepSeek multi-head latent attention projections
    "linear_attn_in", "linear_attn_out",              # Gated-DeltaNet / linear-attention in/out projections
    "mlp_gate", "mlp_up", "mlp_down",                 # dense MLP
    "expert_gate", "expert_up", "expert_down",        # routed experts
    "shared_gate", "shared_up", "shared_down",        # shared experts (always active)
})
# Roles every format keeps at high precision or treats specially.
EMBED_ROLES = frozenset({"embed", "lm_head"})
SMALL_ROLES = frozenset({
    "router",         # MoE gate: tiny and precision-sensitive, kept 16-bit by GPTQ/AWQ tools
    "shared_router",  # sigmoid gate of a shared expert (Qwen2-MoE style)
    "norm",           # RMSNorm/LayerNorm weights (and q/k norms)
    "bias",           # linear biases (qkv bias, expert biases)
    "conv",           # short causal conv of linear-attention layers
    "state_param",    # A_log, dt_bias, attention sinks and other per-head vectors
    "vision",         # a multimodal wrapper's vision tower, as one lump (kept 16-bit by every LLM quantizer)
})
ROLES = LINEAR_ROLES | EMBED_ROLES | SMALL_ROLES


@dataclass(frozen=True)
class TensorGroup:
    """`count` tensors of shape (rows, cols); `active` of them are read per decoded token (MoE: routed experts only).

    For linear roles rows = out_features and cols = in_features (quantization groups run along cols, as in GPTQ).
    For embed/lm_head rows = vocab and cols = hidden. 1-D tensors have cols = 1.
    `module` is a readable location, e.g. "layers.self_attn.q_proj" or "layers.mlp.experts.down_proj"; groups of
    multi-token-prediction layers start with "mtp." (stored in checkpoints, not loaded for plain decoding).

    `active` follows the convention of model cards ("30B-A3B"): embeddings count as active although a decode step only
    gathers one row of them; a bandwidth model should read embed rows, not the matrix (and read the embedding matrix as
    the head when embeddings are tied). The vision tower is not active during decoding.
    """

    module: str
    role: str
    rows: int
    cols: int
    count: int
    active: int

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown tensor role {self.role!r}")
        if min(self.rows, self.cols) <= 0 or self.count <= 0 or not 0 <= self.active <= self.count:
            raise ValueError(f"bad tensor group {self}")

    @property
    def numel(self) -> int:
        return self.rows * self.cols

    @property
    def params(self) -> int:
        return self.numel * self.count

    @property
    def active_params(self) -> int:
        return self.numel * self.active

    @property
    def is_linear(self) -> bool:
        return self.role in LINEAR_ROLES


def module_key(name: str) -> str:
    """Where a tensor sits inside a decoder block, the same for every layer and expert, which is what recipe patterns
    (`keep`, overrides) match: "model.layers.3.mlp.experts.7.down_proj.weight" (a checkpoint) and
    "layers.mlp.experts.down_proj" (a TensorGroup) are both "mlp.experts.down_proj". Outside the blocks the last
    component stays: "model.embed_tokens.weight" -> "embed_tokens", "lm_head" -> "lm_head"."""
    for suffix in (".weight", ".qweight", ".bias"):
        name = name.removesuffix(suffix)
    m = _BLOCK_PREFIX.match(name)
    name = name[m.end():] if m else name.rsplit(".", 1)[-1]
    return ".".join(p for p in name.split(".") if not p.isdigit())


_LAYER_INDEX = re.compile(r"^(?:.*\.)?layers\.(\d+)\.")


def layer_key(name: str) -> str | None:
    """module_key with the block's index kept, what per-layer recipe patterns ("layers.3.mlp.down_proj") match:
    "model.layers.3.mlp.experts.7.down_proj.weight" -> "layers.3.mlp.experts.down_proj" (the experts of a layer go
    together: a fused MoE kernel takes one config for all of them). None outside the blocks, and for a TensorGroup
    merged across layers ("layers.mlp.down_proj"), which no per-layer pattern can describe."""
    m = _LAYER_INDEX.match(name)
    return f"layers.{m.group(1)}.{module_key(name)}" if m else None
