"""The recipe: one typed, validated description of how a model's weights are stored, from `qfit plan` through
`qfit quantize`, `qfit inspect` and `qfit profile` (names, aliases and checkpoint configs all parse into it).

Pure: no I/O and no numpy/torch/gguf import, so `qfit plan` starts fast. Byte counts of a recipe live in weights.py;
every layout is cited in profiles/formats.md.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field

from qfit.errors import QfitError
from qfit.model.tensors import layer_key, module_key
from qfit.precision.ggml import FTYPE_BASE, GGML_TYPES
from qfit.precision.names import resolve_name

# The one set of legal group sizes per format. GPTQ: what GPTQModel 7.7's kernels accept
# (TorchQuantLinear.SUPPORTS_GROUP_SIZE, the universal fallback kernel), so planner, quantize and inspect agree; AWQ: the
# AWQ GEMM kernel (AwqGEMMQuantLinear.SUPPORTS_GROUP_SIZE). Anything else fails kernel selection at quantize or load
# time, so refusing it here is kinder than planning a checkpoint nobody can write. -1 = one group per input column set.
GROUP_SIZES = {"gptq": (-1, 16, 32, 64, 128, 256, 512, 1024), "awq": (-1, 16, 32, 64, 128)}
GPTQ_BITS = (2, 3, 4, 8)            # GPTQ v1 packs 2/3/4/8-bit codes into int32 words
DEFAULT_GROUP_SIZE = 128

NF4_BLOCK = 64      # bitsandbytes quantize_4bit default blocksize (transformers BitsAndBytesConfig)
MXFP4_BLOCK = 32    # OCP MX spec: 32 values share one E8M0 scale
FP8_BLOCK = 128     # DeepSeek-V3 weight_block_size [128, 128]


@dataclass(frozen=True)
class Override:
    """Modules whose key matches `pattern` (a glob on qfit.model.tensors.module_key, e.g. "mlp.down_proj",
    "self_attn.*") are stored at `bits` / `group_size` instead of the recipe's."""

    pattern: str
    bits: int
    group_size: int | None = None


@dataclass(frozen=True)
class Recipe:
    """How weights are stored. `bits` is nominal (4 for gptq-int4 and gguf-q4_k_m); effective bits come from
    weight_bytes(), which counts scales, zeros, g_idx and per-tensor type mixtures.

    keep: module-key globs left 16-bit besides the format's own skip list (embeddings, lm_head, norms, MoE routers).
    overrides: per-module bits / group size (GPTQ only), first match wins.
    """

    name: str            # canonical precision name (the JSON contract's "precision")
    family: str          # float | gptq | awq | fp8 | int8 | bnb | mxfp | gguf
    bits: float
    group_size: int | None
    kv_default: str      # KV-cache dtype an engine picks by default with these weights (never fp8 by default)
    sym: bool = True
    desc_act: bool = False
    keep: tuple[str, ...] = ()
    overrides: tuple[Override, ...] = ()
    # How the typed name was read when that is a judgement ("int4" -> GPTQ); not part of the recipe's identity.
    note: str = field(default="", compare=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["keep"], d["overrides"] = list(self.keep), [asdict(o) for o in self.overrides]
        return d

    @property
    def label(self) -> str:
        """'gptq-int4 g128' for grouped formats, else the name; '+ overrides' when modules differ."""
        g = f" g{self.group_size}" if self.family in ("gptq", "awq") else ""
        extra = " (+ per-module overrides)" if self.overrides or self.keep else ""
        return f"{self.name}{g}{extra}"

    @property
    def per_layer(self) -> bool:
        """Some pattern names a layer ("layers.3.mlp.down_proj"): sized on qfit.model.params.layer_groups."""
        return any(is_layer_pattern(p) for p in self.keep + tuple(o.pattern for o in self.overrides))

    def for_module(self, module: str) -> tuple[int, int | None] | None:
        """(bits, group size) a quantized module is stored at, or None when `keep` leaves it 16-bit."""
        if any(pattern_matches(p, module) for p in self.keep):
            return None
        for o in self.overrides:
            if pattern_matches(o.pattern, module):
                return o.bits, (o.group_size or self.group_size)
        return int(self.bits), self.group_size


def is_layer_pattern(pattern: str) -> bool:
    return pattern.startswith("layers.")


def pattern_matches(pattern: str, module: str) -> bool:
    """A recipe pattern against a module name: "layers.<i>.<key glob>" matches the layer key (one block's module),
    any other glob the module key (every block alike); see qfit.model.tensors."""
    if is_layer_pattern(pattern):
        key = layer_key(module)
        return key is not None and fnmatch.fnmatchcase(key, pattern)
    return fnmatch.fnmatchcase(module_key(module), pattern)


# name -> (family, nominal bits, fixed group size or None, kv_default)
_HF_FORMATS: dict[str, tuple[str, float, int | None, str]] = {
    "fp32": ("float", 32, None, "fp32"),
    "bf16": ("float", 16, None, "bf16"),
    "fp16": ("float", 16, None, "fp16"),
    # vLLM/SGLang/transformers run fp8 / int8 / nf4 / mxfp4 checkpoints with bf16 activations and KV "auto" = bf16.
    "fp8": ("fp8", 8, None, "bf16"),
    "fp8-block": ("fp8", 8, FP8_BLOCK, "bf16"),
    "int8": ("int8", 8, None, "bf16"),
    # GPTQ/AWQ kernels compute in fp16 (vLLM casts gptq/awq models to fp16 by default).
    "gptq-int2": ("gptq", 2, DEFAULT_GROUP_SIZE, "fp16"),
    "gptq-int3": ("gptq", 3, DEFAULT_GROUP_SIZE, "fp16"),
    "gptq-int4": ("gptq", 4, DEFAULT_GROUP_SIZE, "fp16"),
    "gptq-int8": ("gptq", 8, DEFAULT_GROUP_SIZE, "fp16"),
    "awq-int4": ("awq", 4, DEFAULT_GROUP_SIZE, "fp16"),
    "nf4": ("bnb", 4, NF4_BLOCK, "bf16"),
    "mxfp4": ("mxfp", 4, MXFP4_BLOCK, "bf16"),
}

# GGUF file types we expose (llama.cpp `llama-quantize` names, lower-case). Nominal bits from the name.
_GGUF_BITS = {
    "f32": 32, "f16": 16, "bf16": 16, "q8_0": 8, "q6_k": 6, "q5_k_m": 5, "q5_k_s": 5, "q5_0": 5, "q5_1": 5,
    "q4_k_m": 4, "q4_k_s": 4, "q4_0": 4, "q4_1": 4, "q3_k_l": 3, "q3_k_m": 3, "q3_k_s": 3, "q2_k": 2, "q2_k_s": 2,
    "iq4_xs": 4, "iq4_nl": 4, "iq3_m": 3, "iq3_s": 3, "iq3_xs": 3, "iq3_xxs": 3, "iq2_m": 2, "iq2_s": 2,
    "iq2_xs": 2, "iq2_xxs": 2, "iq1_m": 1, "iq1_s": 1, "tq1_0": 1.6875, "tq2_0": 2, "mxfp4_moe": 4,
}
assert set(_GGUF_BITS) == set(FTYPE_BASE)


def list_precisions() -> list[str]:
    """Every canonical precision name, HF-style formats first, then GGUF file types."""
    return list(_HF_FORMATS) + [f"gguf-{t}" for t in _GGUF_BITS]


def check_group_size(name: str, family: str, group_size: int) -> int:
    allowed = GROUP_SIZES[family]
    if group_size not in allowed:
        lib = "GPTQModel" if family == "gptq" else "AWQ GEMM"
        raise QfitError(f"group size {group_size} is not supported for {name}: {lib} kernels accept "
                        f"{', '.join(map(str, allowed))} (-1 = one group spanning all in_features)")
    return group_size


def _check_group_size(name: str, family: str, fixed: int | None, group_size: int | None) -> int | None:
    if family in GROUP_SIZES:
        return fixed if group_size is None else check_group_size(name, family, group_size)
    if group_size is not None and group_size != fixed:
        what = f"fixed blocks of {fixed}" if fixed else "no groups"
        raise QfitError(f"--group-size applies to gptq-*/awq-* only; {name} has {what}")
    return fixed


def parse_recipe(name: str, group_size: int | None = None, *, sym: bool = True, desc_act: bool = False,
                 keep: tuple[str, ...] = (), overrides: tuple[Override, ...] = ()) -> Recipe:
    """'Q4_K_M' -> gguf-q4_k_m, 'int4' -> gptq-int4 (group 128). QfitError for unknown names, group sizes, or
    options the format cannot store."""
    canon, note = resolve_name(str(name), _HF_FORMATS, list_precisions())
    if canon in _HF_FORMATS:
        family, bits, fixed, kv = _HF_FORMATS[canon]
    else:
        ftype = canon.removeprefix("gguf-")
        # llama.cpp allocates its KV cache as f16 unless told otherwise (--cache-type-k/v).
        family, bits, fixed, kv = "gguf", _GGUF_BITS[ftype], GGML_TYPES[FTYPE_BASE[ftype]][0], "fp16"
        if fixed == 1:      # f32/f16/bf16 files: no blocks
            fixed = None
    gs = _check_group_size(canon, family, fixed, group_size)
    recipe = Recipe(name=canon, family=family, bits=float(bits), group_size=gs, kv_default=kv, sym=bool(sym),
                    desc_act=bool(desc_act), keep=tuple(keep), overrides=tuple(overrides), note=note)
    _check_options(recipe)
    return recipe


def _check_options(r: Recipe) -> None:
    if (not r.sym or r.desc_act) and r.family not in ("gptq", "awq"):
        raise QfitError(f"sym/desc_act describe GPTQ/AWQ recipes, not {r.name}")
    if r.desc_act and r.family != "gptq":
        raise QfitError(f"desc_act (activation order) is a GPTQ option, not {r.name}'s")
    if r.keep and r.family in ("float", "gguf"):
        raise QfitError(f"keep patterns apply to quantized HF formats, not {r.name} (GGUF has its own type mix)")
    if r.overrides and r.family != "gptq":
        raise QfitError(f"per-module overrides are written for GPTQ recipes only, not {r.name}")
    for pattern in r.keep + tuple(o.pattern for o in r.overrides):
        if not pattern.strip() or pattern != pattern.strip():
            raise QfitError(f"empty or padded module pattern {pattern!r}")
        if is_layer_pattern(pattern) and (pattern.count(".") < 2 or not pattern.split(".")[1]):
            raise QfitError(f"module pattern {pattern!r}: a layer pattern is layers.<index>.<module key>, "
                            "e.g. layers.3.mlp.down_proj")
    for o in r.overrides:
        if o.bits not in GPTQ_BITS:
            raise QfitError(f"override {o.pattern!r}: {o.bits} bits is not a GPTQ width ({', '.join(map(str, GPTQ_BITS))})")
        if o.group_size is not None:
            check_group_size(r.name, r.family, o.group_size)


def gptq_recipe(bits: int, group_size: int = DEFAULT_GROUP_SIZE, **options) -> Recipe:
    """A GPTQ recipe from quantize-style flags (bits as a number)."""
    if bits not in GPTQ_BITS:
        raise QfitError(f"--bits {bits} is not supported: choose {', '.join(map(str, GPTQ_BITS))}")
    return parse_recipe(f"gptq-int{bits}", group_size, **options)


def unquantized_bytes(precision: Recipe) -> int:
    """Bytes per element of the tensors a format leaves unquantized (norms, routers, biases...):
    fp32 -> 4; GGUF -> 4 (converters write 1-D tensors and routers as F32); every other format 2 (16-bit)."""
    if precision.family == "gguf" or precision.name == "fp32":
        return 4
    return 2


_ASSUMPTIONS = {
    "float": "every tensor stored at {name} width",
    "gptq": "GPTQ v1 (GPTQModel): int32-packed weights, fp16 scales, packed zeros, int32 g_idx, group {gs}; "
            "embeddings, lm_head, norms and MoE routers kept 16-bit",
    "awq": "AWQ GEMM: int32-packed weights/zeros, fp16 scales, group {gs}; embeddings, lm_head, norms, routers 16-bit",
    "fp8": "fp8 e4m3 weights with {scale}; embeddings, lm_head, norms, routers 16-bit",
    "int8": "int8 weights with one fp32 scale per output channel; embeddings, lm_head, norms, routers 16-bit",
    "bnb": "bitsandbytes nf4, 64-value blocks, double quantization on; embeddings, lm_head, norms, routers 16-bit",
    "mxfp": "MXFP4 (4.25 bits per weight) on routed experts only, everything else bf16 (gpt-oss layout)",
    "gguf": "llama.cpp {name} per-tensor type mix (llama_tensor_get_type){imatrix}; norms, routers, biases F32; "
            "tensor bytes only (GGUF header, metadata and tokenizer add a few MB)",
}


def format_assumptions(precision: Recipe) -> str:
    """One line for a plan's assumptions list: what the byte count of this format assumes."""
    from qfit.precision.ggml import FLOAT_TYPES, IMATRIX_FTYPES
    ftype = precision.name.removeprefix("gguf-")
    if precision.family == "gguf" and FTYPE_BASE[ftype] in FLOAT_TYPES:
        return (f"GGUF {FTYPE_BASE[ftype]}: 2-D weights {FTYPE_BASE[ftype]}, norms/routers/biases F32; "
                "tensor bytes only (header, metadata and tokenizer add a few MB)")
    imatrix = ", importance matrix assumed" if ftype in IMATRIX_FTYPES else ""
    scale = ("fp32 scales per 128x128 block (DeepSeek-V3 style)" if precision.group_size
             else "a bf16 scale per output channel (llm-compressor FP8_DYNAMIC)")
    return _ASSUMPTIONS[precision.family].format(name=precision.name, gs=precision.group_size, scale=scale,
                                                 imatrix=imatrix)


# ------------------------------------------------------------------------------------------ checkpoint configs

# vLLM and SGLang build q/k/v_proj as one qkv_proj and gate/up_proj as one gate_up_proj (the models'
# packed_modules_mapping) and match `dynamic` against that fused name (vllm 0.33 quantization/utils/gptq_utils.py
# get_linear_quant_method, prefix = "model.layers.0.self_attn.qkv_proj"); GPTQModel sees the unfused names.
_FUSED_NAME = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj", "gate_proj": "gate_up_proj",
               "up_proj": "gate_up_proj"}


def _dynamic_regex(glob: str) -> str:
    """A recipe pattern as the regex GPTQModel, vLLM and SGLang match (re.match, first rule wins) against full module
    names: layer and expert indices may sit between the key's components ("mlp.experts.down_proj" ~
    "...layers.3.mlp.experts.7.down_proj"); a layer pattern pins the index ("layers.3.mlp.down_proj" ~
    "model.layers.3.mlp.down_proj" only); a fused shard's name also matches the engines' fused module."""
    parts = glob.split(".")
    layer = r"\d+"
    if is_layer_pattern(glob):
        layer, parts = _glob_regex(parts[1]), parts[2:]
    regexes = [_glob_regex(p) for p in parts]
    if parts[-1] in _FUSED_NAME:
        regexes[-1] = f"(?:{parts[-1]}|{_FUSED_NAME[parts[-1]]})"
    return rf".*\.layers\.{layer}\." + r"(?:\.\d+)*\.".join(regexes) + "$"


def _glob_regex(part: str) -> str:
    return fnmatch.translate(part).removeprefix("(?s:").removesuffix(")\\Z")


def quantization_config(recipe: Recipe, *, damp: float, method: str, tool: str) -> dict:
    """The standard GPTQ v1 block for config.json; `meta` says who made it (no paths, no calibration text).
    Per-module choices are written twice: `dynamic` for the loaders (GPTQModel, vLLM) and meta.qfit_recipe so
    recipe_from_config() reads back exactly the recipe that was written."""
    qc = {
        "quant_method": "gptq", "bits": int(recipe.bits), "group_size": recipe.group_size, "desc_act": recipe.desc_act,
        "sym": recipe.sym, "checkpoint_format": "gptq", "format": "gptq", "lm_head": False, "true_sequential": True,
        "static_groups": False, "damp_percent": damp, "pack_dtype": "int32",
        "meta": {"quantizer": [tool], "method": method},
    }
    if recipe.keep or recipe.overrides:
        qc["dynamic"] = {f"-:{_dynamic_regex(k)}": {} for k in recipe.keep}
        qc["dynamic"].update({f"+:{_dynamic_regex(o.pattern)}": {"bits": o.bits, "group_size": o.group_size
                                                                 or recipe.group_size} for o in recipe.overrides})
        qc["meta"]["qfit_recipe"] = {"keep": list(recipe.keep), "overrides": [asdict(o) for o in recipe.overrides]}
    return qc


def float_recipe(dtype: str | None) -> Recipe:
    """The float recipe of a checkpoint's torch dtype ("float16" -> fp16; bf16 unless said otherwise)."""
    return parse_recipe({"float16": "fp16", "float32": "fp32"}.get(str(dtype), "bf16"))


def recipe_from_config(qc: dict | None) -> Recipe | None:
    """The recipe a checkpoint's quantization_config describes; None when there is none or its method is one qfit
    does not model (the caller then falls back to the float dtype, and the checkpoint's own headers stay exact).
    Foreign per-module `dynamic` rules (not written by qfit) are not read, for the same reason."""
    if not isinstance(qc, dict) or not qc:
        return None
    method = str(getattr(qc.get("quant_method"), "value", qc.get("quant_method", ""))).lower()
    if method == "gptq":
        extra = (qc.get("meta") or {}).get("qfit_recipe") or {}
        return parse_recipe(f"gptq-int{qc.get('bits', 4)}", qc.get("group_size"), sym=qc.get("sym", True) is not False,
                            desc_act=bool(qc.get("desc_act")), keep=tuple(extra.get("keep") or ()),
                            overrides=tuple(Override(**o) for o in extra.get("overrides") or ()))
    if method == "awq":
        return parse_recipe(f"awq-int{qc.get('bits', 4)}", qc.get("group_size"))
    if method in ("fp8", "mxfp4"):
        return parse_recipe(method)
    return None
