"""`qfit profile --endpoint` against a real OpenAI-compatible server on 127.0.0.1: llama-cpp-python's own server
(`python -m llama_cpp.server`, built by scripts/setup.sh) serving the offline SmolLM2-135M GGUF, then `qfit calibrate`
on what it measured. Small lengths and few requests: this checks the whole path on a real server, not its speed.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from endpoint_servers import llama_cpp_server

from qfit.cli import cli

pytestmark = pytest.mark.slow

# --logits_all False / --n_threads 2: serve as llama-server does (its defaults are logits for every position and half
# the cores). --interrupt_requests False: queue a second request instead of cutting the first one off.
AS_LLAMA_SERVER = ("--n_threads", "2", "--n_threads_batch", "2", "--logits_all", "False", "--n_ctx", "1024")
SERVE = AS_LLAMA_SERVER + ("--interrupt_requests", "False")


def _profile(url: str, gguf, out, *extra, output_len: int = 8, requests: int = 2) -> tuple[dict, str]:
    args = ["profile", "--endpoint", url, "--input-len", "64", "--output-len", str(output_len),
            "--requests", str(requests),
            "--model", str(gguf), "--gpu", "cpu", "--engine", "llama.cpp", "--out", str(out), *extra]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return json.loads((out / "endpoint.json").read_text()), res.output


def test_a_real_llama_cpp_server_measured_beside_the_plan_then_calibrated(smollm2_gguf, tmp_path, monkeypatch):
    monkeypatch.setenv("QFIT_CONFIG_DIR", str(tmp_path / "cfg"))
    with llama_cpp_server(str(smollm2_gguf), timeout_s=180, extra_args=SERVE) as url:
        d, _ = _profile(url, smollm2_gguf, tmp_path / "out", "-b", "1,2", "--plot")
    assert d["complete"] and [lv["concurrency"] for lv in d["levels"]] == [1, 2]
    for lv in d["levels"]:
        assert lv["completed"] == 2 and lv["failed"] == 0 and lv["short_outputs"] == 0
        assert lv["output_tokens"]["min"] == 8 and 0 < lv["ttft_s"]["mean"] < 60 and lv["tpot_s"]["mean"] > 0
    assert abs(d["protocol"]["input_len_probe_served"] - 64) <= 2          # the probe fitted the prompt length
    assert {"ignore_eos", "min_tokens"} <= set(d["protocol"]["fields_accepted"])
    assert d["prediction"]["available"] and d["comparison"]["decode"][0]["ratio"] > 0
    assert (tmp_path / "out" / "endpoint.png").stat().st_size > 0
    res = CliRunner().invoke(cli, ["calibrate", str(tmp_path / "out"), "--accept-unreliable", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["imported"]
    assert [r["batch"] for r in rows] == [1, 2] and rows[0]["engine"] == "llama.cpp"
    assert rows[0]["measured_decode_tokens_per_s_per_seq"] == pytest.approx(
        d["measured"]["decode"][0]["tokens_per_s_per_seq"]["mean"], rel=1e-3)


def test_a_server_that_cuts_requests_off_is_reported_not_hidden(smollm2_gguf, tmp_path):
    """llama-cpp-python's server by default interrupts the request in flight when a new one arrives: at concurrency
    2 streams end early. The report keeps what completed, counts the rest by kind and says the run is incomplete."""
    with llama_cpp_server(str(smollm2_gguf), timeout_s=180, extra_args=AS_LLAMA_SERVER) as url:
        d, output = _profile(url, smollm2_gguf, tmp_path / "out", "-b", "2", output_len=48, requests=4)
    lv = d["levels"][0]
    assert not d["complete"] and lv["failed"] >= 1 and lv["errors"].get("disconnect", 0) >= 1, lv
    assert lv["completed"] + lv["failed"] == lv["requests"] and "incomplete" in output
