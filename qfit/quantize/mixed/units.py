"""Allocation units of a model and their exact bytes at each width, from the planner's own tensor groups and byte
formula (qfit.precision.weight_bytes), so the allocation's bytes are the bytes `qfit plan` predicts and
`qfit quantize` writes. Also the Recipe an allocation becomes. Pure: no torch.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from qfit.errors import QfitError
from qfit.model.tensors import LINEAR_ROLES, TensorGroup, module_key
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


def unit_keys(groups: Sequence[TensorGroup]) -> dict[str, tuple[str, ...]]:
    """unit name -> module keys of the quantizable linears, fused groups together, in model order."""
    units: dict[str, list[str]] = {}
    for g in groups:
        if g.role in LINEAR_ROLES:
            key = module_key(g.module)
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
    """(units with exact bytes and costs per width, fixed bytes of everything else). costs: module key -> width ->
    sensitivity (summed over a unit's keys; missing = 0)."""
    keys = unit_keys(groups)
    member = {k: u for u, ks in keys.items() for k in ks}
    inside = [g for g in groups if g.role in LINEAR_ROLES and module_key(g.module) in member]
    rest = [g for g in groups if g not in inside]
    fixed = weight_bytes(rest, gptq_recipe(4, group_size)).total if rest else 0
    units = []
    for name, ks in keys.items():
        mine = [g for g in inside if module_key(g.module) in ks]
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
    """The allocation as a GPTQ Recipe: base width = the width holding the most units' bytes, one override per other
    module key, KEEP units as keep patterns."""
    weight = Counter()
    for u in units:
        o = allocation.choice[u.name]
        if o.bits != KEEP:
            weight[o.bits] += o.bytes
    base = weight.most_common(1)[0][0] if weight else 4
    keep = tuple(k for u in units if allocation.choice[u.name].bits == KEEP for k in u.keys)
    overrides = tuple(Override(k, allocation.choice[u.name].bits) for u in units for k in u.keys
                      if allocation.choice[u.name].bits not in (KEEP, base))
    return gptq_recipe(base, group_size, keep=keep, overrides=overrides)
