"""Where a model's facts come from (I/O only): a local folder, a hub id, a .gguf file, or the built-in catalog.

Only metadata is read, never weights: config.json, the JSON headers of *.safetensors files (8-byte length + JSON),
or the GGUF header. What the user typed is classified by qfit.model.ref (shared with quantize/profile, which fetch
weights instead). Heavy clients (huggingface_hub) are imported inside the functions that need them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from qfit.atomic import write_json, write_text
from qfit.errors import QfitError
from qfit.jsonfile import read_json_object
from qfit.model.headers import read_header, shard_files
from qfit.model.ref import ModelRef, catalog_index, model_ref
from qfit.model.spec import ModelSpec, parse_config
from qfit.paths import cache_dir, safe_name
from qfit.precision.recipe import Recipe, float_recipe, parse_recipe, recipe_from_config


@dataclass(frozen=True)
class HeaderInfo:
    """Exact tensor facts read from safetensors or GGUF headers."""

    params: int                      # stored elements (packed formats store fewer elements than logical params)
    bytes: int                       # tensor data bytes
    tensors: int
    dtype_bytes: dict[str, int] = field(default_factory=dict)   # dtype -> bytes
    file_type: str | None = None     # GGUF: the recipe name, e.g. gguf-q4_k_m

    def to_dict(self) -> dict:
        return {"params": self.params, "bytes": self.bytes, "tensors": self.tensors,
                "dtype_bytes": dict(self.dtype_bytes), "file_type": self.file_type}


@dataclass(frozen=True)
class LoadedModel:
    spec: ModelSpec
    kind: str                        # catalog | local | hub | gguf
    location: str
    header: HeaderInfo | None = None
    params_reference: int | None = None
    quantization_config: dict | None = None

    @property
    def native_precision(self) -> str:
        """What the checkpoint ships in: GGUF file type, quantization_config, else its float dtype."""
        if self.header and self.header.file_type:
            return self.header.file_type
        recipe = recipe_from_config(self.quantization_config)
        return (recipe or float_recipe(self.spec.dtype)).name

    def native_recipe(self) -> Recipe:
        """The recipe the checkpoint ships in, with per-module choices a qfit checkpoint records."""
        recipe = None if self.header and self.header.file_type else recipe_from_config(self.quantization_config)
        return recipe or parse_recipe(self.native_precision)


# ----------------------------------------------------------------------------------------------------------------
# catalog


def catalog_entries() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(set(catalog_index().values()))]


def catalog_models() -> list[LoadedModel]:
    """Every built-in model, each entry read once."""
    return [_load_catalog(p) for p in sorted(set(catalog_index().values()))]


def _load_catalog(path: Path) -> LoadedModel:
    entry = json.loads(path.read_text())
    ref = entry.get("params_reference") or {}
    spec = parse_config(entry["config"], name=entry["name"], source=f"catalog: {path.name}", hub_id=entry.get("hub_id"))
    return LoadedModel(spec=spec, kind="catalog", location=str(path), params_reference=ref.get("value"),
                       quantization_config=entry["config"].get("quantization_config"))


def catalog_lookup(name: str) -> LoadedModel | None:
    path = catalog_index().get(name.strip().lower())
    return _load_catalog(path) if path else None


# ----------------------------------------------------------------------------------------------------------------
# local folders


def header_info(headers: list[dict[str, dict]]) -> HeaderInfo:
    """Totals of validated safetensors headers (qfit.model.headers.read_header)."""
    params = nbytes = count = 0
    by_dtype: dict[str, int] = {}
    for header in headers:
        for t in header.values():
            n = 1
            for d in t["shape"]:
                n *= d
            size = t["data_offsets"][1] - t["data_offsets"][0]
            params, nbytes, count = params + n, nbytes + size, count + 1
            by_dtype[t["dtype"]] = by_dtype.get(t["dtype"], 0) + size
    return HeaderInfo(params=params, bytes=nbytes, tensors=count, dtype_bytes=by_dtype)


def _read_config(path: Path) -> dict:
    if not path.exists():
        raise QfitError(f"no config.json in {path.parent}")
    return read_json_object(path, "config", prefix=f"malformed config.json in {path.parent}")


def _load_local(folder: Path) -> LoadedModel:
    cfg = _read_config(folder / "config.json")
    files = shard_files(folder)
    header = header_info([read_header(f) for f in files]) if files else None
    spec = parse_config(cfg, name=folder.name, source=f"local: {folder}")
    return LoadedModel(spec=spec, kind="local", location=str(folder), header=header,
                       quantization_config=cfg.get("quantization_config"))


# ----------------------------------------------------------------------------------------------------------------
# hub


def _load_hub(repo: str, revision: str | None) -> LoadedModel:
    cache = cache_dir("hub", safe_name(repo), safe_name(revision or "main"))
    cfg_path, meta_path = cache / "config.json", cache / "safetensors.json"
    if not cfg_path.exists():
        _fetch_hub(repo, revision, cache)
    cfg = _read_config(cfg_path)
    header = None
    if meta_path.exists():
        header = HeaderInfo(**json.loads(meta_path.read_text()))
    spec = parse_config(cfg, name=repo, source=f"hub: {repo}" + (f"@{revision}" if revision else ""), hub_id=repo)
    return LoadedModel(spec=spec, kind="hub", location=repo, header=header,
                       quantization_config=cfg.get("quantization_config"))


def _fetch_hub(repo: str, revision: str | None, cache: Path) -> None:
    """config.json + safetensors header metadata (never weights), cached on disk for offline re-use."""
    try:
        from huggingface_hub import get_safetensors_metadata, hf_hub_download
        from huggingface_hub.utils import HfHubHTTPError
    except ImportError:  # pragma: no cover - a declared dependency
        raise QfitError("huggingface_hub is required to read hub models: pip install huggingface_hub") from None
    try:
        cfg_file = hf_hub_download(repo, "config.json", revision=revision)
        meta = get_safetensors_metadata(repo, revision=revision)
    except HfHubHTTPError as exc:
        raise QfitError(f"hub model {repo!r}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # offline, DNS failure, OfflineModeIsEnabled, missing cache ...
        raise QfitError(f"cannot read {repo!r} from the Hugging Face Hub and it is not cached here "
                        f"({type(exc).__name__}); use a catalog name (`qfit models`) or a local folder") from None
    headers = [{name: {"dtype": t.dtype, "shape": t.shape, "data_offsets": list(t.data_offsets)}
                for name, t in fm.tensors.items() if name != "__metadata__"} for fm in meta.files_metadata.values()]
    # config.json last: its presence is what marks the cache entry complete
    write_json(cache / "safetensors.json", header_info(headers).to_dict(), mkdir=True)
    write_text(cache / "config.json", Path(cfg_file).read_text())


# ----------------------------------------------------------------------------------------------------------------
# entry point


def load_model(model: str | ModelRef, *, revision: str | None = None) -> LoadedModel:
    """--model as facts: an existing path (folder, config.json, .gguf), a catalog name or alias, else a hub id."""
    ref = model if isinstance(model, ModelRef) else model_ref(model)
    if ref.kind == "folder":
        return _load_local(Path(ref.location))
    if ref.kind == "gguf":
        from qfit.model.gguf_source import load_gguf

        return load_gguf(Path(ref.location))
    if ref.kind == "catalog":
        return _load_catalog(Path(ref.location))
    return _load_hub(ref.location, revision)
