"""Exact weight bytes of a model (a list of TensorGroup) in a weight format. Pure arithmetic; layouts and skip lists
are cited in profiles/formats.md and in the comments next to each formula."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from qfit.errors import QfitError
from qfit.model.tensors import LINEAR_ROLES, TensorGroup, layer_key
from qfit.precision.ggml import FLOAT_TYPES
from qfit.precision.gguf_bytes import gguf_group_bytes, gguf_split
from qfit.precision.recipe import (
    FP8_BLOCK,
    MXFP4_BLOCK,
    NF4_BLOCK,
    Recipe,
    unquantized_bytes,
)

EXPERT_ROLES = frozenset({"expert_gate", "expert_up", "expert_down"})
_FLOAT_WIDTH = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class WeightBytes:
    total: int                    # bytes stored (all tensors)
    active: int                   # bytes read per decoded token at batch 1 (routed experts: `active` of `count`)
    by_role: dict[str, int]       # bytes per role
    quantized_params: int         # params stored in the low-bit format
    high_precision_params: int    # params kept 16/32-bit
    bits_per_weight: float        # total*8 / total params, incl. scales/zeros/g_idx
    kept_high_precision: tuple[str, ...]   # roles kept 16/32-bit while others are quantized
    notes: tuple[str, ...]        # warnings (group size not dividing a row, GGUF fallbacks, assumptions)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kept_high_precision"] = list(self.kept_high_precision)
        d["notes"] = list(self.notes)
        return d


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def gptq_tensor_bytes(rows: int, cols: int, bits: int, group_size: int) -> int:
    """One GPTQ v1 linear (GPTQModel BaseQuantLinear._register_gptq_buffers, pack dtype int32):
    qweight int32 [ceil(cols*bits/32), rows], qzeros int32 [n_groups, ceil(rows*bits/32)],
    scales fp16 [n_groups, rows], g_idx int32 [cols]; n_groups = ceil(cols/g), 1 for g = -1."""
    groups = 1 if group_size == -1 else _ceil(cols, group_size)
    qweight = _ceil(cols * bits, 32) * rows * 4
    qzeros = groups * _ceil(rows * bits, 32) * 4
    scales = groups * rows * 2
    g_idx = cols * 4
    return qweight + qzeros + scales + g_idx


def awq_tensor_bytes(rows: int, cols: int, bits: int, group_size: int) -> int:
    """One AWQ GEMM linear (packed along out_features, 8 int4 per int32): qweight int32 [cols, rows*bits/32],
    qzeros int32 [n_groups, rows*bits/32], scales fp16 [n_groups, rows]; no g_idx."""
    groups = 1 if group_size == -1 else _ceil(cols, group_size)
    packed = _ceil(rows * bits, 32) * 4
    return cols * packed + groups * packed + groups * rows * 2


def nf4_tensor_bytes(numel: int) -> int:
    """bitsandbytes 4-bit with double quantization (bnb_4bit_use_double_quant=True, the common transformers config):
    packed uint8 [numel/2]; absmax quantized to uint8, one per 64-value block; fp32 nested absmax per 256 blocks;
    per tensor: quant_map 16 fp32 + nested_quant_map 256 fp32 + nested offset fp32 = 1092 bytes.
    Not counted: the small packed-JSON quant_state tensor (~100 B per tensor)."""
    blocks = _ceil(numel, NF4_BLOCK)
    return _ceil(numel, 2) + blocks + 4 * _ceil(blocks, 256) + 1092


def mxfp4_tensor_bytes(rows: int, cols: int) -> int:
    """gpt-oss MXFP4: *_blocks uint8 [.., cols/32, 16] (two FP4 E2M1 per byte) + *_scales uint8 E8M0 per 32 values:
    17 bytes per 32 weights = 4.25 bits per weight."""
    return rows * _ceil(cols, MXFP4_BLOCK) * 17


def fp8_tensor_bytes(rows: int, cols: int, block: int | None) -> int:
    """fp8 e4m3 weight (1 byte) plus scales. Per-channel (llm-compressor FP8_DYNAMIC, vLLM's common fp8 checkpoints):
    weight_scale bf16 [rows, 1]. Block (DeepSeek-V3 weight_block_size [128,128]): weight_scale_inv fp32
    [ceil(rows/128), ceil(cols/128)]."""
    if block:
        return rows * cols + 4 * _ceil(rows, block) * _ceil(cols, block)
    return rows * cols + 2 * rows


def int8_tensor_bytes(rows: int, cols: int) -> int:
    """int8 weight + one fp32 scale per output row (bitsandbytes LLM.int8 SCB float32 [rows]; llm-compressor W8A8
    stores a per-channel scale [rows, 1] in the model dtype, 2 bytes less per row: negligible)."""
    return rows * cols + 4 * rows


def _quantizes(p: Recipe, g: TensorGroup) -> bool:
    """Which roles a format stores low-bit. GPTQModel/AWQ/fp8/int8/bnb quantize the nn.Linear layers inside the blocks
    (experts, shared experts, MLA and linear-attention projections included) and skip lm_head (GPTQModel default)
    and MoE gates (`mlp.gate` in GPTQModel's module trees, `re:.*mlp.gate$` in llm-compressor recipes); embeddings,
    norms, convs and per-head vectors are not Linear layers. gpt-oss ships only the experts in MXFP4. A recipe's
    `keep` patterns leave more modules 16-bit."""
    if p.family == "float":
        return False
    if p.family == "mxfp":
        return g.role in EXPERT_ROLES
    return g.role in LINEAR_ROLES and not (p.keep and p.for_module(g.module) is None)


def _tensor_bytes(p: Recipe, g: TensorGroup, notes: list[str]) -> int:
    """Bytes of ONE tensor of group g in format p (non-GGUF formats)."""
    if not _quantizes(p, g):
        return g.numel * (_FLOAT_WIDTH[p.name] if p.family == "float" else unquantized_bytes(p))
    if p.family in ("gptq", "awq"):
        bits, gs = p.for_module(g.module) if p.overrides else (int(p.bits), p.group_size)
        if gs != -1 and g.cols % gs:
            lib = ("GPTQModel allocates ceil groups, the last one partial" if p.family == "gptq" else
                   "AutoAWQ asserts divisibility and GPTQModel's AWQ buffers use floor: expect the tool to refuse")
            notes.append(f"group size {gs} does not divide in_features {g.cols} of {g.module} "
                         f"({_ceil(g.cols, gs)} groups modelled; {lib})")
        fn = gptq_tensor_bytes if p.family == "gptq" else awq_tensor_bytes
        return fn(g.rows, g.cols, bits, gs)
    if p.family == "bnb":
        return nf4_tensor_bytes(g.numel)
    if p.family == "mxfp":
        return mxfp4_tensor_bytes(g.rows, g.cols)
    if p.family == "fp8":
        return fp8_tensor_bytes(g.rows, g.cols, FP8_BLOCK if p.group_size else None)
    if p.family == "int8":
        return int8_tensor_bytes(g.rows, g.cols)
    raise QfitError(f"no byte model for precision {p.name}")


def weight_bytes(groups: Sequence[TensorGroup], precision: Recipe, *, n_layers: int | None = None
                 ) -> WeightBytes:
    """Stored and per-token-read bytes of `groups` in `precision`.

    Tied embeddings: list `embed` and no `lm_head` group (GGUF then stores token_embd once, in the output type).
    `n_layers` overrides the block count GGUF's layer-dependent rules use (default: the largest per-layer count).
    """
    if not groups:
        raise QfitError("no tensors to size: the model description is empty")
    if precision.per_layer and any(g.role in LINEAR_ROLES and layer_key(g.module) is None for g in groups):
        # a group merged across layers has no index for a layer pattern to match: sizing it would be silently wrong
        raise QfitError(f"{precision.label} sets widths per layer: size it on per-layer tensor groups "
                        "(qfit.model.params.layer_groups)")
    notes: list[str] = [precision.note] if precision.note else []   # how a judgement name was read ("int4" -> GPTQ)
    rows: list[tuple[TensorGroup, int, int, bool]] = []      # (group, total, active, quantized)
    if precision.family == "gguf":
        split, mix_notes = gguf_split(groups, precision.name.removeprefix("gguf-"), n_layers)
        notes += mix_notes      # keep the name's note ("UD-Q4_K_XL" planned as its base mix)
        for g, types in split:
            total, active = gguf_group_bytes(g, types)
            rows.append((g, total, active, not set(types) <= FLOAT_TYPES))
    else:
        for g in groups:
            one = _tensor_bytes(precision, g, notes)
            rows.append((g, one * g.count, one * g.active, _quantizes(precision, g)))
    return _summarise(rows, precision, notes)


def _summarise(rows: list[tuple[TensorGroup, int, int, bool]], p: Recipe, notes: list[str]) -> WeightBytes:
    by_role: dict[str, int] = {}
    qparams = hparams = 0
    kept: list[str] = []
    for g, total, _, quantized in rows:
        by_role[g.role] = by_role.get(g.role, 0) + total
        if quantized:
            qparams += g.params
        else:
            hparams += g.params
    if qparams:     # only meaningful when something is quantized
        quantized_roles = {g.role for g, _, _, q in rows if q}
        kept = sorted({g.role for g, _, _, q in rows if not q} - quantized_roles)
    total = sum(r[1] for r in rows)
    return WeightBytes(
        total=total, active=sum(r[2] for r in rows), by_role=by_role,
        quantized_params=qparams, high_precision_params=hparams,
        bits_per_weight=total * 8 / max(qparams + hparams, 1),
        kept_high_precision=tuple(kept), notes=tuple(dict.fromkeys(notes)),
    )


def _reference_blocks(mlp: str = "mlp") -> list[TensorGroup]:
    """Transformer blocks of a Llama-3-8B-shaped model (32 layers, 4096 hidden, GQA 32/8, 14336 MLP), no embeddings.
    mlp="expert" labels the MLP as experts (for mxfp4, which only quantizes experts)."""
    L, h, kv, ff = 32, 4096, 1024, 14336
    shapes = [("attn_q", h, h), ("attn_k", kv, h), ("attn_v", kv, h), ("attn_o", h, h),
              (f"{mlp}_gate", ff, h), (f"{mlp}_up", ff, h), (f"{mlp}_down", h, ff)]
    return [TensorGroup(f"layers.{r}", r, rows, cols, L, L) for r, rows, cols in shapes]


def bytes_per_param(precision: Recipe) -> float:
    """APPROXIMATE bytes per parameter for a quick matrix view: the exact bytes of the transformer-block linear weights
    of a Llama-3-8B-shaped model divided by their parameter count (scales, zeros, g_idx and GGUF per-tensor mixtures
    included; embeddings, lm_head and the format's skip list excluded). For mxfp4 the MLP is treated as experts
    (gpt-oss layout: attention bf16, experts 4.25 bpw). Use weight_bytes() for a real model."""
    blocks = _reference_blocks("expert" if precision.family == "mxfp" else "mlp")
    return weight_bytes(blocks, precision).total / sum(g.params for g in blocks)
