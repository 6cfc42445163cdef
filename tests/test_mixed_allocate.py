"""The allocator on hand-made sensitivity tables: exact knapsack answers (checked against brute force by hand),
fused groups uniform, budgets respected in the planner's exact bytes, infeasible budgets named."""

from __future__ import annotations

import itertools

import pytest

from qfit.errors import QfitError
from qfit.model.tensors import TensorGroup
from qfit.precision import weight_bytes
from qfit.quantize.mixed.allocate import KEEP, Option, Unit, allocate, smallest
from qfit.quantize.mixed.units import build_units, to_recipe, unit_keys

A = Unit("a", ("a",), (Option(2, 10, 9.0), Option(4, 20, 3.0), Option(8, 40, 1.0)))
B = Unit("b", ("b",), (Option(2, 10, 5.0), Option(4, 20, 4.0), Option(8, 40, 0.0)))
C = Unit("c", ("c",), (Option(3, 15, 2.0), Option(KEEP, 60, 0.0)))


@pytest.mark.parametrize("budget,fixed,want,cost,nbytes", [
    # every unit at its lowest width: 10 + 10 + 15 = 35
    (35, 0, {"a": 2, "b": 2, "c": 3}, 16.0, 35),
    # 10 more bytes: a 2->4 saves 6, b 2->4 saves 1 -> a goes first
    (45, 0, {"a": 4, "b": 2, "c": 3}, 10.0, 45),
    (54, 0, {"a": 4, "b": 2, "c": 3}, 10.0, 45),
    # 55: a4 b4 (cost 9, 55 bytes) vs a2 b8 (14) vs a8 b2 (8, 65 > 55): a4 b4
    (55, 0, {"a": 4, "b": 4, "c": 3}, 9.0, 55),
    # 65: a8 b2 (40+10+15 bytes, cost 1+5+2 = 8) beats a4 b4 (55, 9); a4 b8 (75) does not fit
    (65, 0, {"a": 8, "b": 2, "c": 3}, 8.0, 65),
    # 75: a4 b8 (cost 3+0+2 = 5) beats a8 b4 (1+4+2 = 7)
    (75, 0, {"a": 4, "b": 8, "c": 3}, 5.0, 75),
    # fixed bytes count against the budget: 85 - 10 leaves the 75 above
    (85, 10, {"a": 4, "b": 8, "c": 3}, 5.0, 85),
    # everything at its best: 40 + 40 + 60 = 140
    (1000, 0, {"a": 8, "b": 8, "c": KEEP}, 1.0, 140),
])
def test_least_cost_under_the_budget(budget, fixed, want, cost, nbytes):
    got = allocate([A, B, C], budget, fixed)
    assert {u: o.bits for u, o in got.choice.items()} == want
    assert got.cost == pytest.approx(cost) and got.bytes == nbytes <= budget


@pytest.mark.parametrize("budget", range(35, 150, 5))
def test_matches_brute_force(budget):
    best = min((sum(o.cost for o in pick), sum(o.bytes for o in pick))
               for pick in itertools.product(A.options, B.options, C.options) if sum(o.bytes for o in pick) <= budget)
    got = allocate([A, B, C], budget)
    assert (got.cost, got.bytes - 0) == (pytest.approx(best[0]), best[1])


def test_infeasible_budget_names_the_smallest_size():
    assert smallest([A, B, C], 7) == 42
    with pytest.raises(QfitError, match=r"budget 41 bytes is below .* 42 bytes"):
        allocate([A, B, C], 41, 7)


@pytest.mark.parametrize("units", [[], [Unit("x", ("x",), ())]])
def test_nothing_to_allocate_is_an_error(units):
    with pytest.raises(QfitError):
        allocate(units, 100)


# A two-layer Llama-shaped block set: in_features 64 (attention, gate/up) and 128 (down).
GROUPS = [TensorGroup("embed_tokens", "embed", 256, 64, 1, 1),
          TensorGroup("layers.self_attn.q_proj", "attn_q", 64, 64, 2, 2),
          TensorGroup("layers.self_attn.k_proj", "attn_k", 32, 64, 2, 2),
          TensorGroup("layers.self_attn.v_proj", "attn_v", 32, 64, 2, 2),
          TensorGroup("layers.self_attn.o_proj", "attn_o", 64, 64, 2, 2),
          TensorGroup("layers.mlp.gate_proj", "mlp_gate", 128, 64, 2, 2),
          TensorGroup("layers.mlp.up_proj", "mlp_up", 128, 64, 2, 2),
          TensorGroup("layers.mlp.down_proj", "mlp_down", 64, 128, 2, 2),
          TensorGroup("norm", "norm", 64, 1, 1, 1)]


def test_fused_groups_form_one_unit():
    assert unit_keys(GROUPS) == {"self_attn.q+k+v": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                                 "self_attn.o_proj": ("self_attn.o_proj",),
                                 "mlp.gate+up": ("mlp.gate_proj", "mlp.up_proj"),
                                 "mlp.down_proj": ("mlp.down_proj",)}


def test_unit_bytes_are_the_planners_bytes():
    units, fixed = build_units(GROUPS, 32)
    # embeddings 256*64*2 + norm 64*2 stay 16-bit
    assert fixed == 256 * 64 * 2 + 64 * 2
    qkv = units[0].options[[o.bits for o in units[0].options].index(4)]
    # q: qweight 64*4/32*64*4 = 2048, qzeros 2 groups * 64*4/32 * 4 = 64, scales 2*64*2 = 256, g_idx 64*4 = 256
    # k and v: 1024 + 32 + 128 + 256 = 1440 each; two layers
    assert qkv.bytes == 2 * (2048 + 64 + 256 + 256 + 2 * 1440)
    keep = units[0].options[-1]
    assert keep.bits == KEEP and keep.bytes == 2 * (64 + 32 + 32) * 64 * 2


@pytest.mark.parametrize("budget_step", range(0, 40))
def test_written_recipe_costs_exactly_the_allocated_bytes(budget_step):
    costs = {"self_attn.q_proj": {2: 8.0, 3: 3.0, 4: 1.0, 8: 0.1}, "self_attn.k_proj": {2: 2.0, 3: 1.0, 4: 0.5, 8: 0.0},
             "self_attn.o_proj": {2: 1.0, 3: 0.5, 4: 0.2, 8: 0.0}, "mlp.gate_proj": {2: 4.0, 3: 2.0, 4: 1.0, 8: 0.1},
             "mlp.down_proj": {2: 9.0, 3: 4.0, 4: 2.0, 8: 0.5}}
    units, fixed = build_units(GROUPS, 32, costs)
    low, high = smallest(units, fixed), fixed + sum(max(o.bytes for o in u.options) for u in units)
    budget = low + (high - low) * budget_step // 40
    alloc = allocate(units, budget, fixed)
    recipe = to_recipe(units, alloc, 32)
    assert alloc.bytes <= budget
    assert weight_bytes(GROUPS, recipe).total == alloc.bytes
    for u in units:           # every module of a fused unit stored alike
        assert len({recipe.for_module(f"model.layers.0.{k}") for k in u.keys}) == 1
        want = alloc.choice[u.name].bits
        assert recipe.for_module(f"model.layers.1.{u.keys[0]}") == (None if want == KEEP else (want, 32))


def test_costs_sum_over_a_units_modules():
    costs = {"self_attn.q_proj": {2: 1.0}, "self_attn.k_proj": {2: 2.0}, "self_attn.v_proj": {2: 4.0}}
    units, _ = build_units(GROUPS, 32, costs, widths=(2, KEEP))
    assert [o.cost for o in units[0].options] == [7.0, 0.0]


def test_widths_the_kernels_cannot_pack_are_not_offered():
    odd = [TensorGroup("layers.mlp.down_proj", "mlp_down", 36, 64, 1, 1)]   # 36 rows * 3 bits % 32 != 0
    units, _ = build_units(odd, 32)
    assert [o.bits for o in units[0].options] == [8, KEEP]
