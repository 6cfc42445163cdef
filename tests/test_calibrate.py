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
