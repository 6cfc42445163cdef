"""A GPTQ v1 checkpoint as a float model: every quantized linear dequantized once (qfit.quantize.pack), the rest as
stored. Accuracy metrics need the weights' values, not the kernels' speed: on a CPU the GPTQ kernels run a 135M model
at ~0.1 PIQA questions/s, the same weights as float matmuls ~50x faster. The values are the ones the kernels compute
with (W = scale * (q - zero)); what differs is where the matmul rounds (tests/test_dequant.py bounds it).

Per-module bits and groups come from the checkpoint's recipe (GPTQModel `dynamic` overrides included), read as
`qfit inspect` reads it. Safetensors only.
"""

from __future__ import annotations

from pathlib import Path

from qfit.errors import QfitError

_PARTS = ("qweight", "qzeros", "scales", "g_idx")


def dequantized_tensors(header_tensors: dict, recipe) -> dict:
    """Pure over loaded tensors: {name: tensor} of a v1 checkpoint -> float weights, `<module>.weight` in place of
    each module's qweight/qzeros/scales/g_idx (bits per module from `recipe`), everything else unchanged."""
    from qfit.quantize.pack import dequantize_linear

    prefixes = {k[: -len(".qweight")] for k in header_tensors if k.endswith(".qweight")}
    out = {k: v for k, v in header_tensors.items() if k.rsplit(".", 1)[0] not in prefixes or
           k.rsplit(".", 1)[1] not in _PARTS}
    for p in sorted(prefixes):
        stored = recipe.for_module(p)
        if stored is None:
            raise QfitError(f"{p} is stored quantized but the checkpoint's recipe keeps it 16-bit")
        bits = stored[0]
        out[f"{p}.weight"] = dequantize_linear(*(header_tensors[f"{p}.{part}"] for part in _PARTS), bits)
    return out


def load_dequantized(model_dir: Path, *, dtype: str = "float32", device: str = "cpu",
                     trust_remote_code: bool = False):
    """The checkpoint in `model_dir` as a float transformers model in eval mode (no quantization_config)."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from qfit.loading import check_model_dir, safe_model_dir, torch_dtype
    from qfit.model.headers import shard_files
    from qfit.precision import recipe_from_config

    check_model_dir(Path(model_dir))
    config = AutoConfig.from_pretrained(str(safe_model_dir(model_dir)), trust_remote_code=trust_remote_code)
    qc = getattr(config, "quantization_config", None)
    qc = qc if isinstance(qc, dict) or qc is None else qc.to_dict()
    recipe = recipe_from_config(qc) if qc else None
    if recipe is None or recipe.family != "gptq":
        raise QfitError(f"{model_dir} is not a GPTQ checkpoint qfit can dequantize")
    del config.quantization_config
    tensors = {}
    for f in shard_files(Path(model_dir)):
        tensors.update(load_file(str(f)))
    state = dequantized_tensors(tensors, recipe)
    target = torch_dtype(dtype)
    model = AutoModelForCausalLM.from_config(config, dtype=target, trust_remote_code=trust_remote_code)
    missing, unexpected = model.load_state_dict({k: v.to(target) if v.is_floating_point() else v
                                                  for k, v in state.items()}, strict=False)
    tied = {"lm_head.weight"} if getattr(config.get_text_config(), "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise QfitError(f"dequantized {model_dir}: missing {sorted(set(missing) - tied)[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]}")
    model.tie_weights()
    return model.to(device).eval() if device != "cpu" else model.eval().to(torch.device("cpu"))
