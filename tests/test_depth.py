"""Decode at depth (qfit/perf/depth.py): the KV the estimate reads at the context, and the error band widened past the
depth each engine's factors were fitted at (profiles/planner/long_context.yaml, re-derived here from the calibration
set so it cannot go stale)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from qfit import resolve
from qfit.api import plan
from qfit.perf.depth import calibrated_depth

CASES = Path(__file__).resolve().parents[1] / "benchmarks" / "calibration" / "cases.jsonl"
FACTS = resolve.engines().get("vllm").policy.long_context


def _derived() -> dict:
    """Deepest decode (input + output/2) and prefill (input) per engine/backend over the speed rows."""
    out: dict = defaultdict(lambda: {"decode": 0, "prefill": 0})
    for line in CASES.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["kind"] not in ("decode", "prefill", "e2e"):
            continue
        backend = r.get("backend") or ("cuda" if str(r.get("gpu", "")).startswith("NVIDIA") else "?")
        d = out[(r["engine"], backend)]
        inp, gen = int(r.get("input_len") or 0), int(r.get("output_len") or 0)
        if r["kind"] != "prefill":
            d["decode"] = max(d["decode"], inp + (gen or 128) // 2)
        if r["kind"] != "decode":
            d["prefill"] = max(d["prefill"], inp)
    return dict(out)


def test_calibrated_depths_are_what_the_calibration_set_holds():
    derived = _derived()
    table = {(e, b): v for e, backends in FACTS["calibrated"].items() for b, v in backends.items()}
    assert table == derived


def _band(p):
    return p.performance.error_band


def _depth_notes(p):
    return [a for a in p.performance.assumptions if "calibrated depth" in a]


def test_llama_8b_at_32k_reads_4_3_gb_of_kv_and_widens_past_the_tg128_rows():
    p = plan("llama-3.1-8b", gpu="RTX 4090", precision="gguf-q4_k_m", context=32768)
    kv = 32 * 2 * 8 * 128 * 2 * 32768            # layers x (K, V) x KV heads x head dim x fp16 x tokens
    assert kv == 4_294_967_296
    assert any(a.startswith("decode timed at 32,768 tokens of KV: each step reads 4.29 GB of KV and recurrent state per GPU")
               for a in p.performance.assumptions)
    short = plan("llama-3.1-8b", gpu="RTX 4090", precision="gguf-q4_k_m", context=512)
    assert _band(p)["decode_pct"] == pytest.approx(1.5 * _band(short)["decode_pct"], abs=0.1)
    assert _band(p)["prefill_pct"] == pytest.approx(1.5 * _band(short)["prefill_pct"], abs=0.1)
    assert len(_depth_notes(p)) == 2 and not _depth_notes(short)


def test_small_kv_share_does_not_widen_decode():
    # 1,024 tokens of an 8B's KV are 134 MB against ~4.9 GB of weights per step: under 10 %
    p = plan("llama-3.1-8b", gpu="RTX 4090", precision="gguf-q4_k_m", context=1024, input_len=512)
    assert not _depth_notes(p)


def test_vllm_within_its_calibrated_depth_is_not_widened():
    assert calibrated_depth(FACTS, "vllm", "cuda") == ({"decode": 130048, "prefill": 129024}, "cuda")
    assert calibrated_depth(FACTS, "vllm", "rocm") == ({"decode": 130048, "prefill": 129024}, "cuda")   # borrowed factors
    assert calibrated_depth(FACTS, "no-such-engine", "cuda") is None
    p = plan("qwen2.5-7b-instruct", gpu="A100 80GB", precision="bf16", context=65536)
    assert not _depth_notes(p)
    deeper = plan("qwen2.5-7b-instruct", gpu="A100 80GB", precision="bf16", context=131072, input_len=131000)
    assert _depth_notes(deeper) and "vllm/cuda: its rows reach 130,048 tokens" in _depth_notes(deeper)[0]


def test_hybrid_reads_kv_of_its_full_attention_layers_only():
    # Qwen3.5-35B-A3B: 10 of 40 layers full attention with 2 KV heads of 256 (fp16), plus the fp32 recurrent state of
    # its 30 Gated DeltaNet layers (32 value heads x 128 x 128) read and written once per step
    p = plan("qwen3.5-35b-a3b", gpu="H100", precision="bf16", context=32768)
    kv = 10 * 2 * 2 * 256 * 2 * 32768
    state = 2 * 30 * 32 * 128 * 128 * 4
    assert (kv, state) == (671_088_640, 125_829_120)
    assert p.performance.breakdown["decode_kv_bytes_per_gpu"] == kv + state
    assert any(a.startswith("decode timed at 32,768 tokens of KV: each step reads 0.797 GB of KV and recurrent state")
               for a in p.performance.assumptions)


def test_plan_times_decode_at_the_end_of_the_request_not_at_the_allocated_context():
    # --context sizes the KV allocation; a 2k-prompt, 512-token request decodes at most 2,560 tokens deep (as qfit size)
    short = plan("llama-3.1-8b", gpu="A100 80GB", precision="bf16", context=131072, input_len=2048, output_len=512)
    assert any(a.startswith("decode timed at 2,560 tokens of KV") for a in short.performance.assumptions)
    full = plan("llama-3.1-8b", gpu="A100 80GB", precision="bf16", context=131072)
    assert any(a.startswith("decode timed at 131,072 tokens of KV") for a in full.performance.assumptions)
    # 8B: 128 KiB of fp16 KV per token: the deep step reads (131,072 - 2,560) x 131,072 B = 16.8 GB more, at vLLM's
    # 90.01 % of the A100 SXM4's 2,039 GB/s (both steps memory-bound, same fixed overhead)
    extra = (131072 - 2560) * 131072 / (2039e9 * 0.9001)
    assert full.performance.tpot_s - short.performance.tpot_s == pytest.approx(extra, rel=1e-3)
    assert short.memory.kv_cache == full.memory.kv_cache      # memory is still checked at the context
