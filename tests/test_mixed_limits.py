"""--engine limits a mixed-precision run to the widths the engine's GPTQ kernels load
(profiles/quantize/engine_widths.yaml: vLLM 0.33 and SGLang 0.5 on CUDA run GPTQ on Marlin, 4/8-bit symmetric)."""

from __future__ import annotations

import pytest

from qfit import api, resolve
from qfit.errors import QfitError
from qfit.quantize.job import QuantizeJob
from qfit.quantize.mixed.budget import Target, budget_bytes
from qfit.quantize.mixed.limits import engine_limits
from qfit.quantize.mixed.run import plan_allocation

SMOL = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.parametrize("engine,widths", [("vllm", (4, 8, 16)), ("VLLM", (4, 8, 16)), ("sglang", (4, 8, 16))])
def test_serving_engines_load_four_and_eight_bit_only(engine, widths):
    assert engine_limits(engine).widths() == widths


@pytest.mark.parametrize("engine", [None, "transformers"])
def test_other_loaders_take_every_width(engine):
    assert engine_limits(engine) is None


def test_unknown_engine_is_named():
    with pytest.raises(QfitError, match="unknown engine 'vlm'"):
        engine_limits("vlm")


@pytest.mark.parametrize("engine,group,sym,desc_act,error", [
    ("vllm", 128, True, False, None),
    ("vllm", -1, True, True, None),              # activation order with one group per column: a no-op, accepted
    ("vllm", 256, True, False, "--group-size 256: vllm .* group sizes -1, 32, 64, 128 only"),
    ("vllm", 16, True, False, "--group-size 16"),
    ("vllm", 128, False, False, "--asym: vllm .* symmetric grid only"),
    ("vllm", 128, True, True, "--desc-act: vllm .* without activation order"),
    ("sglang", 128, True, True, None),
    ("sglang", 512, True, False, "--group-size 512: sglang"),
])
def test_engine_checks(engine, group, sym, desc_act, error):
    limits = engine_limits(engine)
    if error is None:
        limits.check(group, sym, desc_act)
    else:
        with pytest.raises(QfitError, match=error):
            limits.check(group, sym, desc_act)


def test_engine_goes_with_any_budget_but_not_alone():
    assert Target.from_flags(target_size="100MB", engine="vllm").engine == "vllm"
    with pytest.raises(QfitError, match="--engine limits the widths of a mixed-precision run; add --fit"):
        Target.from_flags(engine="vllm")


def test_a_budget_below_four_bits_is_refused_for_vllm():
    loaded = resolve.model(SMOL)
    three_bit = Target.from_flags(target_bpw="3.5", engine="vllm")
    budget_bytes(loaded, Target.from_flags(target_bpw="3.5"), 64)          # fine without the engine
    with pytest.raises(QfitError, match=r"every module at 4 bits, .*; vllm loads 4, 8-bit GPTQ only\)"):
        budget_bytes(loaded, three_bit, 64, engine_limits("vllm").widths())


def test_vllm_allocation_uses_four_and_eight_bit_only():
    loaded = resolve.model(SMOL)
    widths = engine_limits("vllm").widths()
    units, alloc, _ = plan_allocation(loaded, Target.from_flags(target_bpw="6", engine="vllm"), 64, None, widths)
    assert {o.bits for u in units for o in u.options} == {4, 8, 16}
    assert {o.bits for o in alloc.choice.values()} <= {4, 8, 16}


def test_act_order_is_static_so_vllm_loads_the_default_checkpoint():
    """qfit's act-order keeps groups static (g_idx = i // group size), so the checkpoint says desc_act false, which
    vLLM 0.33 loads; a checkpoint with group act-order (desc_act true) is what it refuses."""
    from qfit.quantize.mixed.limits import engine_limits

    job = QuantizeJob.from_flags(method="gptq", desc_act=True, group_size=32)
    assert job.act_order and not job.recipe.desc_act
    engine_limits("vllm").check(32, job.recipe.sym, job.recipe.desc_act)
    with pytest.raises(QfitError, match="--desc-act: vllm"):
        engine_limits("vllm").check(32, True, True)


def test_plan_suggestion_says_vllm_cannot_load_the_mix():
    p = api.plan("Qwen/Qwen2.5-72B-Instruct", gpu="A6000", precision="gptq-int4", context=32768,
                 with_performance=False)
    assert "mixed GPTQ up to 3.4 bits/weight: qfit quantize MODEL OUT --fit rtx-a6000 --context 32768 --batch 1 " \
           "(2/3-bit modules: GPTQModel loads them, vllm 0.33.0 does not)" in p.suggestion
    assert "--engine" not in p.suggestion
