"""Budgets of a mixed-precision run: flag parsing and its one-line errors, the bytes each target means for the real
SmolLM2-135M description, --fit from the planner's own Deployment, and `qfit plan`'s mixed suggestion."""

from __future__ import annotations

import pytest

from qfit import api, resolve
from qfit.deployment import Deployment
from qfit.errors import QfitError
from qfit.model.params import tensor_groups
from qfit.model.sources import load_model
from qfit.precision import gptq_recipe, weight_bytes
from qfit.quantize.mixed.budget import Target, auto_group_size, budget_bytes, weight_room
from qfit.quantize.mixed.run import plan_allocation
from qfit.quantize.mixed.units import to_recipe

# SmolLM2-135M at group size 64 (in_features 576 and 1536: 128 does not divide 576), by hand from
# qfit.precision.weights.gptq_tensor_bytes: embeddings 49152 x 576 x 2 + norms (30 x 1152 + 576) x 2 bytes
FIXED = 49152 * 576 * 2 + (30 * 1152 + 576) * 2
LINEAR_PARAMS = 30 * (2 * 576 * 576 + 2 * 192 * 576 + 3 * 1536 * 576)


@pytest.fixture(scope="module")
def smol(smollm2_gguf):
    return load_model(str(smollm2_gguf))


@pytest.mark.parametrize("flags,error", [
    (dict(target_size="90MB", target_bpw="3.6"), "--target-size and --target-bpw: give one budget"),
    (dict(target_size="90MB", fit="A100"), "give one budget"),
    (dict(context="32k"), "--context: deployment flags of --fit GPU; add --fit"),
    (dict(target_bpw="4", batch=4), "--batch: deployment flags of --fit GPU, not of --target-bpw"),
    (dict(target_size="lots"), "cannot read size 'lots'"),
    (dict(target_size="-5GB"), "size"),
    (dict(target_bpw="0"), "--target-bpw"),
    (dict(target_bpw="17"), "--target-bpw"),
    (dict(fit="A100", gpus=0), "--gpus must be between 1 and 64"),
    (dict(fit="A100", context="lots"), "context"),
])
def test_bad_flags_are_one_line_errors(flags, error):
    with pytest.raises(QfitError, match=error) as exc:
        Target.from_flags(**flags)
    assert "\n" not in str(exc.value)


def test_no_budget_flags_mean_a_uniform_run():
    assert Target.from_flags() is None


def test_group_size_auto_follows_the_widths(smol):
    assert auto_group_size(tensor_groups(smol.spec)) == 64


@pytest.mark.parametrize("flags,want", [
    (dict(target_size="90MB"), 90_000_000),
    (dict(target_size="0.1GiB"), 107_374_182),
    # bits per weight over the quantized linears: fixed + bpw x params / 8
    (dict(target_bpw="3.6"), FIXED + 36 * LINEAR_PARAMS // 80),
])
def test_budget_bytes(smol, flags, want):
    assert budget_bytes(smol, Target.from_flags(**flags), 64)[0] == want


def test_budget_below_all_two_bit_names_the_smallest_size(smol):
    low = weight_bytes(tensor_groups(smol.spec), gptq_recipe(2, 64)).total
    with pytest.raises(QfitError, match=f"smallest this model can be stored in is .*{low:,} bytes"):
        budget_bytes(smol, Target.from_flags(target_size=f"{low - 1}B"), 64)
    assert budget_bytes(smol, Target.from_flags(target_size=f"{low}B"), 64)[0] == low


def test_budget_at_16_bit_needs_no_quantization(smol):
    with pytest.raises(QfitError, match="at least the 16-bit model .*nothing needs quantizing"):
        budget_bytes(smol, Target.from_flags(target_size="1GB"), 64)


def test_unknown_gpu_is_a_one_line_error(smol):
    with pytest.raises(QfitError) as exc:
        budget_bytes(smol, Target.from_flags(fit="NoSuchGPU-9000"), 64)
    assert "\n" not in str(exc.value)


def test_fit_budget_is_what_the_planner_leaves_for_weights():
    """Qwen2.5-72B on one A6000 at 32k: uniform 4-bit does not fit; the weights that fill the room exactly fit, one
    byte-per-GPU more does not (the Deployment object `qfit plan` uses)."""
    loaded = resolve.model("Qwen/Qwen2.5-72B-Instruct")
    room, derived = budget_bytes(loaded, Target.from_flags(fit="A6000", context="32k"), 128)
    assert derived["deployment"]["accelerator"] == "NVIDIA RTX A6000"
    acc, recipe = resolve.accelerator("A6000"), gptq_recipe(4, 128)
    dep = Deployment.build(loaded, acc, 1, recipe, resolve.engines().choose(None, recipe, acc))
    w = api._workload(loaded, 32768, 1, None, None)
    assert weight_room(dep, w)[0] == room
    assert not dep.fits(w.context, w.batch, w.prompt)
    units, alloc, _ = plan_allocation(loaded, Target.from_flags(fit="A6000", context="32k"), 128, None)
    mixed = Deployment.build(loaded, acc, 1, to_recipe(units, alloc, 128), dep.engine)
    assert alloc.bytes <= room and mixed.fits(w.context, w.batch, w.prompt)


def test_plan_suggests_mixed_gptq_when_four_bit_does_not_fit():
    p = api.plan("Qwen/Qwen2.5-72B-Instruct", gpu="A6000", precision="gptq-int4", context=32768,
                 with_performance=False)
    assert not p.fits
    assert "at mixed GPTQ up to 3.4 bits/weight: qfit quantize MODEL OUT --fit rtx-a6000 --context 32768" \
        in p.suggestion


@pytest.mark.parametrize("context", [4096, 400_000])
def test_no_mixed_suggestion_when_four_bit_fits_or_two_bit_does_not(context):
    p = api.plan("Qwen/Qwen2.5-72B-Instruct", gpu="A6000", precision="gptq-int4", context=context,
                 with_performance=False)
    assert "mixed" not in (p.suggestion or "")


def test_bits_with_a_budget_is_refused_not_ignored(tmp_path):
    from click.testing import CliRunner

    from qfit.cli import cli
    res = CliRunner().invoke(cli, ["quantize", "model-not-read", str(tmp_path / "o"), "--bits", "3", "--target-bpw",
                                   "3.5"])
    assert res.exit_code == 2 and "drop --bits" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()
