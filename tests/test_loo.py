"""Leave-one-model-out scoring (scripts/loo.py): `qfit calibrate`'s median factor fitted on the other models' rows and
applied to the held-out model's, checked on real calibration rows against hand-derived relations."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from calibration import DEFAULT_CASES, build_cases, predict  # noqa: E402
from loo import TARGETS, fit_factors, leave_one_model_out, meets, resolve_cases, table  # noqa: E402

pytestmark = pytest.mark.skipif(not DEFAULT_CASES.is_file(), reason="calibration set not present")


def _rows(*ids: str) -> list[dict]:
    rows = {r["id"]: r for r in map(json.loads, filter(None, DEFAULT_CASES.read_text().splitlines()))}
    return [rows[i] for i in ids]


SG8 = "B7-decode-qwen3-8b-bf16-nvidiah20-sglang-x1-b1-in1"
SG30 = "B7-decode-qwen3-30b-a3b-bf16-nvidiah20-sglang-x1-b1-in1"
SG30_FP8 = "B7-decode-qwen3-30b-a3b-fp8-nvidiah20-sglang-x1-b1-in1"


def test_held_out_model_takes_the_other_models_factor():
    cases = build_cases(_rows(SG8, SG30))
    p8, p30 = (predict(c) for c in cases)
    m8, m30 = (c.row["measured"] for c in cases)
    out = {r["id"]: r for r in leave_one_model_out(cases)}
    # LOO: Qwen3-8B is predicted with Qwen3-30B-A3B's factor m30/p30, and the other way round
    assert out[SG8]["loo"] == pytest.approx(p8 * m30 / p30, rel=1e-3)
    assert out[SG30]["loo"] == pytest.approx(p30 * m8 / p8, rel=1e-3)
    # in-sample: the median of two ratios is their mean
    both = (m8 / p8 + m30 / p30) / 2
    assert out[SG8]["in_sample"] == pytest.approx(p8 * both, rel=1e-3)
    assert out[SG8]["uncalibrated"] == pytest.approx(p8, rel=1e-3)


def test_quantized_rows_fit_their_own_entry_and_float_rows_never_take_it():
    cases = build_cases(_rows(SG8, SG30_FP8))
    factors = fit_factors([(c, predict(c)) for c in cases])
    assert set(factors) == {("sglang", "cuda"), ("sglang", "cuda/fp8")}
    out = {r["id"]: r for r in leave_one_model_out(cases)}
    # held out, the fp8 row of Qwen3-30B-A3B has no fp8 entry left: it falls back to the family (bf16) factor
    p8, pf = (predict(c) for c in cases)
    assert out[SG30_FP8]["loo"] == pytest.approx(pf * cases[0].row["measured"] / p8, rel=1e-3)


def test_a_model_with_no_other_model_in_its_group_stays_uncalibrated():
    cases = build_cases(_rows(SG8))
    (r,) = leave_one_model_out(cases)
    assert r["loo"] == r["uncalibrated"] and r["in_sample"] == pytest.approx(r["measured"], rel=1e-3)


def test_refused_rows_are_counted_not_dropped():
    row = dict(_rows(SG8)[0], id="bad", model="no-such-model-xyz")
    cases, refused = resolve_cases([row] + _rows(SG30))
    assert len(cases) == 1 and [r["id"] for r in refused] == ["bad"] and refused[0]["why"]


@pytest.mark.parametrize("kind, median, within, ok", [
    ("decode", 10.0, 80.0, True), ("decode", 10.1, 90.0, False), ("decode", 5.0, 79.9, False),
    ("memory", 3.0, 0.0, True), ("memory", 3.1, 100.0, False), ("prefill", 20.0, 0.0, True),
    ("e2e", 15.1, 100.0, False)])
def test_targets(kind, median, within, ok):
    assert kind in TARGETS and meets(kind, {"median_abs_pct": median, "within_25_pct": within}) is ok


def test_table_has_overall_and_per_engine_scopes():
    cases = build_cases(_rows(SG8, SG30))
    tab = table(leave_one_model_out(cases))
    assert set(tab) == {"overall", "sglang"} and set(tab["overall"]["decode"]) == {"uncalibrated", "in_sample", "loo"}
