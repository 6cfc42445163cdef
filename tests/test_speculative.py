"""Speculative decoding with the model's MTP layer (`--spec mtp[:n] --spec-acceptance A`): expected tokens per step,
the draft layer's memory, the speed formula, and every refusal."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from qfit.api import plan
from qfit.cli import cli
from qfit.errors import QfitError
from qfit.speculative import Speculation, speculation

Q35 = "qwen3.5-35b-a3b"


@pytest.mark.parametrize("n,a,expected", [(1, 0.5, 1.5), (2, 0.8, 2.44), (3, 0.0, 1.0), (2, 1.0, 3.0),
                                          (4, 0.6, 1 + 0.6 + 0.36 + 0.216 + 0.1296)])
def test_expected_tokens_per_step(n, a, expected):
    assert Speculation(n, a).expected_tokens == pytest.approx(expected)


def test_parse():
    s = speculation("mtp", "0.7")
    assert (s.draft_tokens, s.acceptance) == (1, 0.7)
    assert speculation("MTP:3", "1").draft_tokens == 3


@pytest.mark.parametrize("text,acc,message", [
    ("eagle", "0.7", "only mtp[:n] is modelled"), ("mtp:0", "0.7", "draft tokens must be 1..8"),
    ("mtp:9", "0.7", "draft tokens must be 1..8"), ("mtp", None, "--spec needs --spec-acceptance"),
    ("mtp", "1.5", "--spec-acceptance"), ("mtp", "-0.1", "--spec-acceptance"), ("mtp", "most", "--spec-acceptance"),
])
def test_refusals(text, acc, message):
    with pytest.raises(QfitError, match=message.replace("[", r"\[").replace("]", r"\]")):
        speculation(text, acc)


def test_mtp_layer_memory_of_qwen35_35b_a3b_in_bf16():
    # one full-attention MoE decoder layer (q with its gate 16 x 256 x 2, k/v 2 x 256, o; 256 experts + 1 shared of
    # 3 x 512 x 2048; router) + eh_proj (2 x 2048 -> 2048) + norms: about 844.6M parameters, 2 bytes each
    params = (16 * 256 * 2 * 2048 + 2 * (2 * 256 * 2048) + 2048 * 16 * 256 + 257 * 3 * 512 * 2048 + 256 * 2048
              + 2048 * 2 * 2048)
    assert params == 844_627_968
    base = plan(Q35, gpu="H100", precision="bf16")
    p = plan(Q35, gpu="H100", precision="bf16", spec="mtp:2", spec_acceptance="0.8")
    assert p.memory.weights - base.memory.weights == pytest.approx(2 * params, rel=1e-4)
    # its KV: one more full-attention layer of the model's 10 (2 KV heads x 256, fp16, 8,192 tokens)
    assert p.memory.kv_cache - base.memory.kv_cache == pytest.approx(2 * 2 * 256 * 2 * 8192)
    assert p.speculative["draft_tokens"] == 2 and p.speculative["expected_tokens_per_step"] == 2.44
    assert p.speculative["flag"] == "--speculative-config '{\"method\": \"mtp\", \"num_speculative_tokens\": 2}'"


def test_speed_is_verify_plus_drafts_over_expected_tokens():
    base = plan(Q35, gpu="H100", precision="bf16")
    p = plan(Q35, gpu="H100", precision="bf16", spec="mtp:2", spec_acceptance="0.8")
    b = p.performance.breakdown
    assert p.performance.tpot_s == pytest.approx((b["spec_verify_s"] + 2 * b["spec_draft_s"]) / 2.44)
    # a verify pass over 3 tokens costs more than one decode step, less than three
    assert base.performance.tpot_s < b["spec_verify_s"] < 3 * base.performance.tpot_s
    assert p.performance.decode_tokens_per_s > base.performance.decode_tokens_per_s
    assert p.performance.error_band["decode_pct"] == pytest.approx(2 * base.performance.error_band["decode_pct"],
                                                                   abs=0.1)
    worse = plan(Q35, gpu="H100", precision="bf16", spec="mtp:2", spec_acceptance="0")
    assert worse.performance.tpot_s == pytest.approx(b["spec_verify_s"] + 2 * b["spec_draft_s"])


def test_engines_without_mtp_plan_without_it():
    base = plan(Q35, gpu="H100", precision="gguf-q8_0")
    p = plan(Q35, gpu="H100", precision="gguf-q8_0", spec="mtp", spec_acceptance="0.7")
    assert p.speculative is None and p.performance.tpot_s == base.performance.tpot_s
    assert any("llama.cpp: no MTP speculative decoding" in a for a in p.assumptions)


def test_a_model_without_mtp_is_refused():
    with pytest.raises(QfitError, match="llama-3.1-8b has no multi-token-prediction layer"):
        plan("llama-3.1-8b", gpu="H100", precision="bf16", spec="mtp", spec_acceptance="0.7")


def test_cli():
    r = CliRunner().invoke(cli, ["plan", "-m", Q35, "--gpu", "H100", "-p", "bf16", "--spec", "mtp:2",
                                 "--spec-acceptance", "0.8", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["speculative"]["acceptance"] == 0.8
    r = CliRunner().invoke(cli, ["plan", "-m", Q35, "--gpu", "H100", "-p", "bf16", "--spec-acceptance", "0.8"])
    assert r.exit_code != 0 and "--spec-acceptance goes with --spec" in r.output
    r = CliRunner().invoke(cli, ["plan", "--gpu", "H100", "--spec", "mtp"])
    assert r.exit_code != 0 and "--spec needs --model" in r.output
