"""Bytes of a model in a GGUF file type: map tensor groups to llama.cpp tensor names, split layer-dependent counts,
and sum ggml_nbytes per chosen type. What this equals: llama.cpp's llama_model_size() (the sum of tensor bytes that
llama-bench prints as "size"); the file adds the GGUF header, metadata and tokenizer (a few MB), not modelled here.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from qfit.model.tensors import TensorGroup
from qfit.precision.ggml import (
    FLOAT_TYPES,
    FTYPE_BASE,
    GGML_TYPES,
    IMATRIX_FTYPES,
    GgufModel,
    choose_type,
    tensor_nbytes,
)

# Our role -> llama.cpp tensor name stem used by llama_tensor_get_type's substring tests.
_KIND = {
    "attn_q": "attn_q", "attn_k": "attn_k", "attn_v": "attn_v", "attn_o": "attn_output",
    "mlp_gate": "ffn_gate", "mlp_up": "ffn_up", "mlp_down": "ffn_down",
    "expert_gate": "ffn_gate", "expert_up": "ffn_up", "expert_down": "ffn_down",          # ffn_*_exps
    "shared_gate": "ffn_gate", "shared_up": "ffn_up", "shared_down": "ffn_down",          # ffn_*_shexp
    "embed": "token_embd", "lm_head": "output",
    # attn_q_a/q_b/kv_a_mqa/kv_b (MLA) and linear-attention projections hit no special case: the base type.
    "mla_q_a": "other", "mla_q_b": "other", "mla_kv_a": "other", "mla_kv_b": "other",
    "linear_attn_in": "other", "linear_attn_out": "other",
}
# Order of ffn_down* tensors inside one block: llama.cpp sorts tensors by (layer, name), and
# "ffn_down.weight" < "ffn_down_exps.weight" < "ffn_down_shexp.weight".
_DOWN_ORDER = ("mlp_down", "expert_down", "shared_down")
_PER_LAYER = ("attn_q", "attn_k", "attn_v", "attn_o", "mla_q_a", "mla_q_b", "mla_kv_a", "mla_kv_b",
              "linear_attn_in", "linear_attn_out", "mlp_gate", "mlp_up", "mlp_down", "router",
              "shared_gate", "shared_up", "shared_down")


def infer_model(groups: Sequence[TensorGroup], ftype: str, n_layers: int | None = None) -> GgufModel:
    by_role = {}
    for g in groups:
        by_role.setdefault(g.role, []).append(g)
    n_layer = n_layers or max((g.count for g in groups if g.role in _PER_LAYER), default=1)
    q, k = by_role.get("attn_q"), by_role.get("attn_k")
    n_gqa = q[0].rows / k[0].rows if q and k else 1.0
    n_expert = by_role["router"][0].rows if "router" in by_role else 0
    n_wv = sum(g.count for g in groups if g.role in ("attn_v", "mla_kv_b"))
    return GgufModel(n_layer=n_layer, n_gqa=n_gqa, n_expert=n_expert, n_attention_wv=n_wv,
                     has_output="lm_head" in by_role, imatrix=ftype in IMATRIX_FTYPES, is_70b=n_layer == 80)


def _layers_of(g: TensorGroup, m: GgufModel, moe_layers: int) -> tuple[list[int], int]:
    """Block indices a per-layer group covers, and tensors per block (experts are one stacked tensor per block in
    GGUF while `count` counts each expert). MoE parts sit in the last blocks, dense MLPs of dense-first MoE models
    (DeepSeek first_k_dense_replace, GLM) in the first ones."""
    if g.role.startswith("expert_"):
        per = max(1, g.count // max(moe_layers, 1))
    else:
        per = max(1, -(-g.count // m.n_layer))
    span = g.count // per
    if g.role.startswith(("expert_", "shared_")):
        return list(range(m.n_layer - span, m.n_layer)), per
    return list(range(span)), per


def gguf_split(groups: Sequence[TensorGroup], ftype: str, n_layers: int | None = None
               ) -> tuple[list[tuple[TensorGroup, Counter]], list[str]]:
    """For each group, how many of its tensors (in units of `count`) land in each ggml type; plus notes."""
    m = infer_model(groups, ftype, n_layers)
    base = FTYPE_BASE[ftype]
    moe_layers = next((g.count for g in groups if g.role == "router"), m.n_layer)
    notes: list[str] = []
    counters: Counter = Counter()
    out: list[tuple[TensorGroup, Counter]] = []
    for g in sorted(groups, key=_order_key):
        split: Counter = Counter()
        if g.role not in _KIND or g.cols == 1:
            split["F32"] = g.count      # norms, biases, routers, convs, per-head params: F32 in every GGUF file
        elif base in FLOAT_TYPES:
            split[base] = g.count       # f32/f16/bf16 files: llama_tensor_get_type is not consulted
        else:
            split = _split_quantized(g, ftype, m, moe_layers, counters)
        if g.role in _KIND and base not in FLOAT_TYPES and _is_fallback(g, base):
            notes.append(f"{g.module}: row length {g.cols} is not a multiple of the {base} block "
                         f"({GGML_TYPES[base][0]}): llama.cpp falls back to {'/'.join(sorted(split))}")
        out.append((g, split))
    return out, notes


def _split_quantized(g: TensorGroup, ftype: str, m: GgufModel, moe_layers: int, counters: Counter) -> Counter:
    kind = _KIND[g.role]
    split: Counter = Counter()
    if kind in ("token_embd", "output"):
        split[choose_type(ftype, m, kind, g.cols, 0, -1, False)] = g.count
        return split
    layers, per = _layers_of(g, m, moe_layers)
    for layer in layers:
        # llama.cpp keeps one running counter per name stem (i_attention_wv, i_ffn_down, ...); layer_info() uses
        # it as the block index for dense models and parses "blk.N." for MoE models.
        counter = counters[kind]
        index = counter if m.n_expert <= 1 else layer
        split[choose_type(ftype, m, kind, g.cols, counter, index, g.role.startswith("expert_"))] += per
        counters[kind] += 1
    return split


def _order_key(g: TensorGroup) -> tuple[int, str]:
    # ffn_down counters must see dense, expert, shared tensors in llama.cpp's order; other roles do not interact.
    return (_DOWN_ORDER.index(g.role) if g.role in _DOWN_ORDER else -1, g.role)


def _is_fallback(g: TensorGroup, base: str) -> bool:
    return g.cols % GGML_TYPES[base][0] != 0


def gguf_group_bytes(g: TensorGroup, split: Counter) -> tuple[int, int]:
    """(total, active) bytes of one group given its type split. Active scales each type's share by active/count:
    every block stores its experts in one type, so the routed fraction is the same in each type."""
    total = active = 0
    for t, n in split.items():
        b = tensor_nbytes(t, g.rows, g.cols) * n
        total += b
        active += b * g.active // g.count
    return total, active
