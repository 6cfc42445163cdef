"""MODEL's quantizable layout read from headers alone, so a recipe is checked before anything heavy happens.

A local folder: its safetensors headers (job.read_layout). A .gguf file: its tensor table, before the minute-long
dequantization to a float folder (qfit.loading.convert_gguf), with llama.cpp's tensor names mapped to the Hugging
Face module names that --keep/--override patterns and GPTQModel use. A hub id or catalog name has no local headers
before its weights are downloaded: it is checked right after the download, before any weights are loaded.
"""

from __future__ import annotations

import re
from pathlib import Path

from qfit.quantize.job import ModelLayout, read_layout

# llama.cpp tensor name inside a block (gguf-py MODEL_TENSOR names) -> the Hugging Face module transformers creates
# from it when it converts the file (transformers/integrations/ggml.py maps them the same way).
GGUF_TO_HF = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_qkv": "self_attn.qkv_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    "ffn_gate_shexp": "mlp.shared_expert.gate_proj", "ffn_up_shexp": "mlp.shared_expert.up_proj",
    "ffn_down_shexp": "mlp.shared_expert.down_proj",
}
GGUF_EXPERTS = {"ffn_gate_exps": "gate_proj", "ffn_up_exps": "up_proj", "ffn_down_exps": "down_proj"}
# Block tensors no GPTQ tool quantizes: norms, the MoE router (ffn_gate_inp), biases and 1-D parameters.
_GGUF_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)\.weight$")
FLOAT32_BYTES = 4   # convert_gguf writes float32 safetensors


def gguf_linears(tensors: list[tuple[str, list[int], int]]) -> dict[str, tuple[int, int]]:
    """{HF module name: (out_features, in_features)} of a GGUF tensor table (GGUF dims are (ne0 = in, ne1 = out))."""
    linears: dict[str, tuple[int, int]] = {}
    for name, dims, _ in tensors:
        m = _GGUF_BLOCK.match(name)
        if not m or len(dims) < 2 or "norm" in m.group(2) or m.group(2) == "ffn_gate_inp":
            continue
        layer, kind = m.group(1), m.group(2)
        in_f, out_f = int(dims[0]), int(dims[1])
        if kind in GGUF_EXPERTS and len(dims) == 3:
            for e in range(int(dims[2])):
                linears[f"model.layers.{layer}.mlp.experts.{e}.{GGUF_EXPERTS[kind]}"] = (out_f, in_f)
        elif len(dims) == 2:
            linears[f"model.layers.{layer}.{GGUF_TO_HF.get(kind, kind)}"] = (out_f, in_f)
    return linears


def gguf_layout(path: Path) -> ModelLayout:
    """The layout the float folder converted from this GGUF file will have (float32, same shapes)."""
    from qfit.errors import QfitError
    from qfit.model.gguf_source import load_gguf, read_gguf_header

    loaded = load_gguf(path)
    _, tensors = read_gguf_header(path)
    linears = gguf_linears(tensors)
    if not linears:
        raise QfitError(f"{path.name}: no quantizable linear layers found (expected blk.N.*.weight matrices)")
    numel = 0
    for _, dims, _ in tensors:
        n = 1
        for d in dims:
            n *= int(d)
        numel += n
    layers = {int(n.split(".")[2]) for n in linears}
    return ModelLayout(float_bytes=numel * FLOAT32_BYTES, float_dtype_bytes=FLOAT32_BYTES, linears=linears,
                       num_layers=len(layers), hidden=loaded.spec.hidden)


def source_layout(model: str) -> ModelLayout | None:
    """The layout of MODEL from local headers (folder or .gguf), or None for a hub id / catalog name."""
    from qfit.loading import check_model_dir
    from qfit.model.ref import model_ref
    from qfit.model.sources import load_model

    ref = model_ref(model)
    if ref.kind == "gguf":
        return gguf_layout(Path(ref.location))
    if ref.kind == "folder":
        folder = Path(ref.location)
        check_model_dir(folder)
        return read_layout(folder, load_model(str(folder)).spec)
    return None


def gguf_needs_conversion(model: str) -> bool:
    """True when MODEL is a .gguf whose float folder is not in qfit's cache yet (qfit.loading.resolve_model_dir)."""
    from qfit import paths
    from qfit.loading import gguf_cache_key
    from qfit.model.ref import model_ref

    ref = model_ref(model)
    if ref.kind != "gguf":
        return False
    return not (paths.cache_dir("gguf") / gguf_cache_key(Path(ref.location)) / "config.json").is_file()
