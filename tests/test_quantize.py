"""`qfit quantize`: config fields, report, --force, memory refusal, atomicity under signals, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from qfit.cli import cli
from qfit.errors import QfitError
from qfit.quantize.job import QuantizeJob
from qfit.quantize.run import clean_stale_temps, quantize

REPO = Path(__file__).resolve().parent.parent


def _run(*args):
    """(exit code, stdout + stderr, stdout alone): JSON must be alone on stdout, progress goes to stderr."""
    res = CliRunner().invoke(cli, ["quantize", *map(str, args)])
    return res.exit_code, res.output, res.stdout


@pytest.fixture(scope="module")
def rtn_out(tiny_llama_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "tiny-w4g64"
    code, output, stdout = _run(tiny_llama_dir, out, "--method", "rtn", "--group-size", "64", "--json")
    assert code == 0, output
    return out, json.loads(stdout)


def test_config_fields_are_standard_v1(rtn_out):
    out, _ = rtn_out
    cfg = json.loads((out / "config.json").read_text())
    q = cfg["quantization_config"]
    assert {k: q[k] for k in ("quant_method", "checkpoint_format", "format", "bits", "group_size", "desc_act", "sym")} \
        == {"quant_method": "gptq", "checkpoint_format": "gptq", "format": "gptq", "bits": 4, "group_size": 64,
            "desc_act": False, "sym": True}
    assert json.loads((out / "quantize_config.json").read_text()) == q
    assert cfg["dtype"] == "bfloat16" and "torch_dtype" not in cfg
    for name in ("config.json", "quantize_config.json"):
        text = (out / name).read_text()
        assert "/tmp" not in text and str(Path.home()) not in text and ".tmp-" not in text


def test_report_files_and_figures(rtn_out):
    out, printed = rtn_out
    report = json.loads((out / "qfit-report.json").read_text())
    assert report["method"] == "rtn" and report["recipe"]["bits"] == 4 and report["calibration"] is None
    assert len(report["layers"]) == 2 and all(len(r["modules"]) == 7 for r in report["layers"])
    # stored bits: 4 + (16-bit scale + 4-bit zero) / 64 + 32-bit g_idx / out_features, between 4.3 and 5
    assert 4.3 < report["bits_per_weight"] < 5.0
    assert report["size_on_disk_bytes"] > report["weight_bytes"] > 0
    assert report["peak_rss_bytes"] > 0 and report["memory_estimate"]["total_bytes"] > 0
    assert report["libraries"]["torch"] and report["libraries"]["safetensors"]
    pred = report["planner_prediction"]
    if pred["available"]:  # the planner's recipe arithmetic must describe what was actually stored
        assert pred["real_weight_bytes"] == report["weight_bytes"]
        assert abs(pred["ratio_real_to_predicted"] - 1) < 0.02, pred
    else:
        assert pred["reason"]
    assert printed["out"] == str(out)
    md = (out / "qfit-report.md").read_text()
    assert "bits per quantized weight" in md and "| layer |" in md


def test_existing_out_needs_force(rtn_out, tiny_llama_dir):
    out, _ = rtn_out
    before = (out / "model.safetensors").stat().st_mtime_ns
    code, output, _ = _run(tiny_llama_dir, out, "--method", "rtn", "--group-size", "64")
    assert code == 2 and "already exists" in output and "--force" in output
    assert (out / "model.safetensors").stat().st_mtime_ns == before
    code, output, _ = _run(tiny_llama_dir, out, "--method", "rtn", "--group-size", "32", "--force", "--json")
    assert code == 0, output
    assert json.loads((out / "config.json").read_text())["quantization_config"]["group_size"] == 32
    assert not list(out.parent.glob(f"{out.name}.old-*")) and not list(out.parent.glob(f"{out.name}.tmp-*"))


@pytest.mark.parametrize("args, message", [
    (["--bits", "5"], "--bits 5 is not supported"),
    (["--group-size", "100"], "--group-size 100 is not supported"),
    (["--group-size", "abc"], "expected auto or one of -1, 16, 32, 64, 128, 256, 512, 1024"),
    (["--group-size", "128"], "does not divide in_features 64"),
    (["--damp", "1.5"], "--damp"),
    (["--desc-act", "--method", "rtn"], "--desc-act needs calibration"),
])
def test_bad_recipe(tiny_llama_dir, tmp_path, args, message):
    code, output, _ = _run(tiny_llama_dir, tmp_path / "o", *(args if "--method" in args else ["--method", "rtn", *args]))
    assert code == 2 and message in output and "Traceback" not in output, output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("model, message", [
    ("./no/such/model", "does not exist"),
    ("/no/such/model.gguf", "does not exist"),
    ("bad/hub/id/too/deep", "does not exist"),
    ("someorg/not-cached-model", "offline"),
])
def test_missing_model(tmp_path, model, message):
    code, output, _ = _run(model, tmp_path / "o", "--method", "rtn")
    assert code == 2 and message in output, output


def test_folder_without_weights(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    code, output, _ = _run(tmp_path / "m", tmp_path / "o", "--method", "rtn")
    assert code == 2 and "no .safetensors" in output


@pytest.mark.parametrize("content, message", [
    (None, "neither a file nor a built-in"),
    (b"\xff\xfe\xfa not utf8", "not UTF-8"),
    (b"", "contains no text"),
])
def test_unreadable_calibration_fails_before_loading(tiny_llama_dir, tmp_path, content, message):
    calib = tmp_path / "calib.txt"
    if content is not None:
        calib.write_bytes(content)
    code, output, _ = _run(tiny_llama_dir, tmp_path / "o", "--calib", calib)
    assert code == 2 and message in output, output


def test_calibration_too_short(smollm2_dir, tmp_path):
    calib = tmp_path / "short.txt"
    calib.write_text("A few words only.\n\n" * 30)
    code, output, _ = _run(smollm2_dir, tmp_path / "o", "--calib", calib, "--nsamples", "64", "--seqlen", "512",
                        "--group-size", "64")
    assert code == 2 and "not 64" in output and "lower --nsamples" in output, output


def test_refuses_when_memory_cannot_hold_the_run(tiny_llama_dir, tmp_path, monkeypatch):
    import qfit.quantize.estimate as est

    monkeypatch.setattr(est, "available_memory", lambda device: 1_000_000)
    with pytest.raises(QfitError, match=r"needs about .* GB .* only 0\.0 GB is available"):
        quantize(str(tiny_llama_dir), tmp_path / "o", QuantizeJob.from_flags(group_size=32, method="rtn"))
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob("o.tmp-*"))


# The real CLI in a subprocess, with each layer slowed to 0.5 s so that a signal lands mid-run on a fast, idle machine
# too (RTN of SmolLM2's 30 layers can finish within a second): the wrapper only delays, it changes nothing else.
_SLOW_CLI = """
import sys, time
import qfit.quantize.checkpoint as ck
_write = ck.write_rtn
def _slow(*a, on_layer=None, **k):
    def tick(i):
        time.sleep(0.5)
        if on_layer:
            on_layer(i)
    return _write(*a, on_layer=tick, **k)
ck.write_rtn = _slow
from qfit.cli import main
sys.argv = ["qfit"] + sys.argv[1:]
main()
"""


def _start(model_dir, out, env_extra=None, sigint=signal.SIG_DFL):
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env_extra or {}))
    # A non-interactive shell starts background jobs with SIGINT ignored, and children inherit that: by default restore
    # it so the child reacts to SIGINT as it does under a terminal's Ctrl-C (one test keeps it ignored on purpose).
    return subprocess.Popen([sys.executable, "-c", _SLOW_CLI, "quantize", str(model_dir), str(out), "--method", "rtn",
                             "--group-size", "64"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))


def _wait_for_temp(proc, out, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        temps = list(out.parent.glob(f"{out.name}.tmp-*"))
        if temps and proc.poll() is None:
            return temps[0]
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be interrupted: {proc.communicate()}")
        time.sleep(0.05)
    pytest.fail("temp folder never appeared")


def test_sigint_stops_a_run_started_with_sigint_ignored(smollm2_dir, tmp_path):
    """Started as a shell's background job (SIGINT ignored), qfit still stops on SIGINT: exit 130, temp removed."""
    out = tmp_path / "ckpt"
    proc = _start(smollm2_dir, out, sigint=signal.SIG_IGN)
    tmp = _wait_for_temp(proc, out)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and b"interrupted" in err and b"terminate called" not in err
    assert not out.exists() and not tmp.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_leaves_nothing_that_looks_complete(smollm2_dir, tmp_path, sig):
    out = tmp_path / "ckpt"
    proc = _start(smollm2_dir, out)
    tmp = _wait_for_temp(proc, out)
    time.sleep(1.0)  # mid-way: 30 layers at >= 0.5 s each take far longer than this
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert not out.exists()
    if sig == signal.SIGKILL:  # no chance to clean up: the temp folder stays, but under its tmp name
        assert tmp.exists() and not (tmp / "qfit-report.json").exists()
        clean_stale_temps(out)  # the next run removes it (its pid is gone)
    else:
        assert proc.returncode not in (0, None), proc.communicate()  # click reports "Aborted!" with exit 1
    assert not tmp.exists()


def test_gptqmodel_log_becomes_per_layer_rows():
    """The shape GPTQModel 7.7 returns from quantize(): {"gptq": [{"layer", "module", "loss", "time", ...}, ...]}."""
    from qfit.quantize.engine import LayerCallback, layer_stats

    seen = []
    cb = LayerCallback(seen.append)
    for idx, final in [(0, False), (0, True), (1, False), (1, True)]:  # GPTQModel reports each layer twice
        cb.layer_complete(layer_idx=idx, submodule_finalized=final)
    assert seen == [0, 1]
    log = {"gptq": [
        {"process": "gptq", "layer": 0, "module": "self_attn.q_proj", "loss": "0.0000704033", "samples": "4096",
         "time": "0.690"},
        {"process": "gptq", "layer": 0, "module": "mlp.down_proj", "loss": "0.0002", "samples": "4096", "time": "1.5"},
        {"process": "gptq", "layer": 1, "module": "mlp.up_proj", "loss": "unknown", "samples": "4096", "time": "x"},
        {"process": "gptq", "module": "no layer"},
    ]}
    rows = layer_stats(log, {})
    assert [r["layer"] for r in rows] == [0, 1]
    assert rows[0]["modules"]["self_attn.q_proj"]["loss"] == pytest.approx(7.04033e-5)
    assert rows[0]["seconds"] == pytest.approx(2.19)
    assert rows[1]["modules"]["mlp.up_proj"]["loss"] is None and rows[1]["seconds"] == 0
    assert layer_stats(log, {0: 5.0})[0]["seconds"] == 5.0
