"""Shared loading (qfit/loading.py): local folders, GGUF conversion cache, hub ids offline, and clear errors."""

from __future__ import annotations

import json

import pytest

from qfit.errors import QfitError
from qfit.loading import (
    check_model_dir,
    gguf_cache_key,
    load_causal_lm,
    load_tokenizer,
    resolve_model_dir,
    smollm2_gguf_path,
)


def test_local_folder_is_returned_as_is(tiny_llama_dir):
    assert resolve_model_dir(str(tiny_llama_dir)) == tiny_llama_dir


def test_gguf_is_converted_once_into_a_plain_float_folder(smollm2_gguf, smollm2_dir, test_cache):
    assert smollm2_dir.name == gguf_cache_key(smollm2_gguf)
    cfg = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["model_type"] == "llama"
    assert (smollm2_dir / "model.safetensors").stat().st_size > 500e6  # fp32: 134.5 M params x 4 bytes
    assert (smollm2_dir / "tokenizer.json").is_file()
    # cached: the second resolve returns the same folder without converting (no temp sibling appears)
    assert resolve_model_dir(smollm2_gguf, cache_dir=test_cache / "gguf") == smollm2_dir
    assert not list(smollm2_dir.parent.glob("*.tmp-*"))


def test_smollm2_path_points_into_the_wheel(smollm2_gguf):
    assert smollm2_gguf == smollm2_gguf_path() and smollm2_gguf.suffix == ".gguf"
    assert smollm2_gguf.read_bytes()[:4] == b"GGUF"


@pytest.mark.parametrize("model, message", [
    ("./missing-folder", "does not exist"),
    ("/abs/missing.gguf", "does not exist"),
    ("org/name/extra", "does not exist"),
    ("someorg/definitely-not-cached", "offline"),
])
def test_resolve_errors(model, message):
    with pytest.raises(QfitError, match=message):
        resolve_model_dir(model)


def test_non_gguf_file_is_refused(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"\0" * 16)
    with pytest.raises(QfitError, match="not a .gguf"):
        resolve_model_dir(str(f))


def test_folder_checks(tmp_path, tiny_llama_dir):
    with pytest.raises(QfitError, match="does not exist"):
        check_model_dir(tmp_path / "nope")
    with pytest.raises(QfitError, match="no config.json"):
        check_model_dir(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(QfitError, match="no .safetensors"):
        load_causal_lm(tmp_path)
    with pytest.raises(QfitError, match="dtype"):
        load_causal_lm(tiny_llama_dir, dtype="float8")
    model = load_causal_lm(tiny_llama_dir)
    assert not model.training and next(model.parameters()).dtype.is_floating_point
    with pytest.raises(QfitError, match="tokenizer"):
        load_tokenizer(tiny_llama_dir)  # the tiny random model has no tokenizer files
