"""End to end on the real SmolLM2-135M, on CPU: GPTQ 4-bit g64 vs RTN 4-bit g64 vs the float baseline.

Both checkpoints are reloaded with plain transformers (which uses optimum/gptqmodel's kernels for GPTQ folders) and
scored by perplexity on held-out text: the `eval` split of XSum, which calibration (the `calib` split) never saw.

Stated bound: GPTQ perplexity within PPL_BOUND (x1.5) of the float baseline, and strictly below RTN's. For scale:
4-bit GPTQ on 7B Llamas costs ~2-5 % perplexity, but a 135M model with 576-wide layers is far more sensitive, and
its "float" weights are themselves a dequantized Q4_1 file, so re-quantizing them onto another 4-bit grid compounds
two rounding errors. Observed on this machine (4096 held-out tokens): float 26.3, GPTQ (16 x 256 calibration) 34.9
(x1.33), RTN 36.9 (x1.40). The bound leaves room for calibration noise yet catches a broken checkpoint (a wrong zero
convention or packing gives perplexities in the hundreds or thousands).
"""

from __future__ import annotations

import json
import math

import pytest

from qfit.data.texts import load_text
from qfit.quantize.inspect import inspect_checkpoint
from qfit.quantize.job import QuantizeJob
from qfit.quantize.run import quantize

PPL_BOUND = 1.5
EVAL_TOKENS = 2048
WINDOW = 512
CALIB = dict(nsamples=32, seqlen=256, heldout_windows=0)   # scored below with plain transformers instead

pytestmark = pytest.mark.slow


def perplexity(model_dir, tokens: list[int]) -> float:
    """exp(mean next-token NLL) over non-overlapping WINDOW-token windows, reloading with plain transformers."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), device_map="cpu", dtype=torch.float32
                                                 if not (model_dir / "quantize_config.json").exists() else "auto")
    model.eval()
    nll, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(tokens), WINDOW):
            x = torch.tensor([tokens[i:i + WINDOW]])
            loss = model(x, labels=x).loss.item()
            nll += loss * (x.shape[1] - 1)
            count += x.shape[1] - 1
    return math.exp(nll / count)


@pytest.fixture(scope="module")
def eval_tokens(smollm2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(smollm2_dir))
    text = load_text("xsum", split="eval").text
    return tok(text[: EVAL_TOKENS * 8], add_special_tokens=False)["input_ids"][:EVAL_TOKENS]


@pytest.fixture(scope="module")
def checkpoints(smollm2_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    out = {}
    for method in ("gptq", "rtn"):
        out[method] = root / f"smollm2-{method}-w4g64"
        job = QuantizeJob.from_flags(bits=4, group_size=64, method=method, calib="xsum", **CALIB)
        quantize(str(smollm2_dir), out[method], job, device="cpu")
    return out


def test_checkpoints_are_standard_and_complete(checkpoints):
    for method, path in checkpoints.items():
        result = inspect_checkpoint(path)
        assert result.ok, result.to_dict()
        assert len(result.modules) == 30 * 7 and result.bits == 4 and result.group_size == 64
        report = json.loads((path / "qfit-report.json").read_text())
        assert len(report["layers"]) == 30, method
        assert (path / "tokenizer.json").is_file()
        q = json.loads((path / "config.json").read_text())["quantization_config"]
        assert q["checkpoint_format"] == "gptq" and "offload" not in json.dumps(q)
        # act-order is static: every g_idx is i // group_size, so desc_act=false is true to every reader (vLLM 0.33
        # refuses desc_act=true with groups)
        assert q["desc_act"] is False
        from safetensors import safe_open
        with safe_open(str(path / "model.safetensors"), "pt") as f:
            for name in (k for k in f.keys() if k.endswith(".g_idx")):
                g = f.get_tensor(name)
                assert g.tolist() == [i // 64 for i in range(len(g))], name
    gptq = json.loads((checkpoints["gptq"] / "qfit-report.json").read_text())
    assert gptq["calibration"]["nsamples"] == CALIB["nsamples"] and gptq["calibration"]["source"]["split"] == "calib"
    losses = [m["loss"] for row in gptq["layers"] for m in row["modules"].values()]
    assert len(losses) == 210 and all(isinstance(x, float) and x >= 0 for x in losses)


def test_gptq_beats_rtn_and_stays_near_float(smollm2_dir, checkpoints, eval_tokens, record_property):
    ppl = {"float": perplexity(smollm2_dir, eval_tokens)}
    for method, path in checkpoints.items():
        ppl[method] = perplexity(path, eval_tokens)
    record_property("perplexity", ppl)
    print(f"\nperplexity on {len(eval_tokens)} held-out XSum tokens: {ppl}")
    assert ppl["float"] < 60, ppl  # sanity: the float model is the real one (MODELS.md: ~26.7 on XSum)
    assert ppl["gptq"] <= PPL_BOUND * ppl["float"], ppl
    assert ppl["gptq"] < ppl["rtn"], ppl
