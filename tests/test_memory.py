"""KV cache per attention kind, tensor-parallel sharding/replication, recurrent state, activations: hand arithmetic."""

from __future__ import annotations

import pytest

from qfit.engines import load_engines
from qfit.errors import QfitError
from qfit.memory import kv_cache, parse_kv_dtype, recurrent_state_bytes
from qfit.model.sources import catalog_lookup

ENGINES = load_engines(overlays=False)
VLLM, HF, LCPP = ENGINES.get("vllm"), ENGINES.get("transformers"), ENGINES.get("llama.cpp")


def spec(name):
    return catalog_lookup(name).spec


@pytest.mark.parametrize("dtype,elem", [("fp16", 2), ("bf16", 2), ("fp8", 1), ("q8_0", 34 / 32), ("q4_0", 18 / 32)])
def test_gqa_kv_per_dtype(dtype, elem):
    # Llama-3-8B: 2 (K,V) x 32 layers x 8 KV heads x 128 head_dim x elem bytes per token
    kv = kv_cache(spec("llama-3-8b"), 8192, 1, dtype, HF, 1)
    assert kv.total_bytes == pytest.approx(2 * 32 * 8 * 128 * elem * 8192)


def test_batch_scales_linearly_and_blocks_round_up():
    s = spec("llama-3-8b")
    one = kv_cache(s, 1000, 1, "fp16", VLLM, 1).total_bytes
    assert one == 2 * 32 * 8 * 128 * 2 * 1008          # vLLM blocks of 16 tokens: 1000 -> 1008
    assert kv_cache(s, 1000, 4, "fp16", VLLM, 1).total_bytes == 4 * one


def test_sliding_layers_capped_at_window():
    s = spec("gpt-oss-20b")  # 12 full + 12 sliding (window 128), 8 KV heads x 64
    per_tok_layer = 2 * 8 * 64 * 2
    kv = kv_cache(s, 32768, 1, "bf16", HF, 1)
    assert kv.total_bytes == per_tok_layer * (12 * 32768 + 12 * (128 + 1))
    short = kv_cache(s, 100, 1, "bf16", HF, 1)      # below the window the cap does nothing
    assert short.total_bytes == per_tok_layer * 24 * 100


def test_mla_latent_vs_expanded():
    s = spec("deepseek-v3")
    latent = kv_cache(s, 1024, 1, "bf16", VLLM, 1).total_bytes
    assert latent == 61 * (512 + 64) * 2 * 1024
    expanded = kv_cache(s, 1024, 1, "bf16", HF, 1).total_bytes
    assert expanded == 61 * 128 * (128 + 64 + 128) * 2 * 1024


def test_tensor_parallel_shards_and_replicates_kv():
    s = spec("qwen2.5-72b-instruct")     # 8 KV heads
    one = kv_cache(s, 4096, 1, "fp16", VLLM, 1)
    four = kv_cache(s, 4096, 4, "fp16", VLLM, 4)
    # each of 4 GPUs holds 2 of the 8 KV heads (1/4 of a sequence's cache) for 4 sequences
    assert four.per_gpu_bytes == pytest.approx(one.total_bytes / 4 * 4)
    assert four.total_bytes == pytest.approx(4 * one.total_bytes)
    sixteen = kv_cache(s, 4096, 1, "fp16", VLLM, 16)  # 16 GPUs > 8 KV heads: each GPU holds one head (replicas)
    assert sixteen.per_gpu_bytes == pytest.approx(one.total_bytes / 8)
    assert sixteen.total_bytes == pytest.approx(one.total_bytes * 2)
    assert any("replicated" in n for n in sixteen.notes)


def test_mla_latent_replicated_per_rank():
    s = spec("deepseek-v3")
    one = kv_cache(s, 1024, 1, "bf16", VLLM, 1).total_bytes
    eight = kv_cache(s, 1024, 1, "bf16", VLLM, 8)
    assert eight.per_gpu_bytes == one and eight.total_bytes == 8 * one


def test_layer_split_engines_do_not_replicate():
    s = spec("qwen2.5-72b-instruct")
    one = kv_cache(s, 4096, 1, "fp16", LCPP, 1).total_bytes
    two = kv_cache(s, 4096, 1, "fp16", LCPP, 2)
    assert two.total_bytes == one and two.per_gpu_bytes == one / 2


def test_deltanet_state_is_per_sequence_not_per_token():
    s = spec("qwen3-next-80b-a3b")   # 36 linear layers: 32 value heads x 128 x 128 fp32 state + conv window
    la = s.linear
    per_seq = 36 * (32 * 128 * 128 * 4 + (2 * 16 * 128 + 32 * 128) * (la.conv_kernel - 1) * 2)
    assert recurrent_state_bytes(s, 1, 2.0) == per_seq
    short = kv_cache(s, 1024, 2, "bf16", HF, 1)
    long = kv_cache(s, 65536, 2, "bf16", HF, 1)
    assert short.state_bytes == long.state_bytes == 2 * per_seq
    # only the 12 full-attention layers grow with context: 2 x 2 KV heads x 256 x 2 bytes per token and layer
    assert long.total_bytes - short.total_bytes == 2 * 12 * 2 * 2 * 256 * 2 * (65536 - 1024)


def test_kv_dtype_aliases_and_errors():
    assert parse_kv_dtype("F16") == "fp16" and parse_kv_dtype("auto") == "bf16"
    with pytest.raises(QfitError, match="unknown KV cache dtype"):
        parse_kv_dtype("int3")
