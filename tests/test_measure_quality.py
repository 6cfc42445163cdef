"""Measurements carry their own quality (issue 11): what the machine did during a profile, the verdict on a speed
section, calibrate refusing flagged runs (with an override), previewing its effect and undoing it; the host bandwidth
probe's stability and cache policy; progress lines; the stdout guard; checkpoint weight bytes.

No test times anything: timings are scripted, clocks injected, samples given.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time

import pytest
import yaml
from click.testing import CliRunner

from qfit import host_bandwidth as hb
from qfit.cli import cli
from qfit.errors import QfitError
from qfit.profile.backends.base import Backend, DecodeTiming, ModelInfo
from qfit.profile.conditions import Snapshot, conditions, parse_proc_stat
from qfit.profile.progress import duration, line_progress, progress_line
from qfit.profile.reliability import Thresholds, assess, thresholds, verdict

LIMITS = Thresholds(max_cv=0.15, max_steal_pct=5.0, oversubscription_slack_cores=0.25, min_trials=2)


# ------------------------------------------------------------------------------------------ what the machine was doing

def test_parse_proc_stat_sums_busy_steal_and_total():
    # user nice system idle iowait irq softirq steal guest guest_nice, in ticks of 1/100 s
    text = "cpu  1000 50 200 5000 100 10 40 300 70 0\ncpu0 1 2 3 4 5 6 7 8 9 0\nintr 1 2\n"
    busy, steal, total = parse_proc_stat(text, 100.0)
    assert busy == pytest.approx((1000 + 50 + 200 + 10 + 40) / 100)      # guest is already inside user
    assert steal == pytest.approx(3.0)
    assert total == pytest.approx((1000 + 50 + 200 + 5000 + 100 + 10 + 40 + 300) / 100)
    assert parse_proc_stat("cpu  1 2 3 4\n", 100.0) == (pytest.approx(0.06), 0.0, pytest.approx(0.1))  # old kernels
    assert parse_proc_stat("intr 1 2\n", 100.0) is None
    assert parse_proc_stat("cpu  a b c\n", 100.0) is None


def test_conditions_from_two_snapshots():
    # 10 s of wall time on 4 CPUs: the machine was busy 25 CPU-seconds, 8 of them ours -> others held 1.7 cores;
    # 2 of the 40 CPU-seconds were stolen -> 5 %
    before = Snapshot(100.0, 50.0, 1000.0, 10.0, 4000.0, (1.0, 0.5, 0.2))
    after = Snapshot(110.0, 58.0, 1025.0, 12.0, 4040.0, (2.5, 0.9, 0.3))
    c = conditions(before, after, logical_cpus=4, threads=2)
    assert c["other_load_cores"] == pytest.approx(1.7) and c["free_cores"] == pytest.approx(2.3)
    assert c["steal_pct"] == pytest.approx(5.0) and c["own_cpu_cores"] == pytest.approx(0.8)
    assert c["load_avg_before"] == [1.0, 0.5, 0.2] and c["load_avg_after"][0] == 2.5
    no_proc = conditions(Snapshot(0, 0, None, None, None, None), Snapshot(5, 1, None, None, None, None), 2, 1)
    assert no_proc["other_load_cores"] is None and no_proc["steal_pct"] is None and "no /proc/stat" in no_proc["how"]


def _speed(prefill_cv=0.02, decode_cv=0.03, trials=5) -> dict:
    return {"protocol": {"trials": trials}, "prefill": [{"input_len": 64, "tokens_per_s": {"cv": prefill_cv}}],
            "decode": [{"batch": 1, "tokens_per_s_per_seq": {"cv": decode_cv}},
                       {"batch": 4, "tokens_per_s_per_seq": {"cv": decode_cv / 2}}]}


CALM = {"threads": 2, "free_cores": 1.9, "logical_cpus": 2, "other_load_cores": 0.1, "steal_pct": 0.4}


@pytest.mark.parametrize("speed,cond,kind,flags", [
    (_speed(), CALM, "cpu", []),
    (_speed(decode_cv=0.44), CALM, "cpu", ["decode batch 1: CV 44 % across trials > 15 %"]),
    (_speed(prefill_cv=0.151), CALM, "cpu", ["prefill 64 tokens: CV 15 % across trials > 15 %"]),
    (_speed(decode_cv=0.15), CALM, "cpu", []),                                    # at the threshold: kept
    (_speed(), CALM | {"steal_pct": 7.5}, "cpu", ["CPU steal 7.5 % > 5 %"]),
    (_speed(), CALM | {"free_cores": 0.6, "other_load_cores": 1.4}, "cpu",
     ["over-subscribed: 2 threads but 0.6 of 2 cores free (other processes used 1.4)"]),
    (_speed(), CALM | {"threads": 1, "free_cores": 0.8, "other_load_cores": 1.2}, "cpu", []),   # 1 <= 0.8 + 0.25
    (_speed(), CALM | {"free_cores": 0.6}, "cuda", []),                           # GPU runs: CPU threads not judged
    (_speed(), CALM | {"free_cores": None, "steal_pct": None}, "cpu", []),        # not measured: not flagged
    (_speed(trials=1), CALM, "cpu", ["1 trial(s): no spread measured (at least 2 needed)"]),
])
def test_assess_flags_against_the_thresholds(speed, cond, kind, flags):
    q = assess(speed, cond, kind, LIMITS)
    assert q["flags"] == flags and q["reliable"] is (not flags)
    assert q["thresholds"]["max_cv"] == 0.15


def test_thresholds_come_from_the_profiles_file():
    assert thresholds() == LIMITS


@pytest.mark.parametrize("result,trusted,why", [
    ({"speed": {"quality": {"reliable": True, "flags": []}}}, True, ""),
    ({"speed": {"quality": {"reliable": False, "flags": ["CPU steal 9 % > 5 %"]}}}, False, "CPU steal 9 %"),
    ({"speed": {"prefill": []}}, False, "without a quality assessment"),
    ({"speed": None}, False, "without a quality assessment"),
])
def test_verdict(result, trusted, why):
    ok, reason = verdict(result)
    assert ok is trusted and why in reason


# ------------------------------------------------------------------------------- a real result file, scripted timings

class ScriptedBackend(Backend):
    """Times come from a script instead of a clock: prefill seconds per call, decode step seconds per call."""

    name = "transformers"

    def __init__(self, prefill_s: list[float], step_s: list[float]):
        self.device = "cpu"
        self.info = ModelInfo("scripted", "fp32", "float32", 100, 400, 400, 8)
        self._prefill, self._steps = iter(prefill_s), iter(step_s)

    def time_prefill(self, input_len, batch=1):
        return next(self._prefill)

    def time_decode(self, batch, input_len, output_tokens):
        step = next(self._steps)
        return DecodeTiming(ttft_s=0.1, step_s=[step] * (output_tokens - 1))

    def peak_memory(self):
        return {"kind": "process-peak-rss", "bytes": 2**30, "scope": "scripted", "how": "scripted"}


def profile_result(step_s: list[float], free_cores: float = 1.9, vendor: str = "nvidia",
                   key: str = "h100-sxm") -> dict:
    """A profile.json built by the real speed, comparison and assessment code over scripted timings (warmup 1 and
    3 trials of one prefill and one decode row), predicted 100 prefill and 10 decode tokens/s."""
    from qfit.profile.predict import compare
    from qfit.profile.speed import run_speed

    backend = ScriptedBackend([0.5, 0.64, 0.64, 0.64], step_s)
    speed = run_speed(backend, input_lens=[64], batches=[1], output_tokens=5, trials=3, warmup=1, device_gbps=None)
    cond = {"threads": 2, "free_cores": free_cores, "logical_cpus": 2, "other_load_cores": 2 - free_cores,
            "steal_pct": 0.3}
    speed["conditions"], speed["quality"] = cond, assess(speed, cond, "cpu", thresholds())
    prediction = {"available": True, "accelerator": {"key": key, "name": key, "vendor": vendor},
                  "prefill": [{"input_len": 64, "tokens_per_s": 200.0}],
                  "decode": [{"batch": 1, "tokens_per_s_per_seq": 10.0, "tpot_s": 0.1, "ttft_s": 0.64}]}
    return {"schema": "qfit.profile/1", "created": "2026-11-29T00:00:00+00:00", "backend": "transformers",
            "device": {"kind": "cuda" if vendor == "nvidia" else "cpu", "name": key}, "qfit": {"git_commit": "abc"},
            "model": {"path": "scripted", "precision": "fp32"}, "speed": speed, "prediction": prediction,
            "comparison": compare(speed, prediction)}


STEADY = [0.2, 0.2, 0.2, 0.2]          # warmup + 3 trials of 0.2 s per step: 5 tok/s, CV 0
NOISY = [0.2, 0.1, 0.4, 0.2]           # warmup, then 10, 2.5, 5 tok/s: sd 3.819 / mean 5.833 = CV 0.655


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_the_report_says_what_each_figure_is():
    from qfit.profile import report

    res = profile_result(NOISY) | {"memory": {"process_peak_rss": {"kind": "process-peak-rss", "bytes": 3 * 2**29,
                                                                   "scope": "whole run: MODEL loaded"}}}
    res["speed"]["conditions"] |= {"load_avg_before": [4.4, 3.0, 2.0], "load_avg_after": [5.1, 3.2, 2.1]}
    assert report.quality_line(res) == (
        "Speed measurement quality: FLAGGED UNRELIABLE (qfit calibrate refuses it): decode batch 1: CV 65 % across "
        "trials > 15 %. max CV 65.5 % (decode batch 1); load average 4.4 -> 5.1, other processes 0.10 cores, steal "
        "0.3 %, threads 2 on 2 CPUs.")
    assert report.memory_line(res) == ("Peak memory: process peak RSS 1.50 GiB (whole run: MODEL loaded); process "
                                       "peak RSS 1.00 GiB (scripted).")
    res["speed"]["peak_memory"] = {"kind": "device-allocator", "bytes": 2**31, "scope": "speed phase: MODEL alone"}
    assert "device allocator peak 2.00 GiB (speed phase: MODEL alone)" in report.memory_line(res)
    del res["speed"]["quality"]
    assert "not assessed" in report.quality_line(res)
    info = {"weight_bytes": 114_523_776, "loaded_bytes": 171_224_128, "dtype": "float32"}
    assert report.weights_text(info) == ("114,523,776 weight bytes in the checkpoint, 171,224,128 bytes loaded in "
                                         "memory at float32")


@pytest.fixture()
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("QFIT_CONFIG_DIR", str(tmp_path / "cfg"))
    return tmp_path / "cfg" / "engines"


def test_a_scripted_noisy_run_is_flagged_by_the_real_code():
    res = profile_result(NOISY)
    row = res["speed"]["decode"][0]["tokens_per_s_per_seq"]
    assert row["mean"] == pytest.approx((10 + 2.5 + 5) / 3) and row["cv"] == pytest.approx(0.6547, abs=1e-4)
    assert res["speed"]["quality"]["reliable"] is False
    assert res["speed"]["quality"]["flags"] == ["decode batch 1: CV 65 % across trials > 15 %"]
    assert profile_result(STEADY)["speed"]["quality"]["reliable"] is True


def test_calibrate_refuses_a_noisy_run_and_the_override_folds_it_in(tmp_path, cfg):
    noisy = _write(tmp_path, "noisy.json", profile_result(NOISY))
    res = CliRunner().invoke(cli, ["calibrate", noisy])
    assert res.exit_code == 2 and not cfg.exists()
    assert res.output.strip() == (f"error: refusing {noisy}: flagged unreliable: decode batch 1: CV 65 % across "
                                  "trials > 15 %; re-profile on a quiet machine, or pass --accept-unreliable to fold "
                                  "it in anyway")
    oversubscribed = _write(tmp_path, "busy.json", profile_result(STEADY, free_cores=0.5))
    res = CliRunner().invoke(cli, ["calibrate", oversubscribed, _write(tmp_path, "ok.json", profile_result(STEADY))])
    assert res.exit_code == 2 and "over-subscribed: 2 threads but 0.5 of 2 cores free" in res.output
    res = CliRunner().invoke(cli, ["calibrate", noisy, "--accept-unreliable"])
    assert res.exit_code == 0, res.output
    entry = yaml.safe_load((cfg / "transformers.yaml").read_text())["calibrations"]["cuda"]
    assert entry["decode_speed_factor"] == pytest.approx(round((10 + 2.5 + 5) / 3 / 10, 4))
    assert entry["sources"][0]["measurement"].startswith("accepted although flagged unreliable: decode batch 1")
    assert "note: " in res.output and "accepted although" in res.output


def test_results_without_an_assessment_are_refused(tmp_path, cfg):
    old = profile_result(STEADY)
    del old["speed"]["quality"]
    res = CliRunner().invoke(cli, ["calibrate", _write(tmp_path, "old.json", old), "--dry-run"])
    assert res.exit_code == 2 and "without a quality assessment" in res.output


def test_preview_shows_reference_plans_before_and_after(tmp_path, cfg):
    """The factors multiply the planner's decode and prefill rates: after = before x factor, row by row."""
    path = _write(tmp_path, "ok.json", profile_result(STEADY))
    res = CliRunner().invoke(cli, ["calibrate", path, "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["written"] == [] and not cfg.exists()
    f = out["fits"][0]
    assert f["decode"]["factor"] == pytest.approx(0.5) and f["prefill"]["factor"] == pytest.approx(0.5)
    pv = f["preview"]
    assert pv["accelerator"] == "NVIDIA H100 SXM"
    assert [(r["model"], r["precision"], r["batch"]) for r in pv["rows"]] == [
        ("smollm2-135m", "fp32", 1), ("llama-3.2-1b-instruct", "bf16", 4), ("llama-3.1-8b", "gptq-int4", 1)]
    for r in pv["rows"]:
        for key in ("decode_tokens_per_s", "prefill_tokens_per_s"):
            assert r["after"][key] == pytest.approx(0.5 * r["before"][key], rel=1e-3)
    text = CliRunner().invoke(cli, ["calibrate", path]).output
    assert "reference plans, tokens/s before -> after" in text and "llama-3.1-8b" in text
    assert f"wrote {cfg / 'transformers.yaml'} (undo: qfit calibrate --reset)" in text


def test_preview_says_why_a_reference_plan_cannot_be_made(tmp_path, cfg):
    # transformers on an Apple GPU runs float weights only: the GPTQ reference plan has a reason, not numbers
    path = _write(tmp_path, "mps.json", profile_result(STEADY, vendor="apple", key="m3-max-40c"))
    out = json.loads(CliRunner().invoke(cli, ["calibrate", path, "--dry-run", "--json"]).output)
    rows = {r["model"]: r for r in out["fits"][0]["preview"]["rows"]}
    assert out["fits"][0]["family"] == "metal"
    assert "before" in rows["smollm2-135m"] and "gptq" in rows["llama-3.1-8b"]["reason"].lower()


def test_reset_restores_then_removes(tmp_path, cfg):
    first = _write(tmp_path, "a.json", profile_result(STEADY))                      # factors 0.5
    second = _write(tmp_path, "b.json", profile_result([0.1, 0.1, 0.1, 0.1]))      # 10 tok/s: decode factor 1.0
    overlay = cfg / "transformers.yaml"
    assert CliRunner().invoke(cli, ["calibrate", first]).exit_code == 0
    assert CliRunner().invoke(cli, ["calibrate", second]).exit_code == 0
    assert yaml.safe_load(overlay.read_text())["calibrations"]["cuda"]["decode_speed_factor"] == 1.0
    dry = CliRunner().invoke(cli, ["calibrate", "--reset", "--dry-run"])
    assert dry.exit_code == 0 and dry.output.startswith("would restore ")
    assert yaml.safe_load(overlay.read_text())["calibrations"]["cuda"]["decode_speed_factor"] == 1.0
    res = CliRunner().invoke(cli, ["calibrate", "--reset"])
    assert res.output.strip() == (f"restored {overlay}: factors removed cuda decode x1 prefill x0.5; in force after "
                                  "it: cuda decode x0.5 prefill x0.5")
    assert yaml.safe_load(overlay.read_text())["calibrations"]["cuda"]["decode_speed_factor"] == 0.5
    assert not (cfg / "transformers.yaml.prev").exists()
    res = CliRunner().invoke(cli, ["calibrate", "--reset", "--json"])
    assert json.loads(res.output)["reset"][0] == {"path": str(overlay), "action": "removed",
                                                  "removed": {"cuda": {"decode": 0.5, "prefill": 0.5}}, "now": {}}
    assert not overlay.exists()
    res = CliRunner().invoke(cli, ["calibrate", "--reset"])
    assert res.exit_code == 2 and "nothing to reset" in res.output


@pytest.mark.parametrize("args,error", [
    (["--reset", "r.json"], "--reset takes no RESULTS"),
    ([], "no RESULTS"),
    (["--reset", "--out", "missing.yaml"], "no calibration overlay at missing.yaml"),
])
def test_calibrate_flag_errors(cfg, args, error):
    res = CliRunner().invoke(cli, ["calibrate", *args])
    assert res.exit_code == 2 and error in res.output and len(res.output.strip().splitlines()) == 1


def test_a_stale_backup_does_not_come_back(tmp_path, cfg):
    """An overlay removed by hand leaves its .prev: the next write drops it, so --reset removes, not resurrects."""
    path = _write(tmp_path, "a.json", profile_result(STEADY))
    for _ in range(2):
        assert CliRunner().invoke(cli, ["calibrate", path]).exit_code == 0
    (cfg / "transformers.yaml").unlink()
    assert CliRunner().invoke(cli, ["calibrate", path]).exit_code == 0
    assert not (cfg / "transformers.yaml.prev").exists()
    assert CliRunner().invoke(cli, ["calibrate", "--reset"]).output.startswith("removed ")


# ------------------------------------------------------------------------------------------ the host bandwidth probe

PARAMS = hb.ProbeParams(mib=8, agree_runs=3, agree_pct=10.0, max_runs=6, max_load_per_cpu=0.5, max_age_days=30,
                        recheck_flagged_hours=1)


@pytest.mark.parametrize("samples,window", [
    ([10.0, 10.5], None),                                   # fewer than 3 runs
    ([10.0, 10.5, 10.9], [10.0, 10.5, 10.9]),               # (10.9 - 10) / 10.5 = 8.6 %
    ([10.0, 10.5, 11.2], None),                             # 11.4 %
    ([3.0, 10.0, 10.5, 10.9], [10.0, 10.5, 10.9]),          # only the last runs count
])
def test_stable_window(samples, window):
    assert hb.stable_window(samples, 3, 10.0) == window


def _script(values):
    it = iter(values)
    return lambda: next(it)


def test_probe_stops_when_the_last_runs_agree():
    p = hb.probe(_script([5.6, 14.0, 14.4, 14.2, 99.0]), PARAMS)
    assert p.samples_gbps == [5.6, 14.0, 14.4, 14.2] and p.stable and p.flags == []
    assert p.gbps == 14.2 and p.spread_pct == pytest.approx(100 * 0.4 / 14.2, abs=0.01)


def test_probe_gives_up_at_the_cap_and_says_so():
    p = hb.probe(_script([5.6, 14.4, 8.0, 13.0, 6.0, 12.0, 99.0]), PARAMS)
    assert len(p.samples_gbps) == 6 and not p.stable
    assert p.gbps == 12.0                                   # median of the last three: 13, 6, 12
    assert p.flags == ["unstable: no 3 consecutive runs within 10 % in 6 runs"]


@pytest.mark.parametrize("load,cpus,flagged", [(None, 2, False), (0.9, 2, False), (1.0, 2, False), (1.1, 2, True),
                                               (4.4, 2, True), (3.0, 8, False)])
def test_load_flags(load, cpus, flagged):
    assert bool(hb.load_flags(load, cpus, PARAMS)) is flagged


NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("entry,reason", [
    (None, "no measurement"),
    ({"gbps": 14.4, "date": "2026-11-29"}, "older qfit"),                       # the old record: no stability
    ({"gbps": 300.0, "date": "2020-01-01", "recorded": True}, None),            # the user's STREAM figure
    ({"gbps": 14.4, "measured_at": "2026-11-20T12:00:00+00:00", "flags": []}, None),
    ({"gbps": 14.4, "measured_at": "2026-10-29T11:00:00+00:00", "flags": []}, "older than 30 days"),
    ({"gbps": 5.6, "measured_at": "2026-11-29T11:30:00+00:00", "flags": ["loaded"]}, None),   # flagged, 30 min old
    ({"gbps": 5.6, "measured_at": "2026-11-29T10:30:00+00:00", "flags": ["loaded"]}, "flagged (loaded)"),
])
def test_when_a_cached_figure_is_measured_again(entry, reason):
    got = hb.needs_measuring(entry, NOW, PARAMS)
    assert (got is None) if reason is None else (reason in got)


CPUINFO = "\n\n".join(f"processor\t: {i}\nmodel name\t: AMD EPYC 9654 96-Core Processor\nphysical id\t: 0\n"
                       f"core id\t: {i}\ncpu MHz\t\t: 2400.000\nflags\t\t: avx2 fma" for i in range(2))
MEMINFO = "MemTotal:       65536000 kB\nMemAvailable:   49152000 kB\n"


def test_host_accelerator_re_measures_a_stale_figure(tmp_path, monkeypatch):
    from qfit.host import host_accelerator, record_bandwidth

    cache = tmp_path / "host.json"
    cpuinfo = CPUINFO.replace("AMD EPYC 9654 96-Core Processor", "Mystery CPU")
    hb.store("Mystery CPU", {"gbps": 5.6, "how": "numpy copy", "date": "2026-11-01"}, cache)   # an older qfit's
    assert host_accelerator(cpuinfo, MEMINFO, cache=cache).bandwidth_gbps == 5.6     # used as is without measuring
    fresh = {"gbps": 14.4, "how": "probe", "measured_at": "2026-11-29T12:00:00+00:00", "samples_gbps": [14.0, 14.4,
             14.5], "spread_pct": 3.5, "stable": True, "flags": [], "load_avg_before": 0.1, "load_avg_after": 0.9}
    calls = []
    monkeypatch.setattr(hb, "measure", lambda: calls.append(1) or fresh)
    monkeypatch.setattr(hb, "now", lambda: NOW)
    acc = host_accelerator(cpuinfo, MEMINFO, cache=cache, measure=True)
    assert acc.bandwidth_gbps == 14.4 and calls == [1]
    assert "spread 3.5 % over 3 runs, load average 0.1 before; stable" in dict(acc.sources)["bandwidth_gbps"]
    assert json.loads(cache.read_text())["Mystery CPU"]["measured_at"] == fresh["measured_at"]
    host_accelerator(cpuinfo, MEMINFO, cache=cache, measure=True)                     # fresh now: not measured again
    assert calls == [1]
    table = host_accelerator(CPUINFO, MEMINFO, cache=cache, measure=True)             # a tabled CPU is not probed
    assert table.bandwidth_gbps == 460.8 and calls == [1]
    record_bandwidth("Mystery CPU", 71.3, "STREAM triad, 8 threads", cache=cache)    # the user's own figure: kept
    monkeypatch.setattr(hb, "now", lambda: NOW + dt.timedelta(days=400))
    acc = host_accelerator(cpuinfo, MEMINFO, cache=cache, measure=True)
    assert acc.bandwidth_gbps == 71.3 and calls == [1] and "recorded by the user" in dict(acc.sources)["bandwidth_gbps"]


def test_the_probe_runs_in_a_child_and_returns_its_record(monkeypatch):
    """The child protocol end to end on 8 MiB arrays (the figure itself is not checked: nothing here is timed).
    Probing in this process is made impossible, so the record can only have come from the child."""
    def in_process(*args):
        raise AssertionError("probed in the parent process")

    monkeypatch.setattr(hb, "measure_here", in_process)
    entry = hb.measure(PARAMS)
    assert entry["gbps"] > 0 and 3 <= len(entry["samples_gbps"]) <= PARAMS.max_runs
    assert entry["stable"] is (not any(f.startswith("unstable") for f in entry["flags"]))
    assert entry["logical_cpus"] == os.cpu_count() and entry["measured_at"].startswith(entry["date"])
    assert hb.needs_measuring(entry, hb.now(), PARAMS) is None or entry["flags"]


def test_probe_parameters_come_from_the_profiles_file():
    p = hb.probe_params()
    assert (p.agree_runs, p.agree_pct, p.max_runs, p.max_age_days) == (3, 10.0, 15, 30.0)


# ----------------------------------------------------------------------------------------------------- progress lines


@pytest.mark.parametrize("seconds,text", [(4.25, "4.2s"), (59.94, "59.9s"), (75, "1m15s"), (3725, "1h02m05s")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_progress_line_eta_from_the_mean_step():
    assert progress_line("speed", 10, 40, 60.0) == "qfit profile: speed: 10/40 (25 %), elapsed 1m00s, ETA 3m00s"
    assert progress_line("speed", 0, 40, 5.0) == "qfit profile: speed: 0/40 (0 %), elapsed 5.0s"


def test_line_progress_paces_its_lines():
    """One line at the start, at most one per 30 s while ticking, one at the end (clock injected)."""
    times = iter([0.0, 10.0, 31.0, 45.0, 62.0, 70.0, 71.0])   # start, ticks 1-5, end
    lines = []
    progress = line_progress(lines.append, clock=lambda: next(times), every_s=30.0)
    with progress("speed", 6) as tick:
        for _ in range(5):
            tick()
    assert lines == ["qfit profile: speed: started (6 steps)",
                     "qfit profile: speed: 2/6 (33 %), elapsed 31.0s, ETA 1m02s",
                     "qfit profile: speed: 4/6 (67 %), elapsed 1m02s, ETA 31.0s",
                     "qfit profile: speed: done 5/6 in 1m11s"]


def test_a_step_longer_than_the_interval_still_gets_lines():
    """A single slow step (GPTQ's CPU kernel decoding) is not silent: the heartbeat says which step is running."""
    lines = []
    progress = line_progress(lines.append, every_s=0.05)
    with progress("speed", 2) as tick:
        time.sleep(0.5)              # step 1 runs for ten intervals without a tick
        tick()
    running = [x for x in lines if x.endswith("; step 1 still running")]
    assert running and all(x.startswith("qfit profile: speed: 0/2 (0 %), elapsed ") for x in running)
    assert lines[0] == "qfit profile: speed: started (2 steps)" and lines[-1].startswith("qfit profile: speed: done 1/2")


# -------------------------------------------------------------------------------------------------------- stdout guard

def test_stdout_to_stderr_moves_fd_1_and_sys_stdout(capfd):
    from qfit.stdio import stdout_to_stderr

    with stdout_to_stderr():
        os.write(1, b"raw fd 1\n")
        print("python print")
    print("result")
    sys.stdout.flush()
    out, err = capfd.readouterr()
    assert out == "result\n"
    assert "raw fd 1" in err and "python print" in err


# ------------------------------------------------------------------------------------------------------ weight bytes

def _entry(dtype, shape, begin):
    n = 1
    for s in shape:
        n *= s
    size = {"F16": 2, "F32": 4, "I32": 4}[dtype] * n
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, begin + size]}


HEADER = {"model.embed_tokens.weight": _entry("F16", [100, 8], 0),        # 1,600 bytes
          "model.layers.0.w": _entry("I32", [8, 8], 1600),                 # 256
          "lm_head.weight": _entry("F16", [100, 8], 1856)}                 # 1,600: a copy when tied


@pytest.mark.parametrize("header,tied,expected", [
    (HEADER, True, 1856),                                   # tied: the stored lm_head copy counted once
    (HEADER, False, 3456),                                  # untied: two matrices
    (HEADER | {"lm_head.weight": _entry("F32", [100, 8], 1856)}, True, 5056),   # another dtype: not a copy
    ({k: v for k, v in HEADER.items() if k != "lm_head.weight"}, True, 1856),  # stored once already
])
def test_weight_bytes_counts_tied_weights_once(header, tied, expected):
    from qfit.model.checkpoint_bytes import weight_bytes

    assert weight_bytes(header, tied) == expected


def test_checkpoint_weight_bytes_of_a_saved_tied_model(tiny_llama_dir):
    from qfit.model.checkpoint_bytes import checkpoint_weight_bytes, tied_embeddings
    from qfit.model.headers import read_header

    header = read_header(tiny_llama_dir / "model.safetensors")
    assert "lm_head.weight" not in header                    # save_pretrained stores a tied head once
    spans = sum(v["data_offsets"][1] - v["data_offsets"][0] for v in header.values())
    assert checkpoint_weight_bytes(tiny_llama_dir) == spans
    assert tied_embeddings({"text_config": {"tie_word_embeddings": True}}) is True
    assert tied_embeddings({}) is False
    with pytest.raises(QfitError):
        checkpoint_weight_bytes(tiny_llama_dir / "missing")
