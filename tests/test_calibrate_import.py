"""`qfit calibrate` on result files of vllm bench serve, GuideLLM and llama-bench (tests/data/external/SOURCES.md)."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from qfit import api
from qfit.calibrate_import import detect, guidellm, llama_bench, read_any, vllm_bench
from qfit.cli import cli
from qfit.errors import QfitError

DATA = Path(__file__).parent / "data" / "external"
VLLM, GUIDE, LLAMA = DATA / "vllm_bench_serve_c1.json", DATA / "guidellm_0.8.1_concurrent.json", \
    DATA / "llama_bench_rtx4090.json"


def _load(path):
    return json.loads(path.read_text())


def _write(tmp_path, data, name="r.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("QFIT_CONFIG_DIR", str(tmp_path / "cfg"))
    return tmp_path / "cfg" / "engines"


@pytest.mark.parametrize("data,kind", [
    (_load(VLLM), "vllm"), (_load(GUIDE), "guidellm"), (_load(LLAMA), "llama-bench"),
    ({"schema": "qfit.profile/1"}, None), ({"model_id": "m"}, None), ([], None), ([{"avg_ts": 1}], None), ("x", None),
])
def test_detect_by_content(data, kind):
    assert detect(data) == kind


def test_vllm_bench_serve_fields():
    (m,) = vllm_bench.parse("f", _load(VLLM))
    # median TPOT of the 8 requests: (7.10 + 7.11) / 2 ms; median TTFT (38.1 + 38.3) / 2 ms; 8192 / 8, 1024 / 8
    assert (m.model, m.batch, m.input_len, m.output_len) == ("meta-llama/Llama-3.1-8B-Instruct", 1, 1024, 128)
    assert m.decode_tokens_per_s_per_seq == pytest.approx(1000 / 7.105)
    assert m.prefill_tokens_per_s == pytest.approx(1024 / 0.0382)
    assert m.engine is None and m.device is None and m.precision is None


def test_vllm_prefill_only_at_concurrency_one():
    data = _load(VLLM) | {"max_concurrency": 8}
    (m,) = vllm_bench.parse("f", data)
    assert m.batch == 8 and m.prefill_tokens_per_s is None and m.decode_tokens_per_s_per_seq is not None


def test_guidellm_report_fields():
    data = _load(GUIDE)
    ms = guidellm.parse("f", data)
    assert [(m.label, m.batch) for m in ms] == [("concurrent@1", 1), ("concurrent@4", 4)]
    itl = data["benchmarks"][0]["metrics"]["inter_token_latency_ms"]["successful"]["median"]
    ttft = data["benchmarks"][0]["metrics"]["time_to_first_token_ms"]["successful"]["median"]
    assert ms[0].decode_tokens_per_s_per_seq == pytest.approx(1000 / itl)
    assert ms[0].input_len == 435 and ms[0].output_len == 64        # the report's median prompt / output counts
    assert ms[0].prefill_tokens_per_s == pytest.approx(435 / (ttft / 1000))
    assert ms[1].prefill_tokens_per_s is None                       # TTFT at 4 in flight includes queueing
    assert ms[0].tool == "guidellm 0.8.1" and ms[0].model == "meta-llama/Llama-3.1-8B-Instruct"


def test_guidellm_rate_driven_benchmarks_are_skipped():
    data = _load(GUIDE)
    data["benchmarks"][1]["config"]["strategy"] = {"type_": "throughput", "max_concurrency": 4}
    assert [m.label for m in guidellm.parse("f", data)] == ["concurrent@1"]
    data["benchmarks"][0]["config"]["strategy"] = {"type_": "constant", "rate": 2.0}
    with pytest.raises(QfitError, match="no benchmark ran at a fixed concurrency"):
        guidellm.parse("f", data)


def test_llama_bench_rows():
    pp, tg = llama_bench.parse("f", _load(LLAMA))
    assert (pp.label, pp.input_len, pp.prefill_tokens_per_s, pp.decode_tokens_per_s_per_seq) == \
        ("pp512", 512, 11107.87, None)
    assert (tg.label, tg.output_len, tg.decode_tokens_per_s_per_seq) == ("tg128", 128, 141.14)
    assert pp.precision == "q4_k_m" and pp.engine == "llama.cpp" and pp.device == "NVIDIA GeForce RTX 4090"
    assert pp.cv == pytest.approx(45.06 / 11107.87)


@pytest.mark.parametrize("model_type,precision", [
    ("llama 8B Q4_K - Medium", "q4_k_m"), ("llama 7B Q4_0", "q4_0"), ("qwen2 1.5B all F32", "fp32"),
    ("llama 8B BF16", "bf16"), ("llama ?B Q8_0", "q8_0"), ("llama 8B Q5_K - Small", "q5_k_s"),
    ("llama 8B F16", "fp16"), ("llama 8B Q4_1 (guessed)", "q4_1"),
])
def test_llama_bench_precision_from_model_type(model_type, precision):
    assert llama_bench.precision_of("f", model_type) == precision


@pytest.mark.parametrize("row,device", [
    ({"backends": "CUDA", "n_gpu_layers": -1, "gpu_info": "NVIDIA A100-SXM4-80GB", "cpu_info": "x"},
     "NVIDIA A100-SXM4-80GB"),
    ({"backends": "CUDA", "n_gpu_layers": 0, "gpu_info": "NVIDIA A100-SXM4-80GB", "cpu_info": "AMD EPYC 7B13"},
     "AMD EPYC 7B13"),
    ({"backends": "CPU", "n_gpu_layers": 99, "gpu_info": "", "cpu_info": "Apple M2 Max"}, "Apple M2 Max"),
    ({"backends": "Metal", "n_gpu_layers": 99, "gpu_info": "Apple M2 Max", "cpu_info": "Apple M2 Max"}, "Apple M2 Max"),
    ({"backends": "CUDA", "n_gpu_layers": 99, "gpu_info": "NVIDIA GeForce RTX 4090, NVIDIA GeForce RTX 4090"},
     "NVIDIA GeForce RTX 4090"),
])
def test_llama_bench_device(row, device):
    assert llama_bench.device_of(row) == device


def test_imported_files_map_to_plans_and_show_predicted_vs_measured(cfg):
    res = CliRunner().invoke(cli, ["calibrate", str(VLLM), "--gpu", "H100", "--engine", "vllm", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    (row,) = out["imported"]
    plan = api.plan("llama-3.1-8b", gpu="H100", engine="vllm", batch=1, input_len=1024, output_len=128,
                    context=1152, suggest=False)
    assert row["predicted_decode_tokens_per_s_per_seq"] == pytest.approx(plan.performance.decode_tokens_per_s,
                                                                         abs=1e-3)
    (fit,) = out["fits"]
    assert (fit["engine"], fit["family"]) == ("vllm", "cuda")
    assert fit["decode"]["factor"] == pytest.approx((1000 / 7.105) / plan.performance.decode_tokens_per_s)
    assert fit["decode"]["error_after_pct"] == pytest.approx(0, abs=1e-9)
    assert fit["sources"][0]["tool"] == "vllm bench serve"
    # one point per figure: with its own factor the plan meets the measurement exactly
    assert row["after_decode_tokens_per_s_per_seq"] == pytest.approx(1000 / 7.105, abs=1e-3)
    assert row["after_prefill_tokens_per_s"] == pytest.approx(1024 / 0.0382, rel=1e-4)
    assert (row["engine"], row["device"], row["model"], row["precision"]) == \
        ("vllm", "NVIDIA H100 SXM", "llama-3.1-8b", "bf16")
    assert not cfg.exists()                                            # dry run


def test_calibrating_from_vllm_bench_moves_the_plan(cfg):
    def rates():
        p = api.plan("llama-3.1-8b", gpu="H100", engine="vllm", batch=1, input_len=1024, output_len=128,
                     suggest=False)
        return p.performance.decode_tokens_per_s, p.performance.prefill_tokens_per_s
    dec0, pre0 = rates()
    res = CliRunner().invoke(cli, ["calibrate", str(VLLM), "--gpu", "H100", "--engine", "vllm"])
    assert res.exit_code == 0, res.output
    assert "max_concurrency 1" in res.output and "wrote" in res.output
    dec1, pre1 = rates()
    # measured decode 140.7 tok/s beat the plan (~112): plans get faster; measured prefill lagged: slower
    assert dec1 == pytest.approx(1000 / 7.105, rel=1e-3) and dec1 > dec0 * 1.2
    assert pre1 < pre0


def test_calibrating_from_llama_bench_moves_gguf_plans_only(cfg):
    def prefill(precision):
        return api.plan("llama-3.1-8b", gpu="rtx 4090", engine="llama.cpp", precision=precision, batch=1,
                        input_len=512, output_len=1, suggest=False).performance.prefill_tokens_per_s
    before = prefill("q4_k_m")
    res = CliRunner().invoke(cli, ["calibrate", str(LLAMA), "--model", "llama-3.1-8b"])
    assert res.exit_code == 0, res.output
    assert (cfg / "llama.cpp.yaml").is_file()
    assert prefill("q4_k_m") == pytest.approx(11107.87, rel=1e-3) and prefill("q4_k_m") > before


def test_guidellm_with_flags_and_profile_results_together(cfg):
    res = CliRunner().invoke(cli, ["calibrate", str(GUIDE), "--gpu", "H100", "--engine", "vllm", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [r["label"] for r in out["imported"]] == ["concurrent@1", "concurrent@4"]
    assert out["fits"][0]["decode"]["points"] == 2 and out["fits"][0]["prefill"]["points"] == 1


def test_noisy_llama_bench_rows_are_refused_unless_accepted(tmp_path, cfg):
    data = _load(LLAMA)
    data[1]["stddev_ts"] = 40.0                                         # CV 28 % > 15 %
    path = _write(tmp_path, data)
    res = CliRunner().invoke(cli, ["calibrate", path, "--model", "llama-3.1-8b", "--dry-run"])
    assert res.exit_code == 2 and "CV 28 %" in res.output
    res = CliRunner().invoke(cli, ["calibrate", path, "--model", "llama-3.1-8b", "--dry-run", "--accept-unreliable"])
    assert res.exit_code == 0, res.output


def _vllm(**kw):
    data = _load(VLLM)
    for k, v in kw.items():
        if v is KeyError:
            del data[k]
        else:
            data[k] = v
    return data


def _llama(**kw):
    data = _load(LLAMA)
    for row in data:
        row.update(kw)
    return data


def _guide_version(v):
    data = _load(GUIDE)
    data["metadata"]["version"] = v
    return data


FLAGS = ["--gpu", "H100", "--engine", "vllm"]


@pytest.mark.parametrize("data,args,error", [
    ("{not json", FLAGS, "not valid JSON"),
    ({"something": 1}, FLAGS, "not a qfit profile result nor a result of vllm bench serve"),
    ([1, 2], FLAGS, "not a qfit profile result nor"),
    (_vllm(median_tpot_ms=KeyError), FLAGS, "missing field 'median_tpot_ms'"),
    (_vllm(median_tpot_ms=-3.0), FLAGS, "median_tpot_ms is -3.0, not a positive finite number"),
    (json.dumps(_vllm(total_output_tokens=987654)).replace("987654", "1e400"), FLAGS, "total_output_tokens is inf"),
    (json.dumps(_vllm(median_tpot_ms=float("nan"))), FLAGS, "not valid JSON"),
    (_vllm(median_ttft_ms="fast"), FLAGS, "median_ttft_ms is 'fast'"),
    (_vllm(completed=2.5), FLAGS, "completed is 2.5, not a positive finite integer"),
    (_vllm(request_rate=4.0), FLAGS, "only runs that release every request at once"),
    (_vllm(max_concurrency=None), FLAGS, "rerun vllm bench serve with --max-concurrency N"),
    (_vllm(model_id=""), FLAGS, "model_id is '', not a non-empty string"),
    (_vllm(), ["--engine", "vllm"], "does not record the GPU: pass --gpu NAME"),
    (_vllm(), ["--gpu", "H100"], "does not record which engine served the requests: pass --engine"),
    (_vllm(), ["--gpu", "Quantum Toaster 9000", "--engine", "vllm"], "device 'Quantum Toaster 9000' is not one qfit"),
    (_vllm(), ["--gpu", "H100", "--engine", "warp-drive"], "engine 'warp-drive'"),
    (_vllm(model_id="/srv/models/private-ckpt"), FLAGS, "does not resolve"),
    (_guide_version(1), FLAGS, "GuideLLM report schema version 1"),
    (_llama(), [], "does not resolve"),
    (_llama(cpu_info="Mystery CPU 1", backends="CPU"), ["--model", "llama-3.1-8b"], "device 'Mystery CPU 1'"),
    (_llama(model_type="llama 8B IQ2_XXS - 2.0625 bpw"), ["--model", "llama-3.1-8b"], "pass --precision"),
    (_llama(avg_ts=float("-1")), ["--model", "llama-3.1-8b"], "avg_ts is -1.0"),
    (_llama(n_prompt=16, n_gen=16), ["--model", "llama-3.1-8b"], "no pp or tg row"),
    (_llama(n_gen=-4), ["--model", "llama-3.1-8b"], "n_gen is -4"),
])
def test_bad_imported_files(tmp_path, cfg, data, args, error):
    res = CliRunner().invoke(cli, ["calibrate", _write(tmp_path, data), "--dry-run", *args])
    assert res.exit_code == 2, res.output
    assert error in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_flags_without_an_imported_file_are_refused(tmp_path, cfg):
    profile = {"schema": "qfit.profile/1", "prediction": {"available": False}}
    res = CliRunner().invoke(cli, ["calibrate", _write(tmp_path, profile), "--gpu", "H100"])
    assert res.exit_code == 2 and "--gpu apply to imported benchmark files only" in res.output


def test_read_any_tells_profiles_from_imports(tmp_path):
    kind, _, data = read_any(_write(tmp_path, {"schema": "qfit.profile/1"}))
    assert kind == "profile" and data == {"schema": "qfit.profile/1"}
    kind, path, ms = read_any(str(LLAMA))
    assert kind == "external" and path == str(LLAMA) and len(ms) == 2


def test_recalibrating_from_the_same_file_keeps_the_factor(cfg):
    """The second run is planned with the first run's overlay in force; the fit divides it out, as for profiles."""
    args = ["calibrate", str(VLLM), "--gpu", "H100", "--engine", "vllm", "--json"]
    first = json.loads(CliRunner().invoke(cli, args).output)["fits"][0]
    res = json.loads(CliRunner().invoke(cli, args).output)
    assert res["imported"][0]["predicted_decode_tokens_per_s_per_seq"] == pytest.approx(1000 / 7.105, abs=1e-3)
    assert res["fits"][0]["decode"]["factor"] == pytest.approx(first["decode"]["factor"], rel=1e-6)
    assert res["fits"][0]["prefill"]["factor"] == pytest.approx(first["prefill"]["factor"], rel=1e-6)


def test_vllm_append_result_file_gives_one_point_per_run(tmp_path, cfg):
    """`--append-result` appends "\\n" + one JSON document per run: a concurrency sweep in one file."""
    runs = [_vllm(), _vllm(max_concurrency=4, median_tpot_ms=8.0)]
    path = _write(tmp_path, "\n".join(json.dumps(r) for r in runs))
    kind, _, ms = read_any(path)
    assert kind == "external" and [(m.batch, m.prefill_tokens_per_s is None) for m in ms] == [(1, False), (4, True)]
    assert ms[1].decode_tokens_per_s_per_seq == pytest.approx(125.0)
    res = CliRunner().invoke(cli, ["calibrate", path, *FLAGS, "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["fits"][0]["decode"]["points"] == 2
    bad = _write(tmp_path, json.dumps(runs[0]) + "\n{oops", "bad.json")
    res = CliRunner().invoke(cli, ["calibrate", bad, *FLAGS])
    assert res.exit_code == 2 and "line 2 is not valid JSON" in res.output


# ---------------------------------------------------------------- qfit profile --endpoint results

ENDPOINT = DATA / "endpoint_llamacpp_smollm2.json"


def test_endpoint_result_is_read_per_concurrency_level():
    """A real run against llama-cpp-python's server on 127.0.0.1 (SOURCES.md): decode = 1 / mean TPOT per level,
    prefill only at concurrency 1, the setup from the file, the spread from each level's TPOT CV."""
    from qfit.calibrate_import import endpoint

    data = _load(ENDPOINT)
    assert detect(data) == "endpoint"
    ms = endpoint.parse(str(ENDPOINT), data)
    assert [m.batch for m in ms] == [1, 2] and {(m.input_len, m.output_len) for m in ms} == {(128, 32)}
    assert ms[0].decode_tokens_per_s_per_seq == pytest.approx(1 / 0.061151820822605285)
    assert ms[0].prefill_tokens_per_s == pytest.approx(108.62418567389146) and ms[1].prefill_tokens_per_s is None
    assert (ms[0].engine, ms[0].device, ms[0].precision) == ("llama.cpp", "cpu", None)
    assert ms[0].cv == pytest.approx(0.6119797061330403) and ms[0].model.endswith(".gguf")


def test_endpoint_result_calibrates_llama_cpp_on_this_cpu(cfg, smollm2_gguf):
    """The run was flagged (TPOT CV 61 % on a busy machine): refused, then folded in when accepted; the decode
    factor is the median measured/planned over both levels and the plan of the same GGUF moves by it."""
    args = ["calibrate", str(ENDPOINT), "--model", str(smollm2_gguf)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "flagged unreliable: CV 61 %" in res.output
    before = api.plan(str(smollm2_gguf), gpu="cpu", engine="llama.cpp").performance.decode_tokens_per_s
    res = CliRunner().invoke(cli, [*args, "--accept-unreliable", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    rows = out["imported"]
    assert [r["batch"] for r in rows] == [1, 2] and rows[0]["family"] == "cpu/gguf"
    ratios = sorted(r["measured_decode_tokens_per_s_per_seq"] / r["predicted_decode_tokens_per_s_per_seq"]
                    for r in rows)
    fit = next(f for f in out["fits"] if f["family"] == "cpu/gguf")
    assert fit["decode"]["factor"] == pytest.approx(sum(ratios) / 2, rel=1e-3)
    after = api.plan(str(smollm2_gguf), gpu="cpu", engine="llama.cpp").performance.decode_tokens_per_s
    assert after == pytest.approx(before * fit["decode"]["factor"], rel=0.02)


@pytest.mark.parametrize("change,error", [
    (lambda d: d["protocol"].update(mode="rate"), "a --rate run has no fixed batch"),
    (lambda d: [lv.update(failed=1) for lv in d["levels"]], "no level completed every request"),
    (lambda d: d["measured"]["decode"][0]["tokens_per_s_per_seq"].update(mean=float("nan")), "not a positive"),
    (lambda d: d["measured"]["decode"][0]["tokens_per_s_per_seq"].update(mean=int("9" * 100)), "not a positive"),
    (lambda d: d["measured"]["decode"][0].update(tokens_per_s_per_seq=3), "tokens_per_s_per_seq is 3, not an obj"),
    (lambda d: d.update(device="cpu"), "device is 'cpu', not an object"),
    (lambda d: d["measured"].update(prefill={"x": 1}), "measured.prefill is"),
    (lambda d: d.update(levels="all"), "levels is 'all', not a list"),
    (lambda d: d["levels"][0].update(tpot_s=[1]), "levels[].tpot_s is [1], not an object"),
    (lambda d: d.update(protocol=[]), "protocol is [], not an object"),
])
def test_bad_endpoint_results(tmp_path, cfg, change, error):
    data = _load(ENDPOINT)
    change(data)
    res = CliRunner().invoke(cli, ["calibrate", _write(tmp_path, json.dumps(data).replace("NaN", "1e400")),
                                   "--accept-unreliable"])
    assert res.exit_code == 2 and error in res.output and len(res.output.strip().splitlines()) == 1, res.output
