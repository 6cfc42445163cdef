"""GGUF: ggml block layouts and llama.cpp's per-tensor type choice for the mixture file types.

Block table: ggml/src/ggml.c type_traits (mirrored by gguf-py `GGML_QUANT_SIZES`; tests/test_precision.py checks every
entry against the installed gguf package). The table is hard-coded so the planner never imports gguf.
Type choice: a transcription of `llama_tensor_get_type()` in llama.cpp src/llama-quant.cpp (see profiles/formats.md for
the parts we do not model: Falcon-specific branches, user overrides, --pure).
"""

from __future__ import annotations

from dataclasses import dataclass

# ggml type -> (values per block, bytes per block)
GGML_TYPES: dict[str, tuple[int, int]] = {
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2),
    "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34),
    "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210),
    "IQ2_XXS": (256, 66), "IQ2_XS": (256, 74), "IQ2_S": (256, 82), "IQ3_XXS": (256, 98), "IQ3_S": (256, 110),
    "IQ1_S": (256, 50), "IQ1_M": (256, 56), "IQ4_NL": (32, 18), "IQ4_XS": (256, 136),
    "TQ1_0": (256, 54), "TQ2_0": (256, 66), "MXFP4": (32, 17),
}
FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})

# llama-quantize file type -> default ggml type (llama_model_quantize_impl's switch on ftype).
FTYPE_BASE: dict[str, str] = {
    "f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q6_k": "Q6_K",
    "q5_k_m": "Q5_K", "q5_k_s": "Q5_K", "q5_0": "Q5_0", "q5_1": "Q5_1",
    "q4_k_m": "Q4_K", "q4_k_s": "Q4_K", "q4_0": "Q4_0", "q4_1": "Q4_1",
    "q3_k_l": "Q3_K", "q3_k_m": "Q3_K", "q3_k_s": "Q3_K", "q2_k": "Q2_K", "q2_k_s": "Q2_K",
    "iq4_xs": "IQ4_XS", "iq4_nl": "IQ4_NL", "iq3_m": "IQ3_S", "iq3_s": "IQ3_S", "iq3_xs": "IQ3_S",
    "iq3_xxs": "IQ3_XXS", "iq2_m": "IQ2_S", "iq2_s": "IQ2_XS", "iq2_xs": "IQ2_XS", "iq2_xxs": "IQ2_XXS",
    "iq1_m": "IQ1_M", "iq1_s": "IQ1_S", "tq1_0": "TQ1_0", "tq2_0": "TQ2_0", "mxfp4_moe": "MXFP4",
}
# File types whose low-bit branch in llama_tensor_get_type is shared ("IQ2_XXS || IQ2_XS || IQ1_S || IQ2_S || ...").
_LOWBIT = frozenset({"iq2_xxs", "iq2_xs", "iq1_s", "iq2_s", "iq2_m", "iq1_m"})
_S_OR_M = frozenset({"iq2_s", "iq2_m"})
# Fallback when a tensor's row length is not a multiple of the chosen type's block (convert_incompatible_tensor).
_FALLBACK = {
    "TQ1_0": "Q4_0", "TQ2_0": "Q4_0", "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL", "IQ2_S": "IQ4_NL",
    "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "Q2_K": "IQ4_NL",
    "Q3_K": "IQ4_NL", "IQ4_XS": "IQ4_NL", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}
# llama-quantize refuses these without an importance matrix; for the other i-quants an imatrix is what published files
# use. We assume an imatrix for every i-quant and Q2_K_S, none for k-quants / legacy types (changes a few bumps).
IMATRIX_FTYPES = frozenset(f for f in FTYPE_BASE if f.startswith("iq")) | {"q2_k_s"}


def tensor_nbytes(ggml_type: str, rows: int, cols: int) -> int:
    """ggml_nbytes of a 2-D tensor: rows * (cols / block) * bytes per block (cols must be a block multiple)."""
    block, size = GGML_TYPES[ggml_type]
    return rows * (-(-cols // block)) * size


@dataclass(frozen=True)
class GgufModel:
    """The hparams llama_tensor_get_type looks at, inferred from the tensor groups."""

    n_layer: int
    n_gqa: float            # n_head / n_head_kv
    n_expert: int
    n_attention_wv: int     # number of attn_v / attn_qkv / attn_kv_b tensors
    has_output: bool        # False for tied embeddings: token_embd then takes the output tensor's type
    imatrix: bool
    is_70b: bool            # LLM_TYPE_70B (80-layer Llama/Qwen2): attn_v gets Q5_K instead of Q3_K/Q4_K


def use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def choose_type(ftype: str, m: GgufModel, kind: str, cols: int, counter: int, layer: int, stacked: bool) -> str:
    """ggml type of one tensor. kind: llama.cpp tensor name stem (output, token_embd, attn_v, ffn_down, ...);
    counter: running index among tensors of that stem (i_attention_wv / i_ffn_down); layer: block index."""
    base = FTYPE_BASE[ftype]
    if kind == "output" or (kind == "token_embd" and not m.has_output):
        new = _output_type(ftype, base, cols)
    elif ftype == "mxfp4_moe":
        new = "MXFP4" if stacked else "Q8_0"      # 3-D expert tensors -> MXFP4, everything else Q8_0
    elif kind == "token_embd":
        new = _embd_type(ftype, base)
    elif ftype in _LOWBIT:
        new = _lowbit_type(ftype, base, m, kind, counter)
    elif kind == "attn_v":
        new = _attn_v_type(ftype, base, m, counter)
    else:
        new = _other_type(ftype, base, m, kind, layer)
    return fallback(new, cols)


def fallback(new: str, cols: int) -> str:
    if cols % GGML_TYPES[new][0] == 0:
        return new
    new = _FALLBACK.get(new, "F16")
    return new if cols % GGML_TYPES[new][0] == 0 else "F16"


def _output_type(ftype: str, base: str, cols: int) -> str:
    if ftype == "mxfp4_moe" or cols % GGML_TYPES[base][0] != 0:
        return "Q8_0"
    if ftype in _LOWBIT or ftype == "iq3_xxs":
        return "Q5_K"
    return base if base == "Q8_0" else "Q6_K"


def _embd_type(ftype: str, base: str) -> str:
    if ftype in ("iq2_xxs", "iq2_xs", "iq1_s", "iq1_m"):
        return "Q2_K"
    if ftype in ("iq2_s", "iq2_m", "iq3_xxs"):
        return "IQ3_S"
    if ftype in ("tq1_0", "tq2_0"):
        return "Q4_K"
    return base


def _lowbit_type(ftype: str, base: str, m: GgufModel, kind: str, counter: int) -> str:
    if kind == "attn_v":
        if m.n_gqa >= 4 or m.n_expert >= 4:
            return "Q4_K"
        return "IQ3_S" if ftype in _S_OR_M else "Q2_K"
    if m.n_expert == 8 and kind == "attn_k":
        return "Q4_K"
    if kind == "ffn_down":
        # llama.cpp compares the running ffn_down counter with n_layer/8 here (not the layer index).
        if counter < m.n_layer // 8:
            return "IQ3_S" if ftype in _S_OR_M else "Q2_K"
        return base
    if kind == "attn_output":
        if m.n_expert == 8:
            return "Q5_K"
        if ftype in ("iq1_s", "iq1_m"):
            return "IQ2_XXS"
        if ftype in _S_OR_M:
            return "IQ3_S"
    return base


def _attn_v_type(ftype: str, base: str, m: GgufModel, i: int) -> str:
    gqa4 = m.n_gqa >= 4
    new = base
    if ftype == "q2_k":
        new = "Q4_K" if gqa4 else "Q3_K"
    elif ftype == "q2_k_s" and gqa4:
        new = "Q4_K"
    elif ftype == "iq3_xxs":
        new = "Q4_K" if gqa4 else ("IQ3_XXS" if m.imatrix else "IQ3_S")
    elif ftype in ("iq3_xs", "iq3_s") and gqa4:
        new = "Q4_K"
    elif ftype == "iq3_m":
        new = "Q4_K"
    elif ftype == "q3_k_m":
        new = "Q5_K" if i < 2 else "Q4_K"
    elif ftype == "q3_k_l":
        new = "Q5_K"
    elif ftype in ("iq4_nl", "iq4_xs") and gqa4:
        new = "Q5_K"
    elif ftype in ("q4_k_m", "q5_k_m") and use_more_bits(i, m.n_attention_wv):
        new = "Q6_K"
    elif ftype == "q4_k_s" and i < 4:
        new = "Q5_K"
    if m.is_70b and new in ("Q3_K", "Q4_K"):
        new = "Q5_K"
    return "Q8_0" if m.n_expert == 8 else new


def _other_type(ftype: str, base: str, m: GgufModel, kind: str, layer: int) -> str:
    if kind == "attn_k":
        if m.n_expert == 8:
            return "Q8_0"
        return {"iq3_xs": "IQ3_XXS", "iq3_xxs": "IQ2_S"}.get(ftype, base)
    if kind == "attn_q":
        return {"iq3_xs": "IQ3_XXS", "iq3_xxs": "IQ2_S"}.get(ftype, base)
    if kind == "ffn_down":
        return _ffn_down_type(ftype, base, m, layer)
    if kind == "attn_output":
        return _attn_output_type(ftype, base, m)
    if kind == "attn_qkv":
        if ftype in ("q3_k_m", "q3_k_l", "iq3_m"):
            return "Q4_K"
        return {"q4_k_m": "Q5_K", "q5_k_m": "Q6_K"}.get(ftype, base)
    if kind in ("ffn_gate", "ffn_up") and ftype == "iq3_xs":
        return "IQ3_XXS" if m.n_layer // 8 <= layer < 7 * m.n_layer // 8 else base
    return base


def _ffn_down_type(ftype: str, base: str, m: GgufModel, i: int) -> str:
    n = m.n_layer
    if ftype == "q2_k":
        return "Q3_K"
    if ftype == "q2_k_s":
        return "Q4_K" if i < n // 8 else base
    if ftype == "iq3_xxs" and not m.imatrix:
        return "Q4_K" if i < n // 8 else "Q3_K"
    if ftype == "q3_k_m":
        # non-Falcon: Q5_K for the first 1/16 of layers, Q4_K for all the others
        return "Q5_K" if i < n // 16 else "Q4_K"
    if ftype == "iq3_m":
        return "Q4_K" if i < n // 8 or (m.n_expert == 8 and use_more_bits(i, n)) else base
    if ftype == "q3_k_l":
        return "Q5_K"
    if ftype == "q4_k_m":
        return "Q6_K" if use_more_bits(i, n) else base
    if ftype in ("iq4_nl", "iq4_xs") and i < n // 8 and not m.imatrix:
        return "Q5_K"
    if ftype == "q5_k_m":
        return "Q6_K" if use_more_bits(i, n) else base
    if ftype == "q4_k_s":
        return "Q5_K" if i < n // 8 else base
    if ftype in ("q4_0", "q5_0") and m.imatrix and i < n // 8:
        return "Q4_1" if ftype == "q4_0" else "Q5_1"
    return base


def _attn_output_type(ftype: str, base: str, m: GgufModel) -> str:
    if m.n_expert == 8:
        bump = {"q2_k", "iq3_xs", "iq3_xxs", "q3_k_s", "q3_k_m", "iq4_nl", "q4_k_s", "q4_k_m", "iq3_s", "iq3_m",
                "iq4_xs"}
        return "Q5_K" if ftype in bump else base
    return {"q2_k": "Q3_K", "iq3_xxs": "IQ3_S", "q3_k_m": "Q4_K", "q3_k_l": "Q5_K", "iq3_m": "Q4_K"}.get(ftype, base)
