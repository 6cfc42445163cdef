"""Per-layer widths: layer keys and patterns, per-layer tensor groups, the allocator on per-layer units (against
brute force), the recipe an allocation becomes, and the `dynamic` rules it is written as, read back the way
GPTQModel and vLLM/SGLang match them."""

from __future__ import annotations

import itertools
import re

import pytest

from qfit import resolve
from qfit.errors import QfitError
from qfit.model.params import layer_groups, tensor_groups
from qfit.model.tensors import TensorGroup, layer_key
from qfit.precision import Override, gptq_recipe, quantization_config, recipe_from_config, weight_bytes
from qfit.precision.recipe import _dynamic_regex, pattern_matches
from qfit.quantize.mixed.allocate import KEEP, allocate, smallest
from qfit.quantize.mixed.units import build_units, to_recipe, unit_keys


@pytest.mark.parametrize("name,key", [
    ("model.layers.3.mlp.down_proj.weight", "layers.3.mlp.down_proj"),
    ("model.layers.12.self_attn.q_proj", "layers.12.self_attn.q_proj"),
    ("model.layers.2.mlp.experts.7.down_proj.qweight", "layers.2.mlp.experts.down_proj"),
    ("layers.0.mlp.gate_proj", "layers.0.mlp.gate_proj"),          # a per-layer TensorGroup
    ("layers.mlp.gate_proj", None),                                 # a group merged across layers
    ("model.embed_tokens.weight", None),
    ("lm_head", None),
])
def test_layer_key(name, key):
    assert layer_key(name) == key


@pytest.mark.parametrize("pattern,module,hit", [
    ("layers.3.mlp.down_proj", "model.layers.3.mlp.down_proj", True),
    ("layers.3.mlp.down_proj", "model.layers.13.mlp.down_proj", False),
    ("layers.3.mlp.down_proj", "model.layers.3.mlp.up_proj", False),
    ("layers.1*.mlp.*", "model.layers.13.mlp.up_proj", True),
    ("layers.1*.mlp.*", "model.layers.3.mlp.up_proj", False),
    ("layers.2.mlp.experts.down_proj", "model.layers.2.mlp.experts.7.down_proj", True),
    ("layers.2.mlp.down_proj", "layers.mlp.down_proj", False),      # merged group: no index to match
    ("mlp.down_proj", "model.layers.13.mlp.down_proj", True),       # module-key patterns: every layer
    ("mlp.down_proj", "layers.mlp.down_proj", True),
])
def test_pattern_matches(pattern, module, hit):
    assert pattern_matches(pattern, module) is hit


@pytest.mark.parametrize("model", ["HuggingFaceTB/SmolLM2-135M-Instruct", "Qwen/Qwen3-30B-A3B"])
def test_layer_groups_hold_the_same_tensors(model):
    spec = resolve.model(model).spec
    merged, split = tensor_groups(spec), layer_groups(spec)
    assert sum(g.params for g in split) == sum(g.params for g in merged)
    recipe = gptq_recipe(4, 128)
    assert weight_bytes(split, recipe).total == weight_bytes(merged, recipe).total
    keys = {layer_key(g.module) for g in split if g.is_linear}
    assert None not in keys and f"layers.{spec.layers - 1}.self_attn.o_proj" in keys
    assert ("layers.0.mlp.experts.down_proj" in keys) is bool(spec.moe)


def test_per_layer_recipe_refuses_merged_groups():
    recipe = gptq_recipe(4, 128, overrides=(Override("layers.3.mlp.down_proj", 8),))
    assert recipe.per_layer and not gptq_recipe(4, 128, keep=("mlp.down_proj",)).per_layer
    spec = resolve.model("HuggingFaceTB/SmolLM2-135M-Instruct").spec
    with pytest.raises(QfitError, match="sets widths per layer: size it on per-layer tensor groups"):
        weight_bytes(tensor_groups(spec), recipe)
    # one down_proj of 30 at 8 instead of 4 bits: 1536 x 576... the byte formula's difference, no more
    one = [g for g in layer_groups(spec) if g.module == "layers.3.mlp.down_proj"]
    delta = weight_bytes(one, gptq_recipe(8, 128)).total - weight_bytes(one, gptq_recipe(4, 128)).total
    assert weight_bytes(layer_groups(spec), recipe).total - weight_bytes(tensor_groups(spec), gptq_recipe(4, 128)).total \
        == delta == 1536 * 4 // 8 * 576 + 12 * 576 * 4 // 8     # qweight + qzeros grow with the bits


@pytest.mark.parametrize("pattern", ["layers.3", "layers..mlp.down_proj"])
def test_bad_layer_patterns(pattern):
    with pytest.raises(QfitError, match="a layer pattern is layers.<index>.<module key>"):
        gptq_recipe(4, 128, keep=(pattern,))


@pytest.mark.parametrize("glob,regex", [
    ("mlp.down_proj", r".*\.layers\.\d+\.mlp(?:\.\d+)*\.down_proj$"),
    ("layers.3.mlp.down_proj", r".*\.layers\.3\.mlp(?:\.\d+)*\.down_proj$"),
    ("layers.3.self_attn.q_proj", r".*\.layers\.3\.self_attn(?:\.\d+)*\.(?:q_proj|qkv_proj)$"),
    ("mlp.up_proj", r".*\.layers\.\d+\.mlp(?:\.\d+)*\.(?:up_proj|gate_up_proj)$"),
    ("layers.2.mlp.experts.down_proj", r".*\.layers\.2\.mlp(?:\.\d+)*\.experts(?:\.\d+)*\.down_proj$"),
])
def test_dynamic_regex(glob, regex):
    assert _dynamic_regex(glob) == regex


# A two-layer Llama, per layer: in_features 64 (attention, gate/up) and 128 (down).
SHAPES = [("self_attn.q_proj", "attn_q", 64, 64), ("self_attn.k_proj", "attn_k", 32, 64),
          ("self_attn.v_proj", "attn_v", 32, 64), ("self_attn.o_proj", "attn_o", 64, 64),
          ("mlp.gate_proj", "mlp_gate", 128, 64), ("mlp.up_proj", "mlp_up", 128, 64),
          ("mlp.down_proj", "mlp_down", 64, 128)]
GROUPS = [TensorGroup("embed_tokens", "embed", 256, 64, 1, 1)] + \
    [TensorGroup(f"layers.{i}.{m}", role, r, c, 1, 1) for i in (0, 1) for m, role, r, c in SHAPES] + \
    [TensorGroup("norm", "norm", 64, 1, 1, 1)]
# layer 1's MLP matters more than layer 0's; attention alike in both
COSTS = {f"layers.{i}.{m}": {2: s * 8, 4: s, 8: s / 8} for i in (0, 1) for m, _, _, _ in SHAPES
         for s in [(3.0 if i and m.startswith("mlp") else 1.0) * (2.0 if "down" in m else 1.0)]}


def test_units_are_per_layer_and_fused():
    keys = unit_keys(GROUPS)
    assert list(keys) == [f"layers.{i}.{u}" for i in (0, 1)
                          for u in ("self_attn.q+k+v", "self_attn.o_proj", "mlp.gate+up", "mlp.down_proj")]
    assert keys["layers.1.mlp.gate+up"] == ("layers.1.mlp.gate_proj", "layers.1.mlp.up_proj")


@pytest.mark.parametrize("step", range(0, 21))
def test_per_layer_allocation_is_the_brute_force_optimum(step):
    units, fixed = build_units(GROUPS, 32, COSTS, widths=(2, 8, KEEP))        # 3^8 allocations to try
    low, high = smallest(units, fixed), fixed + sum(max(o.bytes for o in u.options) for u in units)
    budget = low + (high - low) * step // 20
    best = min((sum(o.cost for o in pick), sum(o.bytes for o in pick))
               for pick in itertools.product(*(u.options for u in units)) if fixed + sum(o.bytes for o in pick) <= budget)
    got = allocate(units, budget, fixed)
    assert (got.cost, got.bytes - fixed) == (pytest.approx(best[0], abs=1e-12), best[1])
    recipe = to_recipe(units, got, 32)
    assert weight_bytes(GROUPS, recipe).total == got.bytes <= budget
    for u in units:       # every module of a fused unit stored alike, as chosen
        want = got.choice[u.name].bits
        assert {recipe.for_module(f"model.{k}") for k in u.keys} == {None if want == KEEP else (want, 32)}


def test_a_type_uniform_across_layers_is_one_pattern():
    units, fixed = build_units(GROUPS, 32, COSTS, widths=(2, 4, 8, KEEP))
    pick = {"self_attn.q+k+v": (8, 8), "self_attn.o_proj": (2, 2), "mlp.gate+up": (4, 8), "mlp.down_proj": (4, KEEP)}
    choice = {u.name: next(o for o in u.options if o.bits == pick[u.name.split(".", 2)[2]][int(u.name[7])])
              for u in units}
    from qfit.quantize.mixed.allocate import Allocation

    recipe = to_recipe(units, Allocation(choice, 0, 0.0, 0), 32)
    # base = the width holding the most bytes: 8 (q/k/v of both layers, gate/up of layer 1)
    assert recipe.bits == 8
    assert recipe.keep == ("layers.1.mlp.down_proj",)
    assert recipe.overrides == (Override("self_attn.o_proj", 2), Override("layers.0.mlp.gate_proj", 4),
                                Override("layers.0.mlp.up_proj", 4), Override("layers.0.mlp.down_proj", 4))
    assert weight_bytes(GROUPS, recipe).total == fixed + sum(o.bytes for o in choice.values())


def _vllm_override(dynamic: dict, name: str, base: int):
    """vLLM 0.33 quantization/utils/gptq_utils.py get_dynamic_override + override_config (SGLang's
    srt/layers/quantization/utils.py is the same loop): first rule whose regex re.match-es wins."""
    for pattern, rule in dynamic.items():
        if pattern.startswith("-:"):
            if re.match(pattern.removeprefix("-:"), name):
                return None
        elif re.match(pattern.removeprefix("+:"), name):
            return rule.get("bits", base)
    return base


def test_dynamic_round_trip_per_layer():
    """Written config -> the same recipe back; every module's width as GPTQModel 7.7 resolves it (dynamic_get) and as
    vLLM resolves its fused qkv_proj / gate_up_proj equals what the recipe (and the planner) says."""
    from gptqmodel.quantization.config import dynamic_get

    recipe = gptq_recipe(4, 32, keep=("layers.1.mlp.down_proj",),
                         overrides=(Override("self_attn.q_proj", 8), Override("self_attn.k_proj", 8),
                                    Override("self_attn.v_proj", 8), Override("layers.1.mlp.gate_proj", 2),
                                    Override("layers.1.mlp.up_proj", 2), Override("layers.0.mlp.down_proj", 3)))
    qc = quantization_config(recipe, damp=0.01, method="gptq", tool="qfit")
    assert recipe_from_config(qc) == recipe
    dyn = qc["dynamic"]
    for layer in range(12):            # layer 10/11: a layer pattern for 1 must not catch 10 or 11
        for m, *_ in SHAPES:
            name = f"model.layers.{layer}.{m}"
            want = recipe.for_module(name)
            got = dynamic_get(dyn, name, "bits", 4)
            assert (None if got is False else got) == (None if want is None else want[0]), name
        for fused, shards in (("self_attn.qkv_proj", ("q_proj", "k_proj", "v_proj")),
                              ("mlp.gate_up_proj", ("gate_proj", "up_proj"))):
            prefix = fused.split(".")[0]
            want = {recipe.for_module(f"model.layers.{layer}.{prefix}.{s}") for s in shards}
            assert len(want) == 1
            bits = _vllm_override(dyn, f"model.layers.{layer}.{fused}", 4)
            assert bits == (None if want == {None} else next(iter(want))[0])
