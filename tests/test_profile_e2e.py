"""qfit profile end to end on the real SmolLM2-135M on CPU: float vs itself, GPTQ 4-bit vs float, bad text.

Kept short for CI (a few minutes on 2 cores): 512 scored tokens, 10 PIQA questions, tiny speed grid.
The GPTQ checkpoint (16 x 256-token calibration windows, group size 64) is cached in the test cache.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from qfit.cli import cli
from qfit.profile.report import validate

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

FAST = ["--eval", "ppl,kl,piqa", "--limit", "10", "--ppl-tokens", "512", "--ppl-window", "256", "--input-len", "32",
        "--batch", "1,2", "--output-len", "4", "--trials", "2", "--warmup", "1", "--threads", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def gptq_dir(smollm2_dir, test_cache):
    dest = test_cache / "profile" / "smollm2-gptq-w4g64-n16x256"
    if not (dest / "config.json").is_file():
        from qfit.quantize.job import QuantizeJob
        from qfit.quantize.run import quantize
        dest.parent.mkdir(parents=True, exist_ok=True)  # a fresh clone has no test cache yet
        # the checkpoint profile measures, not quantize's defaults (tests/test_quantize_ood.py pins those): the
        # settings this cache name has always meant, without act-order and clipping search, at half their CPU time
        job = QuantizeJob.from_flags(bits=4, group_size=64, method="gptq", calib="xsum", nsamples=16, seqlen=256,
                                     heldout_windows=0, desc_act=False, clip_search=False)
        quantize(str(smollm2_dir), dest, job, device="cpu")
    return dest


def _profile(tmp_path, *args) -> dict:
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["profile", *args, "--out", str(out), "--plot"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "profile.json").read_text())
    validate(data)
    md = (out / "profile.md").read_text()
    assert "### Quality" in md and "### Speed" in md
    assert (out / "retained_accuracy.png").stat().st_size > 0 and (out / "decode_vs_batch.png").stat().st_size > 0
    assert max(len(line) for line in res.stdout.splitlines()) <= 100 and "…" not in res.stdout   # qfit.tables
    return data


def _check_schema(d: dict) -> None:
    text = d["accuracy"]["text"]
    for key in ("protocol", "model", "base", "ppl_ratio", "kl", "top1_agreement", "retained_pct", "text_source"):
        assert key in text, key
    assert text["protocol"]["tokens_scored"] >= 500 and text["protocol"]["window"] == 256
    assert text["text_source"]["split"] == "eval"
    task = d["accuracy"]["tasks"][0]
    assert task["task"] == "piqa" and task["n"] == 10
    for role in ("model", "base"):
        assert 0 <= task[role]["acc"]["value"] <= 1 and task[role]["acc"]["se"] >= 0
    assert {"acc", "acc_norm"} <= set(task["retained_pct"])
    assert [r["input_len"] for r in d["speed"]["prefill"]] == [32]
    assert [r["batch"] for r in d["speed"]["decode"]] == [1, 2]
    for row in d["speed"]["decode"]:
        assert row["tokens_per_s_per_seq"]["mean"] > 0 and row["tpot_s"]["n"] == 2 * 3
        assert 0 < row["ttft_s"]["mean"] < 60 and row["bandwidth"]["achieved_gbps"] > 0
    assert d["speed"]["peak_memory"]["bytes"] > d["model"]["weight_bytes"]  # RSS holds at least the weights
    assert "available" in d["prediction"] and len(d["comparison"]["decode"]) == 2
    assert d["versions"]["transformers"].startswith("5.") and d["device"]["kind"] == "cpu"


def test_float_against_itself(tmp_path, smollm2_dir):
    d = _profile(tmp_path, str(smollm2_dir), "--baseline", str(smollm2_dir), *FAST)
    _check_schema(d)
    text = d["accuracy"]["text"]
    assert text["kl"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert text["top1_agreement"]["value"] == 1.0
    assert text["retained_pct"]["value"] == pytest.approx(100.0)
    assert 5 < text["model"]["ppl"]["value"] < 60  # MODELS.md: XSum perplexity of this model ~27
    task = d["accuracy"]["tasks"][0]
    for key in ("acc", "acc_norm"):
        r = task["retained_pct"][key]
        assert r["value"] == pytest.approx(100.0) and r["low"] == pytest.approx(r["high"])
    assert d["model"]["precision"] == "fp32"


def test_gptq_4bit_against_float(tmp_path, smollm2_dir, gptq_dir):
    d = _profile(tmp_path, str(gptq_dir), "--baseline", str(smollm2_dir), *FAST)
    _check_schema(d)
    text = d["accuracy"]["text"]
    assert 1e-3 < text["kl"]["value"] < 2.0  # 4-bit g64 moves the distribution, a broken one would be far off
    assert 0.5 < text["top1_agreement"]["value"] < 1.0
    assert 1.0 < text["ppl_ratio"]["value"] < 2.0
    assert 50 < text["retained_pct"]["value"] < 100
    for key in ("acc", "acc_norm"):
        assert 0 <= d["accuracy"]["tasks"][0]["retained_pct"][key]["value"] <= 300
    assert d["model"]["precision"] == "gptq-int4" and d["baseline"]["precision"] == "fp32"
    assert d["model"]["weight_bytes"] < d["baseline"]["weight_bytes"]


def test_text_too_short_for_the_window(tmp_path, smollm2_dir):
    short = tmp_path / "short.txt"
    short.write_text("Only a few words here.")
    res = CliRunner().invoke(cli, ["profile", str(smollm2_dir), "--text", str(short), "--eval", "ppl", "--no-speed"])
    assert res.exit_code == 2
    # transformers' own "Loading weights" bar may precede it on stderr; the error itself is one final line
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: text too short for the window: 6 tokens < window 512")
    assert "Traceback" not in res.output


TINY = ["--input-len", "16", "--batch", "1", "--output-len", "3", "--trials", "2", "--warmup", "0", "--threads", "1",
        "--device", "cpu"]


def test_json_stays_pure_with_gptqmodel_loaded_and_weight_bytes_agree(gptq_dir, tmp_path):
    """The real CLI in a subprocess (real file descriptors): GPTQModel's banner and INFO lines, transformers' warnings
    go to OUT/qfit-profile.log, progress to stderr, and stdout parses as JSON. The weight bytes profile reports are inspect's and the safetensors'."""
    from qfit.model.headers import read_header
    from qfit.quantize.inspect import inspect_checkpoint

    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = tmp_path / "prof"
    args = ["profile", str(gptq_dir), "--eval", "ppl", "--ppl-tokens", "128", "--ppl-window", "64", *TINY, "--json",
            "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "qfit", *args], env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    d = json.loads(proc.stdout)                                   # nothing but the JSON on stdout
    log = (out / "qfit-profile.log").read_text()
    assert "GPT-QModel" in log and "GPT-QModel" not in proc.stderr  # the library did print: into the log
    assert "qfit profile: speed: done" in proc.stderr                # qfit's own progress stays on the terminal
    header = read_header(gptq_dir / "model.safetensors")
    spans = sum(v["data_offsets"][1] - v["data_offsets"][0] for v in header.values())
    assert d["model"]["weight_bytes"] == inspect_checkpoint(gptq_dir).tensor_bytes == spans
    assert d["model"]["loaded_bytes"] > spans                     # fp32 embedding in memory, fp16 in the file
    whole, phase = d["memory"]["process_peak_rss"], d["memory"]["speed_phase_peak"]
    assert whole["kind"] == phase["kind"] == "process-peak-rss" and whole["bytes"] >= phase["bytes"] > spans
    assert "whole run" in whole["scope"] and "MODEL alone" in phase["scope"]
    assert set(d["speed"]["quality"]) >= {"reliable", "flags", "max_cv", "thresholds"}
    assert d["speed"]["conditions"]["threads"] == 1 and d["speed"]["conditions"]["logical_cpus"] == os.cpu_count()


def test_progress_lines_go_to_stderr_when_it_is_not_a_terminal(smollm2_dir):
    """CliRunner's streams are not terminals: a line per stage (and the renamed flag's note) on stderr, none on
    stdout."""
    args = ["profile", str(smollm2_dir), "--eval", "none", *TINY, "--json"]
    args[args.index("--input-len")] = "--input-lens"              # the old name still works, with a note
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    json.loads(res.stdout)
    for stage in ("loading model", "planner prediction", "speed"):
        assert f"qfit profile: {stage}" in res.stderr and f"qfit profile: {stage}" not in res.stdout
    assert re.search(r"qfit profile: speed: done 4/4 in [\d.]+s", res.stderr)
    assert "note: --input-lens is now --input-len" in res.stderr


def test_a_cpu_run_without_speed_flags_uses_the_cpu_defaults_and_says_so(smollm2_dir):
    res = CliRunner().invoke(cli, ["profile", str(smollm2_dir), "--eval", "none", "--input-len", "16", "--device",
                                   "cpu", "--threads", "1", "--json"])
    assert res.exit_code == 0, res.output
    proto = json.loads(res.stdout)["speed"]["protocol"]
    assert (proto["batches"], proto["output_tokens"], proto["trials"], proto["warmup"]) == ([1, 4], 32, 3, 1)
    assert "note: speed at the CPU defaults --batch 1,4 --output-len 32 --trials 3 --warmup 1" in res.stderr
