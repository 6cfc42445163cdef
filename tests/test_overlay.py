"""The loop closes: a `qfit calibrate` overlay in the user's config dir scales the planner's speed, and says so."""

from __future__ import annotations

import pytest

from qfit.api import plan
from qfit.errors import QfitError


def _plan():
    return plan("llama-3-8b", gpu="h100", precision="bf16", context=2048, input_len=1024)


def test_overlay_scales_speed_and_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("QFIT_CONFIG_DIR", str(tmp_path))
    base = _plan().performance
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "vllm.yaml").write_text(
        "engine: vllm\ncalibrations:\n  cuda:\n    decode_speed_factor: 0.5\n    prefill_speed_factor: 2.0\n"
        "    points: {decode: 3, prefill: 2}\n")
    tuned = _plan().performance
    assert tuned.decode_tokens_per_s == pytest.approx(base.decode_tokens_per_s * 0.5)
    assert tuned.prefill_tokens_per_s == pytest.approx(base.prefill_tokens_per_s * 2.0)
    assert tuned.breakdown["overlay_factors"]["decode"] == 0.5
    assert any("user calibration overlay" in a for a in tuned.assumptions)


def test_overlay_for_another_family_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("QFIT_CONFIG_DIR", str(tmp_path))
    base = _plan().performance.decode_tokens_per_s
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "vllm.yaml").write_text("calibrations:\n  metal:\n    decode_speed_factor: 0.5\n")
    assert _plan().performance.decode_tokens_per_s == pytest.approx(base)


def test_implausible_overlay_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("QFIT_CONFIG_DIR", str(tmp_path))
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "vllm.yaml").write_text("calibrations:\n  cuda:\n    decode_speed_factor: 0\n")
    with pytest.raises(QfitError, match="implausible"):
        _plan()
