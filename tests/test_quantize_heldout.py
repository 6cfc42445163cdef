"""Issue 17: calibration mixes, the overfit warning said before a run, and held-out perplexity in the quantize report."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from qfit.cli import cli
from qfit.errors import QfitError
from qfit.quantize.calib import MIXES, build_calibration, calibration_parts, calibration_text, shares
from qfit.quantize.heldout import HeldOutProtocol, heldout_header, heldout_lines, perplexities
from qfit.quantize.job import MIN_CALIBRATION_TOKENS, QuantizeJob


@pytest.mark.parametrize("given, expected", [
    ("mix", ["xsum", "boolq-passages", "pydoc"]),
    ("xsum", ["xsum"]),
    ("mix,notes.txt", ["xsum", "boolq-passages", "pydoc", "notes.txt"]),
    (" xsum , pydoc,xsum ", ["xsum", "pydoc"]),          # spaces dropped, a repeated source counted once
    ("pydoc,mix", ["pydoc", "xsum", "boolq-passages"]),
])
def test_calibration_parts(given, expected):
    assert calibration_parts(given) == expected


def test_a_file_whose_name_has_a_comma_is_one_source(tmp_path):
    f = tmp_path / "a,b.txt"
    f.write_text("text")
    assert calibration_parts(str(f)) == [str(f)]


@pytest.mark.parametrize("given", ["", " , ,"])
def test_empty_calib_is_an_error(given):
    with pytest.raises(QfitError, match="--calib is empty"):
        calibration_parts(given)


@pytest.mark.parametrize("n, parts, expected", [
    (8, 3, [3, 3, 2]), (9, 3, [3, 3, 3]), (2, 3, [1, 1, 0]), (8, 1, [8]), (7, 4, [2, 2, 2, 1]),
])
def test_shares(n, parts, expected):
    assert shares(n, parts) == expected and sum(expected) == n


def test_mix_windows_are_interleaved_and_each_from_its_own_calib_split(smollm2_dir):
    from qfit.loading import load_tokenizer

    tok = load_tokenizer(smollm2_dir)
    parts = calibration_text("xsum,pydoc")
    calib, windows = build_calibration(tok, parts, 5, 32)
    alone = {name: build_calibration(tok, calibration_text(name), 3, 32)[1] for name in ("xsum", "pydoc")}
    # shares 3 + 2, interleaved: xsum 0, pydoc 0, xsum 1, pydoc 1, xsum 2
    assert windows == [alone["xsum"][0], alone["pydoc"][0], alone["xsum"][1], alone["pydoc"][1], alone["xsum"][2]]
    src = calib.to_dict()["source"]
    assert src["name"] == "xsum+pydoc" and src["split"] == "calib" and calib.tokens == 5 * 32
    assert "xsum documents [0, " in src["fraction"] and "pydoc documents [0, " in src["fraction"]


@pytest.mark.parametrize("flags, expect", [
    ({}, None),                                                     # the defaults: a mix, enough tokens
        ({"calib": "xsum,pydoc"}, None),                # two sources count as a mix
    ({"calib": "xsum"}, "one text source (xsum)"),
    ({"calib": "notes.txt", "nsamples": 64}, "one text source (notes.txt)"),
    ({"nsamples": 4, "seqlen": 256}, "4 x 256 = 1,024 tokens, below 2,048"),
    ({"calib": "xsum", "nsamples": 2, "seqlen": 64}, "one text source (xsum); 2 x 64 = 128 tokens"),
    ({"method": "rtn", "calib": "xsum"}, None),                     # no calibration, nothing to overfit
])
def test_overfit_warning_is_one_line(flags, expect):
    job = QuantizeJob.from_flags(group_size=64, **flags).for_device("cpu")
    warning = job.overfit_warning()
    if expect is None:
        assert warning is None
        return
    assert warning.startswith("warning: calibration likely to overfit (") and expect in warning
    assert "\n" not in warning and "--calib mix" in warning


def test_default_calibration_is_the_mix():
    job = QuantizeJob.from_flags().for_device("cpu")
    assert job.calib == "mix" and calibration_parts(job.calib) == list(MIXES["mix"]) and len(MIXES["mix"]) == 3
    assert MIN_CALIBRATION_TOKENS == job.nsamples * job.seqlen   # the CPU default: measured to beat RTN
    rtn = QuantizeJob.from_flags(method="rtn")
    assert job.act_order and job.clip_search and not rtn.act_order and not rtn.clip_search
    # static act-order: the written checkpoint says desc_act false (vLLM 0.33 refuses group act-order)
    assert not job.recipe.desc_act and job.to_dict()["act_order"] == "static" and rtn.to_dict()["act_order"] is None


@pytest.mark.parametrize("flags, message", [
    ({"heldout_windows": -1}, "--heldout -1: windows per domain must be 0 (skip) to 32"),
    ({"heldout_windows": 33}, "--heldout 33"),
    ({"heldout_windows": 0, "compare_rtn": True}, "--compare-rtn needs held-out windows"),
])
def test_bad_heldout_flags(flags, message):
    with pytest.raises(QfitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        QuantizeJob.from_flags(**flags)


def test_warning_is_printed_before_the_run_starts(tiny_llama_dir, tmp_path):
    """The line comes before any work: here the run then fails on calibration (the tiny model has no tokenizer)."""
    res = CliRunner().invoke(cli, ["quantize", str(tiny_llama_dir), str(tmp_path / "o"), "--calib", "pydoc",
                                   "--group-size", "32", "--nsamples", "2", "--seqlen", "16"])
    lines = res.output.splitlines()
    first = next(i for i, line in enumerate(lines) if "calibration likely to overfit" in line)
    assert "one text source (pydoc); 2 x 16 = 32 tokens" in lines[first]
    assert res.exit_code != 0 and not (tmp_path / "o").exists()


HELDOUT = {"available": True, "seconds": 12.5, "cpu_seconds": 20.25,
           "protocol": HeldOutProtocol(windows=2, window=512).to_dict(),
           "float": {"news": {"ppl": 23.13, "tokens_scored": 1022, "windows": 2},
                     "python-docs": {"ppl": 11.5, "tokens_scored": 1022, "windows": 2}},
           "gptq": {"news": {"ppl": 29.0, "tokens_scored": 1022, "windows": 2},
                    "python-docs": {"ppl": 13.25, "tokens_scored": 1022, "windows": 2}},
           "rtn": {"news": {"ppl": 30.456, "tokens_scored": 1022, "windows": 2},
                   "python-docs": {"ppl": 14.0, "tokens_scored": 1022, "windows": 2}}}


def test_heldout_lines_and_header():
    assert heldout_lines(HELDOUT) == ["news: float 23.13, gptq 29.00, rtn 30.46",
                                      "python-docs: float 11.50, gptq 13.25, rtn 14.00"]
    assert heldout_header(HELDOUT) == "2 x 512 tokens per domain (eval split), dequantized weights, 12.5 s (20.25 s CPU)"
    assert heldout_lines({"available": False, "reason": "no tokenizer"}) == ["not measured: no tokenizer"]


def test_perplexity_is_exp_of_the_mean_token_nll(tiny_llama_dir):
    """Two windows of different lengths: the domain's perplexity weights tokens, not windows (hand computation)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), dtype=torch.float32).eval()
    windows = [[1, 5, 9, 13, 2], [7, 3, 3]]
    nll = []
    with torch.no_grad():
        for w in windows:
            logp = torch.log_softmax(model(torch.tensor([w])).logits[0].float(), -1)
            nll += [-float(logp[i, w[i + 1]]) for i in range(len(w) - 1)]
    got = perplexities(model, {"d": windows})["d"]
    assert got["tokens_scored"] == 6 and got["windows"] == 2
    assert got["ppl"] == pytest.approx(math.exp(sum(nll) / 6), rel=1e-4)


def test_report_says_when_heldout_cannot_be_measured(tiny_llama_dir, tmp_path):
    """The tiny model has no tokenizer: the checkpoint is still written, the report says why there is no figure."""
    res = CliRunner().invoke(cli, ["quantize", str(tiny_llama_dir), str(tmp_path / "o"), "--method", "rtn",
                                   "--group-size", "32", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "o" / "qfit-report.json").read_text())
    assert report["heldout"]["available"] is False and "tokenizer" in report["heldout"]["reason"]
    assert report["recipe"]["heldout_windows"] == 1 and report["recipe"]["compare_rtn"] is False
    assert "held-out perplexity (1 x 512 tokens per domain" in (tmp_path / "o" / "qfit-report.md").read_text()
