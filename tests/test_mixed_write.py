"""A mixed-precision checkpoint end to end on the tiny random Llama (RTN writer, fast): the sensitivity pass, the
allocation turned into a recipe, the written bytes equal to the allocation's and the planner's, the allocation file,
the config read back, and the dequantized model loading. The slow test runs the CLI with GPTQ on SmolLM2-135M."""

from __future__ import annotations

import json

import pytest

from qfit.errors import QfitError
from qfit.model.params import layer_groups
from qfit.model.sources import load_model
from qfit.precision import recipe_from_config, weight_bytes
from qfit.quantize.inspect import inspect_checkpoint
from qfit.quantize.job import QuantizeJob
from qfit.quantize.mixed.allocate import KEEP, allocate, smallest
from qfit.quantize.mixed.budget import Target
from qfit.quantize.mixed.run import ALLOCATION_FILE, allocation_json, quantize_mixed
from qfit.quantize.mixed.sensitivity import hessian_error, measure
from qfit.quantize.mixed.units import build_units, to_recipe
from qfit.quantize.run import quantize


def test_hessian_error_by_hand():
    import torch

    # 2-bit symmetric grid of a row with max |w| = 2: scale = 2*2/3, zero = 2, levels scale*(q-2), q in 0..3
    w = torch.tensor([[2.0, -2.0, 0.5, 1.0]])
    q_scale = torch.tensor(4 / 3).half().float()
    deq = torch.clamp(torch.round(w / q_scale) + 2, 0, 3).sub(2).mul(q_scale)
    e = w - deq
    assert hessian_error(w, torch.eye(4), 2, -1) == pytest.approx(float((e * e).sum()), rel=1e-6)
    h = torch.diag(torch.tensor([1.0, 0.0, 0.0, 0.0]))     # only the first input ever active
    assert hessian_error(w, h, 2, -1) == pytest.approx(float(e[0, 0] ** 2), abs=1e-9)


@pytest.fixture(scope="module")
def tiny_sensitivity(tiny_llama_dir):
    import torch

    from qfit.quantize.job import read_layout

    torch.manual_seed(1)
    windows = torch.randint(0, 256, (4, 32)).tolist()
    layout = read_layout(tiny_llama_dir, load_model(str(tiny_llama_dir)).spec)
    return measure(tiny_llama_dir, list(layout.linears), windows, 32)


def test_sensitivity_falls_with_width(tiny_sensitivity):
    assert tiny_sensitivity.tokens == 4 * 32 and len(tiny_sensitivity.per_module) == 2 * 7
    for name, errs in tiny_sensitivity.per_module.items():
        assert errs[2] > errs[3] > errs[4] > errs[8] > 0, name
    # per layer key (the allocation's granularity), and per module key the sum over both layers
    q = {n: v[4] for n, v in tiny_sensitivity.per_module.items() if n.endswith("q_proj")}
    assert set(q) == {"model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"}
    assert tiny_sensitivity.costs["layers.1.self_attn.q_proj"][4] == q["model.layers.1.self_attn.q_proj"]
    assert tiny_sensitivity.by_key()["self_attn.q_proj"][4] == pytest.approx(sum(q.values()))


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.6])
def test_written_bytes_equal_the_allocation(tiny_llama_dir, tiny_sensitivity, tmp_path, fraction):
    groups = layer_groups(load_model(str(tiny_llama_dir)).spec)
    units, fixed = build_units(groups, 32, tiny_sensitivity.costs)
    low = smallest(units, fixed)
    high = fixed + sum(max(o.bytes for o in u.options) for u in units)
    alloc = allocate(units, int(low + (high - low) * fraction), fixed)
    recipe = to_recipe(units, alloc, 32)
    data = allocation_json(units, alloc, recipe, {"budget_bytes": alloc.budget}, tiny_sensitivity,
                           weight_bytes(groups, recipe).total)
    job = QuantizeJob.from_flags(bits=int(recipe.bits), group_size=32, keep=recipe.keep, overrides=recipe.overrides,
                                 method="rtn")
    out = tmp_path / "mixed"
    report = quantize(str(tiny_llama_dir), out, job, extra_json={ALLOCATION_FILE: data})
    checked = inspect_checkpoint(out)
    assert checked.ok and checked.tensor_bytes == alloc.bytes == report.weight_bytes <= alloc.budget
    written = json.loads((out / ALLOCATION_FILE).read_text())
    assert written["weight_bytes"] == written["planner_weight_bytes"] == alloc.bytes
    assert {u["unit"]: u["bits"] for u in written["units"]} == {k: o.bits for k, o in alloc.choice.items()}
    assert recipe_from_config(load_model(str(out)).quantization_config) == recipe
    if fraction == 0.0:
        assert {o.bits for o in alloc.choice.values()} == {2}


def test_the_dequantized_mixed_checkpoint_loads(tiny_llama_dir, tiny_sensitivity, tmp_path):
    import torch

    from qfit.quantize.dequant import load_dequantized

    groups = layer_groups(load_model(str(tiny_llama_dir)).spec)
    units, fixed = build_units(groups, 32, tiny_sensitivity.costs, widths=(2, 8, KEEP))
    all8 = fixed + sum(o.bytes for u in units for o in u.options if o.bits == 8)
    alloc = allocate(units, (smallest(units, fixed) + all8) // 2, fixed)   # all-8 does not fit, all-2 wastes room
    recipe = to_recipe(units, alloc, 32)
    assert len({o.bits for o in alloc.choice.values()}) > 1         # a real mix
    out = tmp_path / "mixed"
    quantize(str(tiny_llama_dir), out, QuantizeJob.from_flags(bits=int(recipe.bits), group_size=32, keep=recipe.keep,
                                                              overrides=recipe.overrides, method="rtn"))
    model = load_dequantized(out)
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()


def test_mixed_run_refuses_hand_widths_and_existing_output(tiny_llama_dir, tmp_path):
    target = Target.from_flags(target_bpw="4")
    hand = QuantizeJob.from_flags(keep=("mlp.down_proj",), method="rtn")
    with pytest.raises(QfitError, match="--override/--keep choose widths by hand"):
        quantize_mixed(str(tiny_llama_dir), tmp_path / "q", hand, target)
    (tmp_path / "q").mkdir()
    with pytest.raises(QfitError, match="already exists: pass --force"):
        quantize_mixed(str(tiny_llama_dir), tmp_path / "q", QuantizeJob.from_flags(method="rtn"), target)


@pytest.mark.slow
def test_cli_target_bpw_writes_a_checkpoint_gptqmodel_loads(smollm2_gguf, smollm2_dir, tmp_path):
    """`qfit quantize --target-bpw 3.5` with GPTQ (small calibration: this checks the path, not the quality)."""
    import torch
    from click.testing import CliRunner

    from qfit.cli import cli
    from qfit.loading import load_causal_lm

    out = tmp_path / "mixed"
    result = CliRunner().invoke(cli, ["quantize", str(smollm2_gguf), str(out), "--target-bpw", "3.5",
                                       "--nsamples", "4", "--seqlen", "128", "--json"])
    assert result.exit_code == 0, result.output
    alloc = json.loads((out / ALLOCATION_FILE).read_text())
    bits = {u["bits"] for u in alloc["units"]}
    assert len(bits) > 1 and alloc["weight_bytes"] == inspect_checkpoint(out).tensor_bytes <= \
        alloc["budget"]["budget_bytes"]
    model = load_causal_lm(out)             # per-module bits: GPTQModel's loader
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()
