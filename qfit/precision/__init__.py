"""Weight formats: the validated `Recipe` and the exact bytes a model takes in it (the only place bytes are computed).

Pure computation: no I/O and no numpy/torch/gguf import (the planner must start fast). Sources: profiles/formats.md.

    r = parse_recipe("q4_k_m")                     # Recipe(name="gguf-q4_k_m", family="gguf", ...)
    wb = weight_bytes(groups, r)                   # WeightBytes(total=..., active=..., by_role=..., notes=...)
"""

from qfit.precision.ggml import FTYPE_BASE, GGML_TYPES
from qfit.precision.recipe import (
    DEFAULT_GROUP_SIZE,
    GPTQ_BITS,
    GROUP_SIZES,
    Override,
    Recipe,
    float_recipe,
    format_assumptions,
    gptq_recipe,
    list_precisions,
    parse_recipe,
    quantization_config,
    recipe_from_config,
    unquantized_bytes,
)
from qfit.precision.weights import (
    WeightBytes,
    awq_tensor_bytes,
    bytes_per_param,
    fp8_tensor_bytes,
    gptq_tensor_bytes,
    int8_tensor_bytes,
    mxfp4_tensor_bytes,
    nf4_tensor_bytes,
    weight_bytes,
)

__all__ = [
    "DEFAULT_GROUP_SIZE", "FTYPE_BASE", "GGML_TYPES", "GPTQ_BITS", "GROUP_SIZES", "Override", "Recipe", "WeightBytes",
    "awq_tensor_bytes", "bytes_per_param", "float_recipe", "format_assumptions", "fp8_tensor_bytes", "gptq_recipe",
    "gptq_tensor_bytes", "int8_tensor_bytes", "list_precisions", "mxfp4_tensor_bytes", "nf4_tensor_bytes",
    "parse_recipe", "quantization_config", "recipe_from_config", "unquantized_bytes", "weight_bytes",
]
