"""The llama.cpp engine on this machine: llama-cpp-python in-process (`qfit profile --backend llama.cpp`) on the
offline SmolLM2-135M Q4_1 GGUF, checked against transformers running the same file's dequantized float weights.

llama-cpp-python is built by scripts/setup.sh (library only, wheel cached); these tests import it plainly, so a
set-up that lost it fails here rather than skipping.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from qfit.cli import cli
from qfit.profile.report import validate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llama(smollm2_gguf):
    from qfit.profile.backends import open_backend

    backend = open_backend("llama.cpp", str(smollm2_gguf), device="cpu", threads=2, n_ctx=1024)
    yield backend
    backend.close()


def test_it_is_the_real_engine_and_reads_the_file_it_was_given(llama, smollm2_gguf):
    import llama_cpp

    assert llama.info.precision == "gguf-q4_1" and llama.info.weight_bytes == smollm2_gguf.stat().st_size
    assert llama.info.vocab == 49152 and llama.versions() == {"llama_cpp_python": llama_cpp.__version__}
    ids = llama.encode("The capital of France is", add_special_tokens=False)
    out = llama.llm.create_completion("The capital of France is", max_tokens=4, temperature=0.0)
    assert "Paris" in out["choices"][0]["text"] and len(ids) == 5


def test_scores_agree_with_transformers_on_the_same_weights(llama, smollm2_dir):
    """Same GGUF, two engines: llama.cpp computes on Q4_1 blocks (activations in Q8_1), transformers on the dequantized
    float32 weights. Same tokens, perplexity within 3 %, top-1 agreement >= 90 % on 255 Python-docs tokens."""
    from qfit.data.texts import load_text
    from qfit.profile.accuracy import TextProtocol, evaluate_text
    from qfit.profile.backends import open_backend

    hf = open_backend("transformers", str(smollm2_dir), device="cpu", dtype="fp32", threads=2)
    text = load_text("pydoc", split="eval").text
    proto = TextProtocol(source="pydoc", max_tokens=256, window=256, stride=256, bos="no")
    res = evaluate_text(llama, hf, text, proto)
    assert res["protocol"]["tokens_scored"] == 255
    ratio = res["ppl_ratio"]["value"]
    assert 0.97 < ratio < 1.03, res
    assert res["top1_agreement"]["value"] >= 0.9 and res["kl"]["value"] < 0.05, res


def test_batches_above_one_are_refused_not_faked(llama):
    from qfit.errors import QfitError

    with pytest.raises(QfitError, match="batch 1 only"):
        llama.time_decode(4, 16, 4)


def test_profile_cli_on_the_gguf_measures_and_compares_with_the_plan(tmp_path, smollm2_gguf):
    out = tmp_path / "out"
    args = ["profile", str(smollm2_gguf), "--backend", "llama.cpp", "--device", "cpu", "--threads", "2",
            "--eval", "ppl", "--text", "pydoc", "--ppl-tokens", "512", "--ppl-window", "256",
            "--input-len", "32,128", "--output-len", "8", "--trials", "2", "--warmup", "1", "--out", str(out), "--plot"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    d = json.loads((out / "profile.json").read_text())
    validate(d)
    assert d["backend"] == "llama.cpp" and d["model"]["precision"] == "gguf-q4_1"
    assert 5 < d["accuracy"]["text"]["model"]["ppl"]["value"] < 40
    assert [r["batch"] for r in d["speed"]["decode"]] == [1]          # the backend's only batch, taken by default
    assert [r["input_len"] for r in d["speed"]["prefill"]] == [32, 128]
    row = d["speed"]["decode"][0]
    assert row["tokens_per_s_per_seq"]["mean"] > 1 and row["tpot_s"]["n"] == 2 * 7
    assert d["prediction"]["available"], d["prediction"]
    assert d["prediction"]["request"]["engine"] == "llama.cpp" and d["comparison"]["decode"][0]["ratio"] > 0
