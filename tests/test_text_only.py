"""Multimodal checkpoints: the vision tower counted where the format holds it (HF checkpoints, which vLLM/SGLang/
transformers load), left out for GGUF (a separate mmproj file) and with --text-only, and said so."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from qfit import resolve
from qfit.api import matrix, plan
from qfit.cli import cli

Q35 = "qwen3.5-35b-a3b"


def _vision_note(p):
    return next(a for a in p.assumptions if "vision tower" in a)


def test_hf_formats_count_the_tower_and_text_only_leaves_exactly_it_out():
    tower = resolve.model(Q35).spec.vision.params * 2          # kept 16-bit by every format
    full = plan(Q35, gpu="H100", precision="bf16")
    text = plan(Q35, gpu="H100", precision="bf16", text_only=True)
    assert full.weights.by_role["vision"] == tower and "vision" not in text.weights.by_role
    assert full.memory.weights - text.memory.weights == pytest.approx(tower)
    assert "vision tower counted" in _vision_note(full) and "--text-only leaves it out" in _vision_note(full)
    assert _vision_note(text).startswith(f"--text-only: vision tower not counted ({tower / 1e9:.2f} GB")


def test_gguf_never_counts_the_tower():
    p = plan(Q35, gpu="H100", precision="gguf-q8_0")
    same = plan(Q35, gpu="H100", precision="gguf-q8_0", text_only=True)
    assert "vision" not in p.weights.by_role and p.memory.weights == same.memory.weights
    assert "separate mmproj file" in _vision_note(p)


def test_text_only_reaches_the_matrix_and_suggestions():
    rows = matrix(Q35, ["H100"], ["bf16", "fp8"], text_only=True)
    assert all("vision" not in r.weights.by_role for r in rows)
    p = plan(Q35, gpu="RTX 4090", precision="bf16", text_only=True)
    assert not p.fits and p.suggestion


def test_text_only_on_a_text_model_changes_nothing():
    a, b = plan("llama-3.1-8b", gpu="H100", precision="bf16"), plan("llama-3.1-8b", gpu="H100", precision="bf16",
                                                                    text_only=True)
    assert a.memory.weights == b.memory.weights and not any("vision" in x for x in b.assumptions)


def test_cli_text_only_needs_a_model():
    r = CliRunner().invoke(cli, ["plan", "--gpu", "H100", "--text-only"])
    assert r.exit_code != 0 and "--text-only needs --model" in r.output
    r = CliRunner().invoke(cli, ["plan", "-m", Q35, "--gpu", "H100", "-p", "bf16", "--text-only"])
    assert r.exit_code == 0 and "--text-only: vision tower not counted" in r.output
