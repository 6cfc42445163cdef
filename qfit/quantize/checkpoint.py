"""Writing and normalising GPTQ v1 checkpoint folders.

Two producers share this module: the RTN baseline (quantized here, tensor by tensor, straight from the float
safetensors: no model object, so its peak memory is about one tensor) and GPTQModel, whose saved config we normalise
to the standard fields and strip of anything machine-specific (MODELS.md: offload_to_disk records a temp path in meta).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from qfit.jsonfile import read_json_object

# Files copied next to the weights so the folder loads on its own (tokenizer + generation defaults).
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json",
              "merges.txt", "chat_template.jinja", "generation_config.json", "added_tokens.json")
_LAYER_RE = re.compile(r"(^|\.)layers\.(\d+)\.")


def is_quantizable(name: str, shape: tuple) -> bool:
    """2-D linear weights inside the repeated decoder blocks; embeddings, norms, lm_head and MoE routers stay float
    (routers are `mlp.gate` without `_proj`: tiny and precision-sensitive)."""
    if len(shape) != 2 or not name.endswith(".weight") or not _LAYER_RE.search(name):
        return False
    module = name[: -len(".weight")]
    return not (module.endswith("mlp.gate") or "norm" in module or "embed" in module)


def layer_index(name: str) -> int | None:
    m = _LAYER_RE.search(name)
    return int(m.group(2)) if m else None


def read_config(model_dir: Path) -> dict:
    return read_json_object(Path(model_dir) / "config.json", "config")


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def copy_side_files(src: Path, dest: Path) -> list[str]:
    copied = []
    for name in SIDE_FILES:
        if (Path(src) / name).is_file():
            shutil.copy2(Path(src) / name, Path(dest) / name)
            copied.append(name)
    return copied


# Files some engines add beside the checkpoint that no loader reads (GPTQModel's per-module CSV; our report has it).
EXTRA_FILES = ("quant_log.csv",)
_DTYPE_NAMES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32"}


def float_dtype(out_dir: Path) -> str:
    """The dtype of the non-quantized float tensors (norms, embeddings), which config.json's dtype must describe."""
    from qfit.model.headers import read_header

    counts: dict[str, int] = {}
    for shard in Path(out_dir).glob("*.safetensors"):
        for name, entry in read_header(shard).items():
            if entry["dtype"] in _DTYPE_NAMES and not name.endswith(".scales"):
                counts[entry["dtype"]] = counts.get(entry["dtype"], 0) + 1
    return _DTYPE_NAMES[max(counts, key=counts.get)] if counts else "float16"


def finalize_config(out_dir: Path, qcfg: dict) -> dict:
    """Make config.json carry exactly the standard quantization_config and write quantize_config.json beside it.

    GPTQModel and transformers add extra keys (and paths in meta); tools that read these files should see one
    consistent, path-free description. Returns the final config."""
    out_dir = Path(out_dir)
    for name in EXTRA_FILES:
        (out_dir / name).unlink(missing_ok=True)
    config = read_config(out_dir)
    config["quantization_config"] = qcfg
    config["dtype"] = float_dtype(out_dir)
    config.pop("torch_dtype", None)
    write_json(out_dir / "config.json", config)
    write_json(out_dir / "quantize_config.json", qcfg)
    return config


def scrub_text(out_dir: Path, forbidden: list[str]) -> list[str]:
    """Names of config files in out_dir that still contain any forbidden string (temp paths, home folder)."""
    hits = []
    for path in (Path(out_dir) / n for n in ("config.json", "quantize_config.json", "generation_config.json")):
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if any(f and f in text for f in forbidden):
            hits.append(path.name)
    return hits


def write_rtn(model_dir: Path, out_dir: Path, recipe, on_layer=None) -> list[dict]:
    """Round-to-nearest every quantizable tensor of a float folder into a v1 checkpoint at out_dir, at the bits and
    group size the recipe gives each module (modules it keeps stay 16-bit).

    Tensors are read one at a time from the safetensors files; non-quantized tensors are stored as bf16, as GPTQModel
    stores them, so RTN and GPTQ checkpoints differ only in how the linear weights were rounded. Returns per-layer stats (relative weight error, seconds)."""
    import time

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from qfit.quantize.pack import pack_linear, rtn_quantize

    out: dict = {}
    stats: dict[int, dict] = {}
    current = None  # tensors of one layer are contiguous in sorted header order: report a layer when the next starts
    for shard in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as fh:
            for name in fh.keys():
                t0 = time.perf_counter()
                tensor = fh.get_tensor(name)
                stored = recipe.for_module(name) if is_quantizable(name, tuple(tensor.shape)) else None
                if stored is None:
                    out[name] = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
                    continue
                prefix = name[: -len(".weight")]
                bits, group_size = stored
                q, scales, zeros, g_idx = rtn_quantize(tensor, bits, group_size, recipe.sym)
                out.update(pack_linear(q, scales, zeros, g_idx, bits).tensors(prefix))
                deq = (scales.float()[g_idx.long()] * (q - zeros[g_idx.long()]).float()).t()
                err = float(((deq - tensor.float()) ** 2).sum() / (tensor.float() ** 2).sum().clamp_min(1e-30))
                row = stats.setdefault(layer_index(name), {"layer": layer_index(name), "modules": {}, "seconds": 0.0})
                row["modules"][prefix.split(".", 3)[-1] if prefix.count(".") >= 3 else prefix] = {"rel_weight_error": err}
                row["seconds"] += time.perf_counter() - t0
                if on_layer and current is not None and layer_index(name) != current:
                    on_layer(current)
                current = layer_index(name)
    if on_layer and current is not None:
        on_layer(current)
    save_file(out, str(Path(out_dir) / "model.safetensors"), metadata={"format": "pt"})
    return [stats[k] for k in sorted(stats)]
