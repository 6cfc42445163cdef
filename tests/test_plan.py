"""Fit verdicts, max context/batch, suggestions, the JSON contract, and the seeds' claims, through the library and CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from qfit.api import plan
from qfit.cli import cli
from qfit.memory import GIB

QWEN72 = "Qwen/Qwen2.5-72B-Instruct"


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_seed_72b_bf16_weights_144gb_needs_two_80gb_cards():
    one = plan(QWEN72, gpu="h100", precision="bf16")
    assert one.memory.weights / 1e9 == pytest.approx(145.4, abs=0.1)   # 72.7B params x 2 bytes ("~144 GB")
    assert not one.fits and "2 x NVIDIA H100 SXM at bf16" in one.suggestion
    two = plan(QWEN72, gpu="h100", precision="bf16", gpus=2)
    assert two.fits and two.memory.per_gpu < two.budget_per_gpu


def test_seed_72b_gptq_int4_fits_one_a6000_with_max_context():
    p = plan(QWEN72, gpu="A6000", precision="gptq-int4")
    assert p.fits and p.max_context >= 8192
    # at the max context it fits and one block of tokens more does not
    assert plan(QWEN72, gpu="A6000", precision="gptq-int4", context=p.max_context).fits
    assert not plan(QWEN72, gpu="A6000", precision="gptq-int4", context=p.max_context + 16).fits


def test_seed_70b_q4_k_m_near_42gb():
    p = plan("llama-3-70b", gpu="h100", precision="gguf-q4_k_m")
    assert p.memory.weights / 1e9 == pytest.approx(42.5, rel=0.02)   # Meta-Llama-3-70B Q4_K_M files are 42.5 GB


def test_max_batch_is_the_largest_that_fits():
    p = plan("llama-3-8b", gpu="rtx-4090", precision="gptq-int4", context=4096)
    assert p.max_batch > 1
    assert plan("llama-3-8b", gpu="rtx-4090", precision="gptq-int4", context=4096, batch=p.max_batch).fits
    assert not plan("llama-3-8b", gpu="rtx-4090", precision="gptq-int4", context=4096,
                         batch=p.max_batch + 1).fits


def test_tensor_parallel_divisibility():
    p = plan(QWEN72, gpu="h100", precision="bf16", gpus=3)
    assert not p.fits and "64 attention heads" in p.reason and p.max_context == 0


def test_fits_nowhere_says_what_would():
    p = plan("kimi-k2-instruct", gpu="rtx-4090", precision="bf16")   # 2 TB of bf16 weights: more than 64 x 24 GiB
    assert not p.fits and p.suggestion and "nothing up to 64" in p.suggestion


def test_vllm_reserves_its_memory_fraction():
    p = plan("llama-3-8b", gpu="h100", precision="bf16")
    assert p.engine.memory_fraction == 0.92                     # vLLM 0.33.0's gpu_memory_utilization default
    assert p.budget_per_gpu == pytest.approx(p.accelerator.usable_bytes * 0.92)
    q = plan("llama-3-8b", gpu="h100", precision="gguf-q8_0")   # llama.cpp allocates what it needs
    assert q.budget_per_gpu == pytest.approx(q.accelerator.usable_bytes)


CONTRACT = {
    "model": {"params_total": int, "params_active": int},
    "accelerator": {"name": str, "count": int, "memory_gib": (int, float), "bandwidth_gbps": (int, float)},
    "memory": {k: float for k in ("weights_gib", "kv_cache_gib", "activations_gib", "overhead_gib", "total_gib",
                                  "per_gpu_gib")},
}


def test_json_contract():
    r = run("plan", "--model", QWEN72, "--gpu", "A6000", "--precision", "gptq-int4", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    for block, keys in CONTRACT.items():
        for k, t in keys.items():
            assert isinstance(d[block][k], t), (block, k)
    for k, t in (("precision", str), ("engine", str), ("context", int), ("batch", int), ("fits", bool),
                 ("max_context", int), ("max_batch", int), ("assumptions", list), ("error_band", dict)):
        assert isinstance(d[k], t), k
    m = d["memory"]
    assert m["total_gib"] == pytest.approx(m["weights_gib"] + m["kv_cache_gib"] + m["activations_gib"]
                                           + m["overhead_gib"])
    assert d["accelerator"]["count"] == 1 and d["precision"] == "gptq-int4"


def test_json_totals_are_across_gpus():
    d = json.loads(run("plan", "--model", QWEN72, "--gpu", "h100", "--gpus", "2", "--precision", "bf16",
                       "--json").output)
    assert d["memory"]["weights_gib"] == pytest.approx(145.41e9 / GIB, rel=1e-3)
    assert d["memory"]["per_gpu_gib"] < d["memory"]["total_gib"] / 1.9


def test_matrix_and_precision_table_render():
    r = run("plan", "--model", "llama-3-8b")
    assert r.exit_code == 0 and "✓" in r.output
    r = run("plan", "--model", QWEN72, "--gpu", "A6000")
    assert r.exit_code == 0 and "gptq-int4" in r.output and "does not fit" in r.output
    r = run("plan", "--model", "llama-3-8b", "--gpu", "4090", "--precision", "bf16", "--batch", "1,8")
    assert r.exit_code == 0 and "batch" in r.output


BAD = [
    (["--model", "llama-3-8b", "--gpu", "A7000", "--precision", "bf16"], "unknown accelerator"),
    (["--model", "llama-3-8b", "--gpu", "A6000", "--precision", "int5"], "precision"),
    (["--model", "llama-3-8b", "--gpu", "A6000", "--precision", "bf16", "--engine", "trt"], "unknown engine"),
    (["--model", "llama-3-8b", "--gpu", "A6000", "--precision", "bf16", "--kv-dtype", "int3"], "KV cache dtype"),
    (["--model", "llama-3-8b", "--gpu", "A6000", "--precision", "bf16", "--context", "0"], "positive"),
    (["--model", "llama-3-8b", "--gpu", "A6000", "--precision", "bf16", "--context", "-5"], "context"),
    (["--model", "llama-3-8b", "--gpu", "A6000", "--precision", "bf16", "--context", "999999999999"], "absurd"),
    (["--model", "llama-3-8b", "--gpu", "A6000", "--precision", "bf16", "--batch", "0"], "positive"),
    (["--model", "llama-3-8b", "--gpu", "A6000", "--precision", "bf16", "--gpus", "0"], "positive"),
    (["--model", "llama-3-8b", "--gpu", "A6000", "--precision", "bf16", "--context", "lots"], "cannot read"),
    (["--model", "llama-3-8b", "--gpu", "A6000", "--precision", "gptq-int4", "--group-size", "0"], "group"),
    (["--model", "llama-3-8b", "--gpu", "A6000", "--precision", "gptq-int4", "--engine", "llama.cpp"], "GGUF"),
    (["--model", "no-such-model-xyz", "--gpu", "A6000"], "unknown model"),
    (["--model", "./missing/dir.gguf", "--gpu", "A6000"], "no such file"),
]


@pytest.mark.parametrize("args,needle", BAD, ids=[b[1] + "-" + b[0][-1] for b in BAD])
def test_bad_input_one_line_exit_2(args, needle):
    r = run("plan", *args)
    assert r.exit_code == 2, r.output
    assert needle.lower() in r.output.lower()
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_plot_written_and_not_overwritten(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "plan.png"
    args = ["plan", "--model", "llama-3-8b", "--gpu", "4090", "--precision", "gptq-int4", "--plot", str(out)]
    r = run(*args)
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run(*args)
    assert r.exit_code == 2 and "--force" in r.output
    assert run(*args, "--force").exit_code == 0
    r = run("plan", "--model", "llama-3-8b", "--plot", str(tmp_path / "m.png"))
    assert r.exit_code == 2 and "one configuration" in r.output


def test_plot_marks_what_does_not_fit_once_and_titles_the_curve(monkeypatch, tmp_path):
    """Points past memory are one shaded span with one legend entry (labels per point overlapped); the title names
    the batch range of the curve and the memory panel the batch it shows."""
    pytest.importorskip("matplotlib")
    import qfit.plot as plot

    figs = []
    real = plot.figure
    monkeypatch.setattr(plot, "figure", lambda **kw: figs.append(real(**kw)) or figs[-1])
    r = run("plan", "-m", "llama-3-8b", "--gpu", "4090", "-p", "bf16", "-c", "32k", "--plot", str(tmp_path / "p.png"))
    assert r.exit_code == 0, r.output
    fig = figs[0]
    mem, tps = fig.axes
    assert fig._suptitle.get_text().endswith("batch 1-256") and mem.get_title() == "memory per GPU at batch 1"
    assert len(tps.texts) == 0
    labels = tps.get_legend_handles_labels()[1]
    assert sum("does not fit" in label for label in labels) == 1


def test_kv_pool_in_tokens_and_concurrency_by_hand():
    """Llama-3-8B bf16 on an A6000 under vLLM: KV = 32 layers x 2 (K,V) x 8 heads x 128 x 2 bytes = 131,072 bytes per
    token; the pool is the 90 % budget less weights, activations and overhead; concurrency = pool / one sequence."""
    p = plan("llama-3-8b", gpu="a6000", precision="bf16", context=8192, with_performance=False)
    m, k = p.memory, p.kv_pool
    pool = p.budget_per_gpu - (m.weights + m.activations + m.overhead)
    assert k.bytes_per_gpu == pytest.approx(pool)
    assert k.tokens == int(pool // 131072)
    assert k.max_concurrency == pytest.approx(pool / (131072 * 8192))
    assert int(k.max_concurrency) == p.max_batch and k.state_bytes_per_seq == 0


def test_gated_deltanet_state_of_qwen35_35b_a3b_per_sequence():
    """30 Gated DeltaNet layers (3 of every 4 of 40), each 32 value heads x 128 x 128 fp32 state plus the conv window
    (kernel 4 - 1 = 3 steps x (2 x 16 x 128 + 32 x 128) channels x 2 bytes): 61.4 MiB, as vLLM reports ~64.4 MB."""
    p = plan("qwen3.5-35b-a3b", gpu="h100", precision="bf16", context=32768, with_performance=False)
    per_layer = 32 * 128 * 128 * 4 + 3 * (2 * 16 * 128 + 32 * 128) * 2
    assert p.kv_pool.state_bytes_per_seq == 30 * per_layer
    assert p.kv_pool.max_concurrency == pytest.approx(
        p.kv_pool.bytes_per_gpu / (p.memory.kv_per_gpu / p.batch))


@pytest.mark.parametrize("gpu,tokens,seqs", [("h100", 8192, 1024), ("h200", 8192, 1024), ("b200", 16384, 1024),
                                             ("a100 80gb", 2048, 256), ("dgx spark", 2048, 256),
                                             ("a6000", 2048, 256), ("rtx 4090", 2048, 256)])
def test_vllm_batch_defaults_follow_the_device(gpu, tokens, seqs):
    """vLLM 0.33.0 EngineArgs.get_batch_defaults (vllm serve): 16384 batched tokens / 1024 sequences from 160 GiB,
    8192 / 1024 from 70 GiB except A100 and GB10, 2048 / 256 below; the activation peak is profiled at those."""
    from qfit import resolve
    from qfit.memory import batch_tier

    acc = resolve.accelerator(gpu)
    tier = batch_tier(resolve.engines().get("vllm").activation, acc.memory_gib, f"{acc.key} {acc.name}")
    assert (tier["profile_tokens"], tier["max_seqs"]) == (tokens, seqs)
