"""`qfit calibrate`: factor fit, before/after error, overlay writing (never the repo's profiles)."""

import json

import pytest
import yaml
from click.testing import CliRunner

from qfit.cli import cli
from qfit.profile import calibration

RELIABLE = {"quality": {"reliable": True, "flags": []}}


def _result(decode, prefill, vendor="cpu", backend="transformers", overlay=None, speed=RELIABLE):
    """A minimal profile.json: decode/prefill are lists of (measured, predicted); its speed judged reliable."""
    pred = {"available": True, "accelerator": {"name": "Test CPU (host CPU)", "vendor": vendor}}
    if overlay:
        pred["overlay_factors"] = overlay
    return {"schema": "qfit.profile/1", "created": "2026-11-22T00:00:00+00:00", "backend": backend,
            "device": {"kind": "cpu", "name": "host CPU"}, "model": {"path": "m", "precision": "fp32"},
            "qfit": {"git_commit": "abc"}, "prediction": pred, "speed": speed,
            "comparison": {
                "decode": [{"batch": i + 1, "measured_tokens_per_s_per_seq": m, "predicted_tokens_per_s_per_seq": p}
                           for i, (m, p) in enumerate(decode)],
                "prefill": [{"input_len": 32 * (i + 1), "measured_tokens_per_s": m, "predicted_tokens_per_s": p}
                            for i, (m, p) in enumerate(prefill)]}}


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_fit_factor_median_and_errors():
    f = calibration.fit_factor([(5.0, 10.0), (4.0, 10.0), (6.0, 10.0)])  # ratios .5 .4 .6
    assert f["factor"] == pytest.approx(0.5)
    assert f["error_before_pct"] == pytest.approx(100.0)  # |10/5 - 1| = 100 %
    assert f["error_after_pct"] == pytest.approx(100 / 6)  # 5 vs 4, 5 vs 5, 5 vs 6 -> median |5/6 - 1|
    assert calibration.fit_factor([]) is None


def test_fit_groups_by_engine_and_family():
    res = [("a", _result([(5, 10)], [(50, 100)])), ("b", _result([(30, 10)], [], vendor="nvidia", backend="vllm"))]
    fits = {(f["engine"], f["family"]): f for f in calibration.fit(res)}
    assert set(fits) == {("transformers", "cpu"), ("vllm", "cuda")}
    assert fits[("transformers", "cpu")]["decode"]["factor"] == pytest.approx(0.5)
    assert fits[("vllm", "cuda")]["prefill"] is None


def test_existing_overlay_factor_is_divided_out():
    # predicted 10 already included an overlay factor 2: the reviewed profile said 5, measured 5 -> factor 1
    fits = calibration.fit([("a", _result([(5, 10)], [], overlay={"decode": 2.0}))])
    assert fits[0]["decode"]["factor"] == pytest.approx(1.0)


def test_calibrate_writes_overlay_and_merges(tmp_path, monkeypatch):
    monkeypatch.setenv("QFIT_CONFIG_DIR", str(tmp_path / "cfg"))
    r1 = _write(tmp_path, "p1.json", _result([(5, 10), (6, 10)], [(80, 100)]))
    out = CliRunner().invoke(cli, ["calibrate", r1])
    assert out.exit_code == 0, out.output
    assert "0.550" in out.output and "error before" in out.output
    path = tmp_path / "cfg" / "engines" / "transformers.yaml"
    data = yaml.safe_load(path.read_text())
    entry = data["calibrations"]["cpu"]
    assert data["engine"] == "transformers"
    assert entry["decode_speed_factor"] == pytest.approx(0.55)
    assert entry["prefill_speed_factor"] == pytest.approx(0.8)
    assert entry["error_after"]["decode_median_abs_pct"] < entry["error_before"]["decode_median_abs_pct"]
    # a second family is added beside the first, not over it
    r2 = _write(tmp_path, "p2.json", _result([(20, 10)], [], vendor="nvidia"))
    assert CliRunner().invoke(cli, ["calibrate", r2]).exit_code == 0
    assert set(yaml.safe_load(path.read_text())["calibrations"]) == {"cpu", "cuda"}


def test_calibrate_dry_run_and_out(tmp_path):
    r1 = _write(tmp_path, "p1.json", _result([(5, 10)], []))
    out = tmp_path / "overlay.yaml"
    res = CliRunner().invoke(cli, ["calibrate", r1, "--out", str(out), "--dry-run", "--json"])
    assert res.exit_code == 0 and not out.exists()
    assert json.loads(res.output)["fits"][0]["decode"]["factor"] == pytest.approx(0.5)
    assert CliRunner().invoke(cli, ["calibrate", r1, "--out", str(out)]).exit_code == 0
    assert out.is_file()


@pytest.mark.parametrize("content,error", [
    (None, "no profile result"),
    ("not json", "cannot read"),
    (json.dumps({"schema": "other"}), "not a qfit profile result"),
    (json.dumps({"schema": "qfit.profile/1", "prediction": {"available": False}}), "no measured-vs-predicted pairs"),
])
def test_calibrate_bad_input(tmp_path, content, error):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    res = CliRunner().invoke(cli, ["calibrate", str(path)])
    assert res.exit_code == 2
    assert error in res.output


def test_a_gptq_run_calibrates_its_own_format_not_float_plans(tmp_path, monkeypatch):
    """The README walk-through's real profile.json (SmolLM2 GPTQ 4-bit on this VM's CPU, transformers): GPTQModel's
    CPU kernel decoded at a few % of the plan. Its factors go to `cpu/gptq`; fp32 plans keep theirs (1.0), GPTQ plans
    take the new factor; a float run's `cpu` entry still applies to GPTQ plans that have no entry of their own."""
    from pathlib import Path

    from qfit.engines import load_engines
    monkeypatch.setenv("QFIT_CONFIG_DIR", str(tmp_path / "cfg"))
    real = str(Path(__file__).parent / "data" / "profile_gptq_cpu_walkthrough.json")
    (fit,) = calibration.fit(calibration.read_results([real]), accept_unreliable=True)   # flagged: a busy VM
    assert fit["family"] == "cpu/gptq" and fit["decode"]["factor"] < 0.1
    assert CliRunner().invoke(cli, ["calibrate", real, "--accept-unreliable"]).exit_code == 0
    eng = load_engines().get("transformers")
    assert eng.efficiency("cpu", "fp32").decode_speed_factor == 1.0
    assert eng.efficiency("cpu", "gptq-int4").decode_speed_factor == pytest.approx(fit["decode"]["factor"], rel=1e-3)
    floats = _write(tmp_path, "f.json", _result([(5, 10)], [(80, 100)]))
    assert CliRunner().invoke(cli, ["calibrate", floats]).exit_code == 0
    eng = load_engines().get("transformers")
    assert eng.efficiency("cpu", "fp32").decode_speed_factor == pytest.approx(0.5)
    assert eng.efficiency("cpu", "gptq-int4").decode_speed_factor == pytest.approx(fit["decode"]["factor"], rel=1e-3)
    assert eng.efficiency("cpu", "awq-int4").decode_speed_factor == pytest.approx(0.5)   # no awq entry: the family's


@pytest.mark.parametrize("backend,precision,key", [("cpu", "fp32", "cpu"), ("cuda", "bf16", "cuda"),
                                                   ("cpu", "gptq-int4", "cpu/gptq"), ("cuda", "awq-int4", "cuda/awq"),
                                                   ("metal", "gguf-q4_k_m", "metal/gguf"), ("cuda", "fp8", "cuda/fp8")])
def test_overlay_key(backend, precision, key):
    from qfit.perf.efficiency import overlay_key
    assert overlay_key(backend, precision) == key
