"""Engine-level behaviours the Qwen3 H20 rows show: transformers' per-expert MoE loop (a fixed cost per expert visited
per routed layer per forward pass) and the FP8-through-transformers warning. Hand-computed cases, table-driven."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from qfit import api, resolve
from qfit.engines import load_engines
from qfit.engines.load import validate_profile
from qfit.perf.efficiency import Efficiency, FormatFactor
from qfit.perf.workload import shape_of

ENGINES = load_engines(overlays=False)
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def eff(loop_us=0.0, per_layer=0.0, per_step=0.0, fmt_layer=0.0):
    return Efficiency("transformers", "cuda", 0.5, per_layer, per_step, 1.0, 0.5, 0.5, "tensor", 0, "layer_split",
                      {"nvlink": 10.0, "pcie": 25.0}, {}, "test", True, ENGINES.policy,
                      FormatFactor("*", overhead_per_layer_us=fmt_layer), moe_expert_loop_us=loop_us)


# (layers, moe_layers, experts, loop us, per-layer us, per-step us, format per-layer us) -> seconds
OVERHEADS = [
    ((48, 48, 128, 84.6, 0.0, 0.0, 0.0), 48 * 128 * 84.6e-6),                   # Qwen3-30B-A3B: 0.5198 s a step
    ((48, 48, 128, 0.0, 10.0, 0.0, 0.0), 48 * 10e-6),                           # fused kernels: no loop term
    ((36, 0, 0, 84.6, 10.0, 0.0, 0.0), 36 * 10e-6),                             # dense model: the term never applies
    ((28, 24, 64, 50.0, 5.0, 100.0, 2.0), 100e-6 + 28 * 7e-6 + 24 * 64 * 50e-6),  # first 4 layers dense
]


@pytest.mark.parametrize("args, seconds", OVERHEADS)
def test_overhead_counts_every_expert_visit(args, seconds):
    layers, moe_layers, experts, loop, per_layer, per_step, fmt = args
    e = eff(loop, per_layer, per_step, fmt)
    assert e.overhead_s(layers, moe_layers, experts) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize("model, moe_layers, experts", [("qwen3-30b-a3b", 48, 128), ("qwen3-8b", 0, 0)])
def test_shape_counts_routed_layers(model, moe_layers, experts):
    s = shape_of(resolve.model(model).spec)
    assert (s.moe_layers, s.num_experts) == (moe_layers, experts)


def _plan(model, engine, precision="bf16"):
    return api.plan(model, gpu="h20", precision=precision, engine=engine, context=4096, input_len=1, output_len=2048)


def test_transformers_moe_decode_pays_the_loop_and_says_so():
    p = _plan("qwen3-30b-a3b", "transformers")
    loop_us = ENGINES.get("transformers").moe_expert_loop_us
    assert loop_us > 0
    overhead = p.performance.breakdown["decode_overhead_s"]
    assert overhead >= 48 * 128 * loop_us * 1e-6
    assert any("per-expert loop visits all 128 experts in each of 48 routed layers" in a
               for a in p.performance.assumptions)


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_fused_moe_engines_have_no_loop(engine):
    p = _plan("qwen3-30b-a3b", engine)
    assert ENGINES.get(engine).moe_expert_loop_us == 0
    assert not any("per-expert loop" in a for a in p.performance.assumptions)


# (engine, precision) -> FP8 warning expected
WARNINGS = [("transformers", "fp8", True), ("transformers", "fp8-block", True), ("transformers", "bf16", False),
            ("vllm", "fp8", False), ("sglang", "fp8", False)]


@pytest.mark.parametrize("engine, precision, warned", WARNINGS)
def test_fp8_through_transformers_is_warned(engine, precision, warned):
    p = _plan("qwen3-8b", engine, precision)
    hits = [a for a in p.performance.assumptions if "pathologically slow" in a]
    assert bool(hits) == warned
    if warned:
        assert "15.5 vs 45.3 tok/s" in hits[0] and "0.44 vs 1.89 tok/s" in hits[0]


def _profile_data(**speed):
    import yaml

    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "profiles/engines/transformers.yaml").read_text())
    data["speed"].update(speed)
    return data


@pytest.mark.parametrize("speed, problem", [
    ({"moe_expert_loop": {"us": -1.0, "note": "x"}}, "speed.moe_expert_loop"),
    ({"moe_expert_loop": {"us": 84.6}}, "speed.moe_expert_loop"),
    ({"moe_expert_loop": {"us": True, "note": "x"}}, "speed.moe_expert_loop"),
    ({"format_warnings": [{"match": "fp8*"}]}, "speed.format_warnings"),
    ({"format_warnings": "fp8"}, "speed.format_warnings"),
    ({"format_warnings": [{"match": "fp8*", "note": "x", "call_us": -5}]}, "speed.format_warnings"),
    ({"format_warnings": [{"match": "fp8*", "note": "x", "call_us": "145"}]}, "speed.format_warnings"),
])
def test_malformed_terms_are_refused(speed, problem):
    assert any(problem in p for p in validate_profile(_profile_data(**speed), "transformers"))


def test_the_profile_is_valid_as_shipped():
    assert validate_profile(_profile_data(), "transformers") == []


@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / "benchmarks/calibration/cases.jsonl").is_file(),
                    reason="calibration set not present")
def test_the_loop_cost_is_what_the_fit_gives_on_the_rows():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(SCRIPTS))
    from fit_moe_loop import DEFAULT_CASES, fit, moe_cases, predicted

    cases = moe_cases("transformers", str(DEFAULT_CASES))
    assert len(cases) == 4       # Qwen3-30B-A3B BF16: decode + 3 end-to-end rows
    us = fit(cases)
    assert us == pytest.approx(ENGINES.get("transformers").moe_expert_loop_us, rel=0.01)
    for c in cases:               # the note's residual range, -3.7..+1.3 %
        assert -0.04 < predicted(c, us) / c.row["measured"] - 1 < 0.015


def test_loop_term_reaches_efficiency_through_replace():
    e = replace(eff(), moe_expert_loop_us=10.0)
    assert e.overhead_s(2, 2, 4) == pytest.approx(2 * 4 * 10e-6)


WALKTHROUGH = Path(__file__).resolve().parent / "data" / "profile_gptq_cpu_walkthrough.json"


def test_gptq_cpu_factor_is_the_quiet_runs_gap_per_layer():
    # README "qfit profile" real output (idle machine): TPOT p50 0.491 s measured, 23.6 tok/s predicted, 30 layers
    cuda = ENGINES.get("transformers").efficiency("cuda", "gptq-int4").format.overhead_per_layer_us
    expected = cuda + (0.491 - 1 / 23.6) / 30 * 1e6          # 545.9 + 14,954.2 = 15,500.1 us
    got = ENGINES.get("transformers").efficiency("cpu", "gptq-int4").format
    assert got.overhead_per_layer_us == pytest.approx(expected, rel=1e-4)
    assert "measured once" in got.source and "SmolLM2-135M" in got.source


def test_the_contended_walkthrough_run_is_slower_than_the_factor_says():
    # the walk-through's run (flagged unreliable: another process held a core) decoded 4.4x slower than the factor
    import json

    d = json.loads(WALKTHROUGH.read_text())
    row = d["comparison"]["decode"][0]
    now = row["predicted_tpot_s"] + 30 * (15500.0 - 545.9) * 1e-6      # its prediction + the CPU GPTQ term
    assert d["speed"]["quality"]["reliable"] is False
    assert row["measured_tpot_s"] / now == pytest.approx(4.36, abs=0.01)


# (backend, precision) -> per-layer format overhead: the CPU GPTQ entry is CPU's own; everything else is unchanged
FORMAT_OVERHEADS = [("cpu", "gptq-int4", 15500.0), ("cpu", "gptq-int8", 15500.0), ("cpu", "bf16", 0.0),
                    ("cpu", "awq-int4", 748.4), ("cuda", "gptq-int4", 545.9), ("cuda", "gptq-int8", 613.5)]


@pytest.mark.parametrize("backend, precision, us", FORMAT_OVERHEADS)
def test_cpu_gptq_entry_does_not_leak(backend, precision, us):
    assert ENGINES.get("transformers").efficiency(backend, precision).format.overhead_per_layer_us == us


def test_cpu_gptq_plan_states_the_measurement():
    p = api.plan("llama-3-8b", gpu="cpu", precision="gptq-int4", engine="transformers", context=4096)
    line = next(a for a in p.performance.assumptions if a.startswith("format factor for gptq-*"))
    assert "+15500 us/layer" in line and "SmolLM2-135M" in line


# linear-module calls of one forward pass: 4 per layer (attention) + 3 per dense MLP + 3 per expert run per routed layer
CALLS = [("qwen3-8b", False, 36 * 4 + 36 * 3), ("qwen3-30b-a3b", False, 48 * 4 + 48 * 3 * 8),
         ("qwen3-30b-a3b", True, 48 * 4 + 48 * 3 * 128)]


@pytest.mark.parametrize("model, every_expert, calls", CALLS)
def test_linear_calls(model, every_expert, calls):
    from qfit.perf.workload import linear_calls

    assert linear_calls(shape_of(resolve.model(model).spec), every_expert) == calls


def test_fp8_call_cost_enters_the_step_by_hand():
    from qfit.perf.roofline import step_overhead_s

    shape = shape_of(resolve.model("qwen3-30b-a3b").spec)
    e = replace(eff(loop_us=84.6), linear_call_us=145.4)
    # 48 x 128 visits x 84.6 us + (48 x 4 + 48 x 3 x 128) calls x 145.4 us = 0.5198 + 2.7080 s
    assert step_overhead_s(shape, e) == pytest.approx(48 * 128 * 84.6e-6 + 18624 * 145.4e-6, rel=1e-9)
    assert step_overhead_s(shape, replace(e, moe_expert_loop_us=0.0)) == pytest.approx(1344 * 145.4e-6, rel=1e-9)


@pytest.mark.parametrize("engine, precision, us", [("transformers", "fp8", 145.4), ("transformers", "fp8-block", 145.4),
                                                   ("transformers", "bf16", 0.0), ("vllm", "fp8", 0.0)])
def test_call_cost_only_for_transformers_fp8(engine, precision, us):
    assert ENGINES.get(engine).efficiency("cuda", precision).linear_call_us == us


@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / "benchmarks/calibration/cases.jsonl").is_file(),
                    reason="calibration set not present")
def test_the_fp8_call_cost_is_what_the_fit_gives_on_the_rows():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(SCRIPTS))
    from fit_moe_loop import DEFAULT_CASES, fit, format_cases, predicted

    cases = format_cases("transformers", "fp8", str(DEFAULT_CASES))
    assert len(cases) == 8        # Qwen3-8B and Qwen3-30B-A3B FP8: decode + 3 end-to-end rows each
    us = fit(cases, "linear_call_us")
    assert us == pytest.approx(145.4, rel=0.01)
    for c in cases:               # the warning's residual range, -30..+64 %
        assert -0.31 < predicted(c, us, "linear_call_us") / c.row["measured"] - 1 < 0.65
