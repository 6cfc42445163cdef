"""Per-module parameter counts of a ModelSpec, as TensorGroups (see tensors.py), and their totals.

Pure. Each block kind (standard/GQA attention, MLA, Gated-DeltaNet, dense MLP, routed + shared experts) emits the
tensors the released checkpoints store, so the totals match safetensors headers (tests check this within 0.1 %).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

from qfit.model.spec import ModelSpec
from qfit.model.tensors import TensorGroup

# (module, role, rows, cols, per-layer count, per-layer active count)
_Row = tuple[str, str, int, int, int, int]


@dataclass(frozen=True)
class ParamCounts:
    total: int                 # parameters an engine loads for plain decoding (no MTP layers)
    active: int                # parameters used per token (routed experts: top-k only), model-card convention
    checkpoint: int            # everything the released checkpoint stores (incl. MTP layers, vision tower)
    by_module: dict[str, int]  # embeddings / attention / mlp / experts / shared_experts / router / norms / ...

    def to_dict(self) -> dict:
        return {"params_total": self.total, "params_active": self.active, "params_checkpoint": self.checkpoint,
                "by_module": dict(self.by_module)}


def _attention(spec: ModelSpec, kind: str) -> Iterator[_Row]:
    h = spec.hidden
    if kind == "linear":
        la = spec.linear
        key, val = la.num_key_heads * la.key_head_dim, la.num_value_heads * la.value_head_dim
        yield ("linear_attn.in_proj_qkvz", "linear_attn_in", 2 * key + 2 * val, h, 1, 1)
        yield ("linear_attn.in_proj_ba", "linear_attn_in", 2 * la.num_value_heads, h, 1, 1)
        yield ("linear_attn.conv1d", "conv", 2 * key + val, la.conv_kernel, 1, 1)
        yield ("linear_attn.dt_bias+A_log", "state_param", 2 * la.num_value_heads, 1, 1, 1)
        yield ("linear_attn.norm", "norm", la.value_head_dim, 1, 1, 1)
        yield ("linear_attn.out_proj", "linear_attn_out", h, val, 1, 1)
        return
    if spec.mla:
        yield from _mla(spec)
        return
    q_out = spec.heads * spec.head_dim * (2 if spec.attn_output_gate else 1)
    kv_out = spec.kv_heads * spec.head_dim
    yield ("self_attn.q_proj", "attn_q", q_out, h, 1, 1)
    yield ("self_attn.k_proj", "attn_k", kv_out, h, 1, 1)
    yield ("self_attn.v_proj", "attn_v", kv_out, h, 1, 1)
    yield ("self_attn.o_proj", "attn_o", h, spec.heads * spec.head_dim, 1, 1)
    if spec.qkv_bias:
        yield ("self_attn.qkv_bias", "bias", q_out + 2 * kv_out, 1, 1, 1)
    if spec.o_bias:
        yield ("self_attn.o_bias", "bias", h, 1, 1, 1)
    if spec.qk_norm:
        yield ("self_attn.q_norm+k_norm", "norm", 2 * spec.head_dim, 1, 1, 1)
    if spec.attn_sinks:
        yield ("self_attn.sinks", "state_param", spec.heads, 1, 1, 1)


def _mla(spec: ModelSpec) -> Iterator[_Row]:
    m, h, n = spec.mla, spec.hidden, spec.heads
    qk = m.qk_nope_head_dim + m.qk_rope_head_dim
    if m.q_lora_rank:
        yield ("self_attn.q_a_proj", "mla_q_a", m.q_lora_rank, h, 1, 1)
        yield ("self_attn.q_a_layernorm", "norm", m.q_lora_rank, 1, 1, 1)
        yield ("self_attn.q_b_proj", "mla_q_b", n * qk, m.q_lora_rank, 1, 1)
    else:
        yield ("self_attn.q_proj", "attn_q", n * qk, h, 1, 1)
    yield ("self_attn.kv_a_proj_with_mqa", "mla_kv_a", m.kv_lora_rank + m.qk_rope_head_dim, h, 1, 1)
    yield ("self_attn.kv_a_layernorm", "norm", m.kv_lora_rank, 1, 1, 1)
    yield ("self_attn.kv_b_proj", "mla_kv_b", n * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank, 1, 1)
    yield ("self_attn.o_proj", "attn_o", h, n * m.v_head_dim, 1, 1)


def _mlp(spec: ModelSpec, inter: int, prefix: str, role: str, count: int, active: int) -> Iterator[_Row]:
    h = spec.hidden
    if spec.gated_mlp:
        yield (f"{prefix}.gate_proj", f"{role}_gate", inter, h, count, active)
    yield (f"{prefix}.up_proj", f"{role}_up", inter, h, count, active)
    yield (f"{prefix}.down_proj", f"{role}_down", h, inter, count, active)


def _ffn(spec: ModelSpec, layer: int) -> Iterator[_Row]:
    moe = spec.moe
    if moe is None or layer not in moe.moe_layers:
        yield from _mlp(spec, spec.intermediate, "mlp", "mlp", 1, 1)
        if spec.mlp_bias:
            yield ("mlp.biases", "bias", (2 if spec.gated_mlp else 1) * spec.intermediate + spec.hidden, 1, 1, 1)
        return
    e, k, h = moe.num_experts, moe.top_k, spec.hidden
    yield from _mlp(spec, moe.expert_intermediate, "mlp.experts", "expert", e, k)
    yield ("mlp.router", "router", e, h, 1, 1)
    if moe.router_bias:
        yield ("mlp.router.bias", "bias", e, 1, 1, 1)
    if moe.expert_bias:
        yield ("mlp.experts.biases", "bias", 2 * moe.expert_intermediate + h, 1, e, k)
    if moe.shared_experts:
        s = moe.shared_experts
        yield from _mlp(spec, moe.shared_intermediate, "mlp.shared_experts", "shared", s, s)
        if moe.shared_expert_gate:
            yield ("mlp.shared_expert_gate", "shared_router", 1, h, 1, 1)


def _layer(spec: ModelSpec, layer: int, kind: str) -> Iterator[_Row]:
    yield from _attention(spec, kind)
    yield from _ffn(spec, layer)
    yield ("layernorms", "norm", spec.norms_per_layer * spec.hidden, 1, 1, 1)


def _mtp(spec: ModelSpec) -> Iterator[_Row]:
    """Multi-token-prediction layers: one full decoder layer each plus the projection that mixes the next token's
    embedding with the hidden state (DeepSeek/GLM: eh_proj + enorm/hnorm, own embed/head copies; Qwen3.5: fc + norms)."""
    last = spec.layers - 1  # MTP layers copy the block type of the last layer (MoE where the model is MoE)
    h = spec.hidden
    for row in _layer(spec, last, "full"):
        yield row
    yield ("eh_proj", "mlp_up", h, 2 * h, 1, 1)
    yield ("enorm+hnorm+norm", "norm", 3 * h, 1, 1, 1)
    if spec.mtp_own_embeddings:
        yield ("embed_tokens", "embed", spec.vocab, h, 1, 0)
        yield ("shared_head", "lm_head", spec.vocab, h, 1, 0)


def tensor_groups(spec: ModelSpec, include_mtp: bool = False) -> list[TensorGroup]:
    """All tensors of the model, merged across layers into groups of equal role and shape."""
    return list(_tensor_groups(spec, include_mtp))


@lru_cache(maxsize=64)
def _tensor_groups(spec: ModelSpec, include_mtp: bool) -> tuple[TensorGroup, ...]:
    # memoised: a plan, its speed estimate and its matrix neighbours all ask for the same model's groups
    merged: "OrderedDict[tuple[str, str, int, int], list[int]]" = OrderedDict()

    def add(prefix: str, rows: Iterator[_Row]) -> None:
        for module, role, r, c, count, active in rows:
            key = (f"{prefix}{module}", role, r, c)
            slot = merged.setdefault(key, [0, 0])
            slot[0] += count
            slot[1] += active

    add("", iter([("embed_tokens", "embed", spec.vocab, spec.hidden, 1, 1)]))
    for i, kind in enumerate(spec.layer_types):
        add("layers.", _layer(spec, i, kind))
    add("", iter([("norm", "norm", spec.hidden, 1, 1, 1)]))
    if not spec.tied_embeddings:
        add("", iter([("lm_head", "lm_head", spec.vocab, spec.hidden, 1, 1)]))
    if spec.vision:
        add("", iter([("vision_tower", "vision", spec.vision.params, 1, 1, 0)]))
    if include_mtp:
        for _ in range(spec.mtp_layers):
            add("mtp.", _mtp(spec))
    return tuple(TensorGroup(m, role, r, c, cnt, act) for (m, role, r, c), (cnt, act) in merged.items())


def layer_groups(spec: ModelSpec) -> list[TensorGroup]:
    """tensor_groups with every block's tensors apart ("layers.3.self_attn.q_proj", experts of a layer merged): what
    a recipe with per-layer patterns is sized on. Same tensors, same totals as tensor_groups."""
    return list(_layer_groups(spec))


@lru_cache(maxsize=16)
def _layer_groups(spec: ModelSpec) -> tuple[TensorGroup, ...]:
    out = []
    for g in _tensor_groups(spec, False):
        if not g.module.startswith("layers."):
            out.append(g)
    merged: "OrderedDict[tuple[str, str, int, int], list[int]]" = OrderedDict()
    for i, kind in enumerate(spec.layer_types):
        for module, role, r, c, count, active in _layer(spec, i, kind):
            slot = merged.setdefault((f"layers.{i}.{module}", role, r, c), [0, 0])
            slot[0] += count
            slot[1] += active
    blocks = [TensorGroup(m, role, r, c, cnt, act) for (m, role, r, c), (cnt, act) in merged.items()]
    return tuple(out[:1] + blocks + out[1:])      # embeddings first, then the blocks, then norm / head / vision


_MODULE_OF_ROLE = {
    "embed": "embeddings", "lm_head": "lm_head", "norm": "norms", "router": "router", "shared_router": "router",
    "vision": "vision", "conv": "attention", "state_param": "attention", "bias": "biases",
}


def module_of(group: TensorGroup) -> str:
    if group.role in _MODULE_OF_ROLE:
        return _MODULE_OF_ROLE[group.role]
    prefix = group.role.split("_")[0]
    return {"attn": "attention", "mla": "attention", "linear": "attention", "mlp": "mlp",
            "expert": "experts", "shared": "shared_experts"}[prefix]


def count_params(spec: ModelSpec) -> ParamCounts:
    served = tensor_groups(spec)
    by_module: dict[str, int] = {}
    for g in served:
        by_module[module_of(g)] = by_module.get(module_of(g), 0) + g.params
    mtp = sum(g.params for g in tensor_groups(spec, include_mtp=True)) - sum(g.params for g in served)
    if mtp:
        by_module["mtp (not loaded)"] = mtp
    total = sum(g.params for g in served if g.role != "vision")
    vision = sum(g.params for g in served if g.role == "vision")
    return ParamCounts(
        total=total + vision,
        active=sum(g.active_params for g in served),
        checkpoint=total + vision + mtp,
        by_module=by_module,
    )
