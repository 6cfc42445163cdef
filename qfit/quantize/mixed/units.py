"""Allocation units of a model and their exact bytes at each width, from the planner's own tensor groups and byte
formula (qfit.precision.weight_bytes), so the allocation's bytes are the bytes `qfit plan` predicts and
`qfit quantize` writes. Also the Recipe an allocation becomes. Pure: no torch.

A unit is one (layer, fused group) on per-layer groups (qfit.model.params.layer_groups: "layers.3.self_attn.q+k+v"),
one module type across all layers on merged groups (tensor_groups: "self_attn.q+k+v").
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from qfit.errors import QfitError
from qfit.model.tensors import LINEAR_ROLES, TensorGroup, layer_key, module_key
from qfit.precision import GPTQ_BITS, Override, Recipe, gptq_recipe, weight_bytes
from qfit.quantize.mixed.allocate import KEEP, Allocation, Option, Unit

WIDTHS = GPTQ_BITS + (KEEP,)

# Modules a serving engine runs as one fused GEMM, so one quantization config must cover all of them (vLLM's
# packed_modules_mapping for Llama/Qwen/Mistral: qkv_proj = q/k/v_proj, gate_up_proj = gate/up_proj; vLLM refuses a
# fused layer whose shards have different quantization settings).
FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def _unit_name(key: str) -> str:
    parent, _, leaf = key.rpartition(".")
    for fused in FUSED:
        if leaf in fused:
            return f"{parent}.{'+'.join(f.removesuffix('_proj') for f in fused)}" if parent else "+".join(fused)
    return key


def _key(module: str) -> str:
    """The layer key of a per-layer group, else the module key (what recipe patterns match)."""
    return layer_key(module) or module_key(module)


def unit_keys(groups: Sequence[TensorGroup]) -> dict[str, tuple[str, ...]]:
    """unit name -> keys of the quantizable linears (layer keys on per-layer groups, module keys on merged ones),
    fused groups together, in model order."""
    units: dict[str, list[str]] = {}
    for g in groups:
        if g.role in LINEAR_ROLES:
            key = _key(g.module)
            units.setdefault(_unit_name(key), [])
            if key not in units[_unit_name(key)]:
                units[_unit_name(key)].append(key)
    if not units:
        raise QfitError("the model has no quantizable linear layers")
    return {k: tuple(v) for k, v in units.items()}


def _storable(groups: Sequence[TensorGroup], bits: int, group_size: int) -> bool:
    """GPTQ v1 packs each output row's codes into int32 words and needs whole groups along the input."""
    return all((g.rows * bits) % 32 == 0 and g.cols % 32 == 0 and (group_size == -1 or g.cols % group_size == 0)
               for g in groups)


def build_units(groups: Sequence[TensorGroup], group_size: int, costs: dict[str, dict[int, float]] | None = None,
                widths: Sequence[int] = WIDTHS) -> tuple[list[Unit], int]:
    """(units with exact bytes and costs per width, fixed bytes of everything else). costs: key (as unit_keys) ->
    width -> sensitivity (summed over a unit's keys; missing = 0)."""
    keys = unit_keys(groups)
    member = {k: u for u, ks in keys.items() for k in ks}
    inside = [g for g in groups if g.role in LINEAR_ROLES and _key(g.module) in member]
    rest = [g for g in groups if g not in inside]
    fixed = weight_bytes(rest, gptq_recipe(4, group_size)).total if rest else 0
    units = []
    for name, ks in keys.items():
        mine = [g for g in inside if _key(g.module) in ks]
        options = []
        for bits in widths:
            if bits != KEEP and not _storable(mine, bits, group_size):
                continue
            recipe = gptq_recipe(4, group_size, keep=ks) if bits == KEEP else gptq_recipe(bits, group_size)
            cost = 0.0 if bits == KEEP else sum((costs or {}).get(k, {}).get(bits, 0.0) for k in ks)
            options.append(Option(bits, weight_bytes(mine, recipe).total, cost))
        units.append(Unit(name, ks, tuple(options)))
    return units, fixed


def to_recipe(units: Sequence[Unit], allocation: Allocation, group_size: int) -> Recipe:
    """The allocation as a GPTQ Recipe: base width = the width holding the most units' bytes; a module type whose
    units all got one width is written as one module-key pattern ("mlp.down_proj"), else one layer pattern per unit
    ("layers.3.mlp.down_proj"); 16-bit units become keep patterns, other widths overrides."""
    weight = Counter()
    for u in units:
        o = allocation.choice[u.name]
        if o.bits != KEEP:
            weight[o.bits] += o.bytes
    base = weight.most_common(1)[0][0] if weight else 4
    family: dict[str, set[int]] = {}
    for u in units:
        family.setdefault(_type_of(u.name), set()).add(allocation.choice[u.name].bits)
    picks: dict[tuple[int, str], None] = {}         # ordered set of (bits, pattern)
    for u in units:
        bits = allocation.choice[u.name].bits
        uniform = len(family[_type_of(u.name)]) == 1
        for k in u.keys:
            picks[(bits, _type_of(k) if uniform else k)] = None
    keep = tuple(p for b, p in picks if b == KEEP)
    overrides = tuple(Override(p, b) for b, p in picks if b not in (KEEP, base))
    return gptq_recipe(base, group_size, keep=keep, overrides=overrides)


def _type_of(name: str) -> str:
    """"layers.3.self_attn.q+k+v" -> "self_attn.q+k+v"; a name without a layer index is its own type."""
    parts = name.split(".")
    return ".".join(parts[2:]) if name.startswith("layers.") and parts[1].isdigit() else name
