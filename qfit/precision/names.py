"""The names people type for a precision, as users and published tables write them: "Q4_K_M", "gguf-mxfp4", "W4A16",
"int4-awq", "fp8-dynamic". Each resolves to one canonical precision (with a note when reading it so is a judgement), or
is refused in one line that says what to pass instead. Pure string handling: recipe.py owns the formats themselves.
"""

from __future__ import annotations

import difflib
import re
from typing import Collection

from qfit.errors import QfitError
from qfit.precision.ggml import FTYPE_BASE

# Other spellings of one canonical precision: nothing is assumed in reading them so.
ALIASES = {
    "gptq-4bit": "gptq-int4", "gptq4": "gptq-int4", "gptq-int4-g128": "gptq-int4", "int4-gptq": "gptq-int4",
    "w4a16-gptq": "gptq-int4", "gptq-w4a16": "gptq-int4", "gptq-2bit": "gptq-int2", "gptq-3bit": "gptq-int3",
    "gptq-8bit": "gptq-int8", "int8-gptq": "gptq-int8", "gptq-w8a16": "gptq-int8",
    # AutoAWQ writes 4-bit only (its GEMM/GEMV kernels have no other width), so "awq" names one format.
    "awq": "awq-int4", "awq-4bit": "awq-int4", "awq4": "awq-int4", "int4-awq": "awq-int4", "w4a16-awq": "awq-int4",
    "awq-w4a16": "awq-int4",
    "bnb-4bit": "nf4", "bnb-nf4": "nf4", "bnb4": "nf4", "qlora": "nf4",
    "float16": "fp16", "half": "fp16", "f16": "fp16", "bfloat16": "bf16", "float32": "fp32", "f32": "fp32",
    # llm-compressor's FP8_DYNAMIC scheme stores exactly the per-channel layout `fp8` sizes (weights.fp8_tensor_bytes).
    "fp8-e4m3": "fp8", "e4m3": "fp8", "fp8-dynamic": "fp8", "w8a8-fp8": "fp8", "fp8-w8a8": "fp8",
    "fp8-block-128": "fp8-block", "w8a8-int8": "int8", "int8-w8a8": "int8", "bnb-8bit": "int8", "llm.int8": "int8",
    # llama.cpp names the gpt-oss file type MXFP4_MOE (experts MXFP4, the rest Q8_0): its only MXFP4 file type.
    "gguf-mxfp4": "gguf-mxfp4_moe", "mxfp4-moe": "gguf-mxfp4_moe",
    # llama-quantize's own aliases (tools/quantize QUANT_OPTIONS: "Q3_K"/"Q4_K"/"Q5_K" = the _M mixes; recalled).
    "q3_k": "gguf-q3_k_m", "q4_k": "gguf-q4_k_m", "q5_k": "gguf-q5_k_m",
}

# Names that could mean more than one stored layout, read as the one qfit sizes, with the note the plan carries.
_GPTQ4 = ("read as GPTQ int4, group 128 (awq-int4 at group 128 stores ~0.1 % fewer bytes, no g_idx, and runs other kernels; "
          "pass it for an AWQ checkpoint)")
JUDGEMENTS = {
    "int4": ("gptq-int4", f"'int4' {_GPTQ4}"),
    "w4a16": ("gptq-int4", f"'W4A16' (4-bit weights, 16-bit activations) {_GPTQ4}"),
    "gptq": ("gptq-int4", "'gptq' read as 4-bit, GPTQ's usual width (gptq-int8, -int3 and -int2 exist)"),
    "int3": ("gptq-int3", "'int3' read as GPTQ int3, group 128 (the one 3-bit HF format qfit sizes)"),
    "int2": ("gptq-int2", "'int2' read as GPTQ int2, group 128 (the one 2-bit HF format qfit sizes)"),
    "w8a16": ("gptq-int8", "'W8A16' read as GPTQ int8, group 128"),
    "w8a8": ("int8", "'W8A8' read as int8 weights with per-channel scales (SmoothQuant / llm-compressor W8A8-INT8); "
                     "pass fp8 for W8A8-FP8"),
}

# Names that do not say which layout: refused, with the choices.
_AMBIGUOUS = {
    "4bit": "gptq-int4, awq-int4, nf4, gguf-q4_k_m", "q4": "gguf-q4_k_m, gguf-q4_k_s, gguf-q4_0",
    "8bit": "int8, fp8, gptq-int8, gguf-q8_0", "q8": "gguf-q8_0, int8, fp8",
    "fp4": "mxfp4 (gpt-oss checkpoints), gguf-mxfp4_moe (llama.cpp); NVFP4 is not sized by name",
    "gguf": "gguf-q4_k_m, gguf-q8_0, gguf-iq4_xs or another gguf-<type>",
    "quantized": "gptq-int4, awq-int4, fp8, gguf-q4_k_m or another format",
}
_NOT_SIZED = {
    "nvfp4": "qfit has no NVFP4 byte layout yet",
    "exl2": "ExLlamaV2 mixes bit widths per layer to a target average", "exl3": "ExLlamaV3 mixes bit widths per layer",
}
_FILE_HINT = "pass the checkpoint itself as --model (its headers give exact bytes)"

# Uploaders' GGUF variants. Unsloth Dynamic ("UD-Q4_K_XL", "UD-IQ2_XXS") starts from a llama.cpp mix and keeps some
# tensors wider (and may narrow others) by a per-model rule it does not publish. Published measurements use these
# names, so they resolve: planned as the base mix, with an assumption saying so. No byte overhead is added because
# qfit's sources hold no Unsloth file size or UD tensor table to take one from (a guessed figure would be an uncited
# number); the .gguf file itself gives exact bytes. bartowski-style "_L"/"_XL" files (not UD) stay refused with the
# base mix named. The base of a "Qn_K_XL"/"Qn_K_L": llama.cpp's largest n-bit mix.
_NEAREST = {"2": "q2_k", "3": "q3_k_l", "4": "q4_k_m", "5": "q5_k_m", "6": "q6_k", "8": "q8_0"}
_UPLOADER = re.compile(r"(?P<ud>ud_)?(?P<rest>[it]?q(?P<bits>\d)_[a-z0-9_]+?)(?P<big>_xl|_l)?")
_GGUF_PREFIX = re.compile(r"^gguf[-_]?")
_FLOATS = ("f32", "f16", "bf16")


def _keys(raw: str) -> tuple[str, str]:
    """(HF-style key with dashes, GGUF-style bare type with underscores) of a typed name."""
    key = "-".join(str(raw).strip().lower().split())
    return key.replace("_", "-"), _GGUF_PREFIX.sub("", key).replace("-", "_")


def canonical(raw: str, hf_formats: Collection[str]) -> tuple[str, str] | None:
    """(canonical name, note) of a typed precision name; the note is "" unless reading it so is a judgement.
    None when the name is not one of ours (then `refusal` says why or `suggest` offers the closest)."""
    key, bare = _keys(raw)
    spelled = "-".join(str(raw).strip().lower().split())
    for k in dict.fromkeys((spelled, key)):       # "fp8_e4m3" and "fp8-e4m3" alike
        if k in hf_formats:
            return k, ""
        if k in ALIASES:
            return ALIASES[k], ""
        if k in JUDGEMENTS:
            return JUDGEMENTS[k]
    if bare in FTYPE_BASE and (bare not in _FLOATS or _GGUF_PREFIX.match(spelled)):
        return f"gguf-{bare}", ""     # "Q4_K_M", "q4-k-m", "gguf-Q4_K_M", "GGUF Q4_K_M"; bare "BF16" is the HF format
    return _unsloth_dynamic(raw, bare)


def _uploader_base(bare: str):
    """(match, llama.cpp base mix or None) of an uploader's variant name, or (None, None)."""
    m = _UPLOADER.fullmatch(bare)
    if not m or (not m["ud"] and not m["big"]):
        return None, None
    return m, m["rest"] if m["rest"] in FTYPE_BASE else _NEAREST.get(m["bits"]) if m["rest"].endswith("_k") else None


UD_NOTE = ("'{raw}' (Unsloth Dynamic GGUF) planned as llama.cpp's gguf-{base} mix: Unsloth keeps some tensors of its "
           "base mix wider (and may narrow others) by a per-model rule it does not publish, and qfit's sources hold no "
           "UD file size or tensor table, so no overhead is added: weight bytes are the base mix's, not the file's; "
           "pass the .gguf file as --model for exact bytes")


def _unsloth_dynamic(raw: str, bare: str) -> tuple[str, str] | None:
    m, base = _uploader_base(bare)
    if m is None or not m["ud"] or not base:
        return None
    return f"gguf-{base}", UD_NOTE.format(raw=raw, base=base)


def refusal(raw: str) -> str | None:
    """The one-line reason a recognised but unsizeable or ambiguous name is refused; None for other names."""
    key, bare = _keys(raw)
    loose = key.replace("-", "")        # "4-bit" = "4bit"
    if loose in _AMBIGUOUS:
        return f"precision {raw!r} is ambiguous: pass one of {_AMBIGUOUS[loose]}"
    if key in _NOT_SIZED:
        return f"precision {raw!r} cannot be sized from its name ({_NOT_SIZED[key]}); {_FILE_HINT}"
    m, base = _uploader_base(bare)
    if m is None:
        return None
    if m["ud"]:
        what = "an Unsloth Dynamic GGUF of no llama.cpp base type qfit knows"
    else:
        what = ("not a llama-quantize type: uploaders' _L/_XL files change the types of some tensors of a llama.cpp "
                "mix, which the name does not fix")
    nearest = f", or plan llama.cpp's own gguf-{base} mix as an approximation" if base else ""
    return f"precision {raw!r} is {what}; pass the .gguf file itself as --model (exact bytes from its header){nearest}"


def suggest(raw: str, names: Collection[str]) -> list[str]:
    """Up to three canonical names close to a mistyped one."""
    choices = {c: c for c in names} | ALIASES | {k: v[0] for k, v in JUDGEMENTS.items()}
    choices |= {t: f"gguf-{t}" for t in FTYPE_BASE}
    close = difflib.get_close_matches(str(raw).strip().lower(), list(choices), n=5, cutoff=0.5)
    return list(dict.fromkeys(choices[c] for c in close))[:3]


def resolve_name(raw: str, hf_formats: Collection[str], names: Collection[str]) -> tuple[str, str]:
    """(canonical name, note), or QfitError: the reason for a refused name, else the closest names."""
    found = canonical(raw, hf_formats)
    if found:
        return found
    reason = refusal(raw)
    if reason:
        raise QfitError(reason)
    close = suggest(raw, names)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    shown = ", ".join(list(names)[:12])
    raise QfitError(f"unknown precision {raw!r}{hint} (known: {shown}, gguf-<type>)")
