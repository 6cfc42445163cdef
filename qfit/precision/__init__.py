"""Weight formats the planner supports and the exact bytes a model takes in each.

Pure computation: no I/O and no numpy/torch/gguf import (the planner must start fast). Sources: profiles/formats.md.

    p = parse_precision("q4_k_m")                  # Precision(name="gguf-q4_k_m", family="gguf", ...)
    wb = weight_bytes(groups, p)                   # WeightBytes(total=..., active=..., by_role=..., notes=...)
"""

from qfit.precision.formats import (
    AWQ_GROUP_SIZES, DEFAULT_GROUP_SIZE, GPTQ_GROUP_SIZES, Precision, format_assumptions, list_precisions,
    parse_precision, unquantized_bytes,
)
from qfit.precision.ggml import FTYPE_BASE, GGML_TYPES
from qfit.precision.weights import (
    WeightBytes, awq_tensor_bytes, bytes_per_param, fp8_tensor_bytes, gptq_tensor_bytes, int8_tensor_bytes,
    mxfp4_tensor_bytes, nf4_tensor_bytes, weight_bytes,
)

__all__ = [
    "AWQ_GROUP_SIZES", "DEFAULT_GROUP_SIZE", "FTYPE_BASE", "GGML_TYPES", "GPTQ_GROUP_SIZES", "Precision",
    "WeightBytes", "awq_tensor_bytes", "format_assumptions", "bytes_per_param", "fp8_tensor_bytes", "gptq_tensor_bytes",
    "int8_tensor_bytes", "list_precisions", "mxfp4_tensor_bytes", "nf4_tensor_bytes", "parse_precision",
    "unquantized_bytes", "weight_bytes",
]
