"""GGUF files as a model source: the header's metadata becomes a config, its tensor table gives exact bytes.

A small pure-Python header parser (GGUF v2/v3): gguf's GGUFReader materialises every metadata array (a 49k-token
vocabulary takes seconds) and importing it pulls numpy; we only need scalars and the tensor table. The type tables
below are llama.cpp's (ggml.h / gguf-py constants); tests check them against the installed gguf package.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any, BinaryIO

from qfit.errors import QfitError
from qfit.model.sources import HeaderInfo, LoadedModel
from qfit.model.spec import parse_config
from qfit.precision.ggml import GGML_TYPES

# ggml type id -> name (ggml.h enum ggml_type); block layouts come from qfit.precision's table (one source of truth)
GGML_TYPE_NAMES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K",
    12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S",
    20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
    29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}
# Types a file may hold that no weight recipe produces (activation-side or integer tensors).
_EXTRA_SIZES = {"Q8_1": (32, 36), "Q8_K": (256, 292), "I8": (1, 1), "I16": (1, 2), "I32": (1, 4), "I64": (1, 8),
                "F64": (1, 8)}
# general.file_type (llama_ftype) -> recipe name
FILE_TYPES: dict[int, str] = {
    0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1", 10: "q2_k", 11: "q3_k_s",
    12: "q3_k_m", 13: "q3_k_l", 14: "q4_k_s", 15: "q4_k_m", 16: "q5_k_s", 17: "q5_k_m", 18: "q6_k",
    19: "iq2_xxs", 20: "iq2_xs", 21: "q2_k_s", 22: "iq3_xs", 23: "iq3_xxs", 24: "iq1_s", 25: "iq4_nl",
    26: "iq3_s", 27: "iq3_m", 28: "iq2_s", 29: "iq2_m", 30: "iq4_xs", 31: "iq1_m", 32: "bf16", 36: "tq1_0",
    37: "tq2_0", 38: "mxfp4_moe",
}
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_ARCH_TO_MODEL_TYPE = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gemma3": "gemma3_text",
                       "deepseek2": "deepseek_v3", "gpt-oss": "gpt_oss", "qwen3next": "qwen3_next"}
# config key -> GGUF metadata suffix (after "<arch>.")
_KEYS = {
    "hidden_size": "embedding_length", "num_hidden_layers": "block_count",
    "intermediate_size": "feed_forward_length", "num_attention_heads": "attention.head_count",
    "num_key_value_heads": "attention.head_count_kv", "head_dim": "attention.key_length",
    "max_position_embeddings": "context_length", "num_local_experts": "expert_count",
    "num_experts_per_tok": "expert_used_count", "moe_intermediate_size": "expert_feed_forward_length",
    "sliding_window": "attention.sliding_window", "kv_lora_rank": "attention.kv_lora_rank",
    "q_lora_rank": "attention.q_lora_rank",
}
_MAX_ARRAY_KEEP = 64  # longer arrays (vocabularies, merges) are skipped, only their length is kept


class _Reader:
    def __init__(self, fh: BinaryIO):
        self.fh = fh

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        raw = self.fh.read(size)
        if len(raw) != size:
            raise QfitError("truncated GGUF header")
        return struct.unpack(fmt, raw)[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > 2**24:
            raise QfitError("corrupt GGUF header (string length)")
        return self.fh.read(n).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9:
            etype, count = self.unpack("<I"), self.unpack("<Q")
            if etype in _SCALARS and count > _MAX_ARRAY_KEEP:
                self.fh.seek(count * struct.calcsize(_SCALARS[etype]), 1)
                return _Skipped(count)
            if etype == 8 and count > _MAX_ARRAY_KEEP:
                for _ in range(count):  # vocabularies / merges: skip the bytes, keep the length
                    self.fh.seek(self.unpack("<Q"), 1)
                return _Skipped(count)
            items = [self.value(etype) for _ in range(count)]
            return items if count <= _MAX_ARRAY_KEEP else _Skipped(count)
        raise QfitError(f"corrupt GGUF header (unknown value type {vtype})")


class _Skipped(int):
    """A long metadata array we did not keep: behaves as its length."""


def read_gguf_header(path: Path) -> tuple[dict[str, Any], list[tuple[str, list[int], int]]]:
    """(metadata, [(tensor name, shape, ggml type id)])."""
    try:
        with open(path, "rb") as fh:
            return _read_header(fh, path)
    except OSError as exc:
        raise QfitError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_header(fh: BinaryIO, path: Path) -> tuple[dict[str, Any], list[tuple[str, list[int], int]]]:
    if fh.read(4) != b"GGUF":
        raise QfitError(f"{path.name} is not a GGUF file (bad magic)")
    r = _Reader(fh)
    version = r.unpack("<I")
    if version not in (2, 3):
        raise QfitError(f"{path.name}: unsupported GGUF version {version}")
    n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.unpack("<I"))
    tensors = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.unpack("<I")
        if n_dims > 8:
            raise QfitError(f"{path.name}: corrupt GGUF header (tensor {name!r:.40} has {n_dims} dimensions)")
        dims = [r.unpack("<Q") for _ in range(n_dims)]
        ttype = r.unpack("<I")
        r.unpack("<Q")  # data offset
        tensors.append((name, dims, ttype))
    return meta, tensors


def header_from_tensors(tensors: list[tuple[str, list[int], int]], file_type: str | None) -> HeaderInfo:
    by_dtype: dict[str, int] = {}
    params = nbytes = 0
    for name, dims, ttype in tensors:
        tname = GGML_TYPE_NAMES.get(ttype)
        if tname is None:
            raise QfitError(f"GGUF tensor {name} has unknown ggml type {ttype}")
        block, size = GGML_TYPES.get(tname) or _EXTRA_SIZES[tname]
        n = 1
        for d in dims:
            n *= d
        b = n // block * size
        params, nbytes = params + n, nbytes + b
        by_dtype[tname] = by_dtype.get(tname, 0) + b
    return HeaderInfo(params=params, bytes=nbytes, tensors=len(tensors), dtype_bytes=by_dtype, file_type=file_type)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_gguf(path: Path) -> LoadedModel:
    meta, tensors = read_gguf_header(path)
    arch = meta.get("general.architecture")
    if not arch or not isinstance(arch, str):
        raise QfitError(f"{path.name}: GGUF header has no general.architecture")
    if not tensors:
        raise QfitError(f"{path.name} holds no tensors")
    cfg: dict[str, Any] = {"model_type": _ARCH_TO_MODEL_TYPE.get(arch, arch)}
    for key, suffix in _KEYS.items():
        value = meta.get(f"{arch}.{suffix}")
        if isinstance(value, list):  # per-layer arrays (e.g. feed_forward_length): take the largest
            value = max(value) if value and all(_is_number(v) for v in value) else value or None
        if value is None:
            continue
        if not _is_number(value):
            raise QfitError(f"{path.name}: GGUF metadata {arch}.{suffix} is {value!r:.40}, not a number")
        cfg[key] = int(value)
    names = {t[0] for t in tensors}
    embd = next((t for t in tensors if t[0] == "token_embd.weight"), None)
    vocab = meta.get("tokenizer.ggml.tokens")
    cfg["vocab_size"] = int(vocab) if isinstance(vocab, _Skipped) else len(vocab) if isinstance(vocab, list) and \
        vocab else (embd[1][-1] if embd and len(embd[1]) > 1 else None)  # GGUF dims are (ne0=hidden, ne1=vocab)
    cfg["tie_word_embeddings"] = "output.weight" not in names
    ft = meta.get("general.file_type")
    file_type = f"gguf-{FILE_TYPES[ft]}" if ft in FILE_TYPES else None
    header = header_from_tensors(tensors, file_type)
    spec = parse_config(cfg, name=str(meta.get("general.name") or path.stem), source=f"gguf: {path}")
    return LoadedModel(spec=spec, kind="gguf", location=str(path), header=header)
