"""Session fixtures shared by quantize and profile tests: the real offline SmolLM2-135M, converted once and cached.

Environment is set at import time, before any test imports transformers or gptqmodel: no hub access (a missing path
otherwise stalls ~45 s on network retries), and GPTQModel's worker count and caches pointed inside the test cache
(MODELS.md: on a 2-core machine it needs GPTQMODEL_CPU_WORKERS=2, and it writes extension/inductor caches under home/tmp).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_CACHE = Path(os.environ.get("QFIT_TEST_CACHE") or REPO / ".cache" / "test-models")

for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "GPTQMODEL_CPU_WORKERS": "2",
    "GPTQMODEL_TORCH_EXTENSIONS_DIR": str(TEST_CACHE / "torch_extensions"),
    "TORCH_EXTENSIONS_DIR": str(TEST_CACHE / "torch_extensions"),
    "TORCHINDUCTOR_CACHE_DIR": str(TEST_CACHE / "torchinductor"),
    "HF_HOME": str(TEST_CACHE / "hf_home"),
    "QFIT_CACHE": str(TEST_CACHE / "qfit"),
    "TOKENIZERS_PARALLELISM": "false",
    # a developer's own `qfit calibrate` overlays (~/.config/qfit) must not change what the tests expect
    "QFIT_CONFIG_DIR": str(TEST_CACHE / "config"),
}.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def test_cache() -> Path:
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    return TEST_CACHE


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from qfit.errors import QfitError
    from qfit.loading import smollm2_gguf_path

    try:
        return smollm2_gguf_path()
    except QfitError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_gguf: Path, test_cache: Path) -> Path:
    """The float32 HF folder converted from the GGUF (~22 s the first time, reused across runs via the test cache)."""
    from qfit.loading import resolve_model_dir

    return resolve_model_dir(smollm2_gguf, cache_dir=test_cache / "gguf")


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama (hidden 64) saved as float32 safetensors: fast input for RTN/packing/inspect tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=256, max_position_embeddings=128, tie_word_embeddings=True)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).to(torch.float32).save_pretrained(str(path), safe_serialization=True)
    return path
