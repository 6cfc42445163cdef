"""`qfit quantize` before the heavy work and around it: the recipe checked against the model's shapes first (a .gguf
too), the time estimate's formula, calibration defaults by device, library output kept in OUT's log file with a short
terminal view, and nothing written outside OUT (GPTQModel's `logs/` folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from qfit.cli import cli
from qfit.errors import QfitError
from qfit.precision import Override, gptq_recipe
from qfit.quantize.job import (
    AUTO_CALIBRATION,
    CALIBRATION_WHY,
    QuantizeJob,
    check_shapes,
    dividing_group_sizes,
    parse_count,
)
from qfit.quantize.source import gguf_layout, gguf_linears, source_layout
from qfit.quantize.terminal import PlainProgress, capture_output, duration
from qfit.quantize.timing import TimeProfile, estimate_time, layer_flops, pick_profile

REPO = Path(__file__).resolve().parent.parent
SMOL_WIDTHS = "input widths 576, 1536): 16, 32, 64, -1"


# ------------------------------------------------------------------------------------------- shapes, before any work

@pytest.mark.parametrize("widths, expected", [
    ([576, 1536], [16, 32, 64, -1]),                  # SmolLM2-135M: 128 does not divide 576
    ([4096, 11008], [16, 32, 64, 128, 256, -1]),      # Llama-2-7B: 11008 = 2^8 x 43
    ([4096, 14336], [16, 32, 64, 128, 256, 512, 1024, -1]),
    ([64, 128], [16, 32, 64, -1]),
    ([100], [-1]),                                    # no supported group divides 100: per-column only
])
def test_dividing_group_sizes(widths, expected):
    assert dividing_group_sizes(widths) == expected


def test_gguf_tensor_names_map_to_hf_modules():
    f32 = 0
    tensors = [
        ("token_embd.weight", [576, 49152], f32),
        ("blk.0.attn_norm.weight", [576], f32),
        ("blk.0.attn_q.weight", [576, 576], f32),
        ("blk.0.attn_k.weight", [576, 192], f32),
        ("blk.0.attn_output.weight", [576, 576], f32),
        ("blk.0.ffn_down.weight", [1536, 576], f32),
        ("blk.1.ffn_gate_inp.weight", [576, 2], f32),      # MoE router: kept float, not listed
        ("blk.1.ffn_up_exps.weight", [576, 64, 2], f32),   # (in, out, experts)
        ("blk.1.attn_q_a.weight", [576, 96], f32),         # unknown name: kept under its GGUF name
    ]
    assert gguf_linears(tensors) == {
        "model.layers.0.self_attn.q_proj": (576, 576),
        "model.layers.0.self_attn.k_proj": (192, 576),
        "model.layers.0.self_attn.o_proj": (576, 576),
        "model.layers.0.mlp.down_proj": (576, 1536),
        "model.layers.1.mlp.experts.0.up_proj": (64, 576),
        "model.layers.1.mlp.experts.1.up_proj": (64, 576),
        "model.layers.1.attn_q_a": (96, 576),
    }


def test_gguf_layout_equals_the_converted_folders(smollm2_gguf, smollm2_dir):
    """The tensor table of the .gguf predicts exactly what its float32 conversion holds."""
    before, after = gguf_layout(smollm2_gguf), source_layout(str(smollm2_dir))
    assert before.linears == after.linears and len(before.linears) == 210
    assert (before.float_bytes, before.num_layers, before.hidden) == (after.float_bytes, 30, 576)


def test_kept_modules_do_not_restrict_the_group_size(smollm2_gguf):
    layout = gguf_layout(smollm2_gguf)
    check_shapes(layout, gptq_recipe(4, 512, keep=("self_attn.*", "mlp.gate_proj", "mlp.up_proj")))  # only 1536 wide
    with pytest.raises(QfitError, match=r"input widths 576\): 16, 32, 64, -1"):
        check_shapes(layout, gptq_recipe(4, 128, keep=("mlp.down_proj",)))
    with pytest.raises(QfitError, match="--group-size 128 does not divide in_features 576"):
        check_shapes(layout, gptq_recipe(4, 64, overrides=(Override("self_attn.*", 8, 128),)))


def _forbid_heavy(monkeypatch):
    """Every path to heavy work raises: GGUF conversion, model resolution/loading/calibration, the quantizers."""
    import qfit.loading
    import qfit.quantize.checkpoint
    import qfit.quantize.engine
    import qfit.quantize.run

    def heavy(*args, **kwargs):
        raise AssertionError("heavy work started before the shape check")

    for module, name in [(qfit.loading, "convert_gguf"), (qfit.loading, "resolve_model_dir"),
                         (qfit.loading, "load_tokenizer"), (qfit.quantize.run, "_prepare"),
                         (qfit.quantize.run, "pick_device"), (qfit.quantize.engine, "run_gptq"),
                         (qfit.quantize.checkpoint, "write_rtn")]:
        monkeypatch.setattr(module, name, heavy)


@pytest.mark.parametrize("source, group, method, needle", [
    ("gguf", 128, "gptq", SMOL_WIDTHS),
    ("gguf", 256, "rtn", SMOL_WIDTHS),
    ("tiny", 128, "gptq", "in_features 64 of model.layers.0.mlp.gate_proj; group sizes that divide every quantized "
                          "layer (input widths 64, 128): 16, 32, 64, -1"),
])
def test_bad_group_size_fails_before_anything_heavy(smollm2_gguf, tiny_llama_dir, tmp_path, monkeypatch, source,
                                                    group, method, needle):
    _forbid_heavy(monkeypatch)
    model = smollm2_gguf if source == "gguf" else tiny_llama_dir
    res = CliRunner().invoke(cli, ["quantize", str(model), str(tmp_path / "o"), "--group-size", str(group),
                                   "--method", method, "--calib", "pydoc"])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and needle in lines[0], res.output
    assert lines[0].startswith(f"error: --group-size {group} does not divide")
    assert not list(tmp_path.iterdir())


def test_gguf_shape_check_imports_no_heavy_library(smollm2_gguf, tmp_path):
    """In a fresh process: the refusal comes before torch or transformers is even imported."""
    code = ("import sys; from click.testing import CliRunner; from qfit.cli import cli; "
            f"r = CliRunner().invoke(cli, ['quantize', {str(smollm2_gguf)!r}, {str(tmp_path / 'o')!r}, "
            "'--group-size', '128']); "
            "print(r.exit_code); print(r.output.strip()); "
            "print(sorted(m for m in ('torch', 'transformers', 'gptqmodel') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, timeout=120).stdout.splitlines()
    assert out[0] == "2" and "--group-size 128 does not divide" in out[1] and SMOL_WIDTHS in out[1], out
    assert out[2] == "[]", out


# ------------------------------------------------------------------------------------------------ time estimate

def test_layer_flops_by_hand():
    # one (out 2, in 4) linear, 10 tokens in windows of 5, hidden 3, 5 passes:
    # forward 5 x (2*10*8 + 4*10*5*3) = 3,800; Hessian 2*10*4^2 = 320; GPTQ 4^3 + 2*2*4^2 = 128
    assert layer_flops([(2, 4)], tokens=10, seqlen=5, hidden=3, passes=5) == (4120.0, 128.0)


CONSTANTS = {"fixed_s": 10.0, "load_save_s_per_gb": 20.0, "layer_overhead_s": 1.0, "forward_gflops": 1.0,
             "module_overhead_s": 0.5, "gptq_gflops": 2.0, "convert_s_per_gb": 30.0, "jit_s": 40.0,
             "rtn_s_per_gb": 50.0}


def _profile(same_host=True):
    return TimeProfile(host="test cpu x2", device="cpu", forward_passes=5, constants=CONSTANTS, error=0.2,
                       rtn_error=0.3, same_host=same_host)


@pytest.mark.parametrize("method, convert_gb, compile_kernel, same_host, total, band", [
    # 2 layers of one (1000, 1000) linear; 10 windows x 100 tokens; hidden 1000; 0.5 GB of float weights.
    # per layer: forward 5 x (2*1000*1e6 + 4*1000*100*1000) + 2*1000*1e6 = 1.4e10 FLOPs = 14 s at 1 GFLOP/s;
    # GPTQ 1e9 + 2e9 = 3e9 FLOPs = 1.5 s at 2 GFLOP/s; overheads 1 + 0.5 s.
    # fixed 10 + load/save 20 x 0.5 + forward 28 + GPTQ 3 + overhead 3 = 54 s
    ("gptq", 0.0, False, True, 54.0, 0.2),
    ("gptq", 2.0, True, True, 54.0 + 60 + 40, 0.2),     # + conversion 30 x 2 GB + one-time compile 40
    ("gptq", 0.0, False, False, 54.0, 0.4),             # another host's constants: band doubled
    ("rtn", 0.0, False, True, 25.0, 0.3),               # 50 s/GB x 0.5 GB, RTN's own band
    ("rtn", 1.0, True, True, 55.0, 0.3),                # + conversion 30 x 1 GB (no compile for RTN)
    ("rtn", 0.0, False, False, 25.0, 0.6),
])
def test_estimate_by_hand(method, convert_gb, compile_kernel, same_host, total, band):
    est = estimate_time(_profile(same_host), method=method, layers=[[(1000, 1000)], [(1000, 1000)]], hidden=1000,
                        float_gb=0.5, nsamples=10, seqlen=100, convert_gb=convert_gb, compile_kernel=compile_kernel)
    assert est.total_s == pytest.approx(total)
    assert (est.low_s, est.high_s) == (pytest.approx(total * (1 - band)), pytest.approx(total * (1 + band)))
    assert sum(est.terms.values()) == pytest.approx(total, abs=0.2)
    assert ("not this host" in est.assumes) is (not same_host)


def test_cpu_shares_seen_widen_the_band():
    profile = TimeProfile(host="h", device="cpu", forward_passes=5, constants=CONSTANTS, error=0.1, rtn_error=0.2,
                          cores=(0.5, 1.6))
    est = estimate_time(profile, method="rtn", layers=[], hidden=1, float_gb=0.5, nsamples=1, seqlen=16)
    # 25 s on one core; low 25 x 0.8 / 1.6 cores = 12.5 s, high 25 x 1.2 / 0.5 cores = 60 s
    assert (est.total_s, est.low_s, est.high_s) == (25.0, pytest.approx(12.5), pytest.approx(60.0))


@pytest.mark.parametrize("missing, method, convert_gb", [("rtn_s_per_gb", "rtn", 0.0), ("forward_gflops", "gptq", 0.0),
                                                         ("convert_s_per_gb", "rtn", 1.0)])
def test_no_estimate_without_the_constants_it_needs(missing, method, convert_gb):
    profile = TimeProfile(host="h", device="cpu", forward_passes=5, constants=dict(CONSTANTS, **{missing: 0.0}),
                          error=0.2)
    assert estimate_time(profile, method=method, layers=[[(8, 8)]], hidden=8, float_gb=1.0, nsamples=1, seqlen=16,
                         convert_gb=convert_gb) is None


def test_estimate_terms_by_hand():
    est = estimate_time(_profile(), method="gptq", layers=[[(1000, 1000)], [(1000, 1000)]], hidden=1000,
                        float_gb=0.5, nsamples=10, seqlen=100)
    assert est.terms == {"fixed": 10.0, "load_save": 10.0, "forward": 28.0, "gptq": 3.0, "overhead": 3.0}


def test_profile_rows_by_host_and_device():
    row = {"forward_passes": 5, "constants": CONSTANTS, "error": 0.25, "cores": [0.6, 1.4]}
    rows = [dict(row, host="other cpu x8", device="cpu"), dict(row, host="this cpu x2", device="cpu")]
    assert pick_profile(rows, "this cpu x2", "cpu").same_host
    other = pick_profile(rows, "new cpu x4", "cpu")
    assert other.host == "other cpu x8" and not other.same_host
    assert pick_profile(rows, "this cpu x2", "cuda") is None


def test_the_shipped_profile_parses():
    from qfit.paths import profiles_dir
    from qfit.yamlcache import load_records

    rows = load_records(profiles_dir() / "quantize")["time"]["hosts"]
    assert rows
    for r in rows:
        p = pick_profile([r], r["host"], r["device"])
        assert p.same_host and 0 < p.error < 1 and 0 < p.rtn_error < 1 and p.cores[0] <= 1 <= p.cores[1]
        assert all(v >= 0 for v in p.constants.values())
        assert min(p.constants[k] for k in ("forward_gflops", "gptq_gflops", "load_save_s_per_gb", "rtn_s_per_gb")) > 0
        assert len(r["runs"]) >= 2


# ----------------------------------------------------------------------------------------- calibration defaults

def test_auto_calibration_depends_on_the_device():
    job = QuantizeJob.from_flags(group_size=64)
    assert (job.nsamples, job.seqlen) == (None, None)
    cpu, gpu = job.for_device("cpu"), job.for_device("cuda")
    assert {cpu.calibration_size, gpu.calibration_size} <= set(CALIBRATION_WHY)     # every auto choice says why
    assert (cpu.nsamples, cpu.seqlen) == AUTO_CALIBRATION["cpu"] and cpu.calibration_size == "auto: cpu default"
    assert (gpu.nsamples, gpu.seqlen) == (128, 2048) and gpu.calibration_size == "auto: gpu default"
    assert cpu.nsamples * cpu.seqlen < gpu.nsamples * gpu.seqlen
    given = QuantizeJob.from_flags(group_size=64, nsamples=8, seqlen="128").for_device("cuda")
    assert (given.nsamples, given.seqlen, given.calibration_size) == (8, 128, "given")
    half = QuantizeJob.from_flags(group_size=64, nsamples=8).for_device("cuda")
    assert (half.nsamples, half.seqlen) == (8, 2048)


@pytest.mark.parametrize("value, expected", [("auto", None), ("AUTO", None), (None, None), ("12", 12), (7, 7)])
def test_parse_count(value, expected):
    assert parse_count("--nsamples", value) == expected


@pytest.mark.parametrize("flags, message", [
    ({"nsamples": "abc"}, "--nsamples 'abc': expected a whole number or auto"),
    ({"seqlen": "1.5"}, "--seqlen '1.5': expected a whole number or auto"),
    ({"nsamples": 0}, "--nsamples must be between 1"),
    ({"seqlen": 8}, "--seqlen between 16"),
])
def test_bad_calibration_sizes(flags, message):
    with pytest.raises(QfitError, match=message.replace("(", r"\(").replace(".", r"\.")):
        QuantizeJob.from_flags(**flags)


def test_help_says_what_auto_means():
    out = CliRunner().invoke(cli, ["quantize", "--help"], terminal_width=200).output
    n, s = AUTO_CALIBRATION["cpu"]
    assert f"auto (default): {n} x {s} tokens" in out and "128 x 2048 on a GPU" in out


# ------------------------------------------------------------------------------------- terminal view and log file

def test_plain_progress_prints_first_last_and_every_30_s():
    now = [0.0]
    lines = []
    p = PlainProgress(lines.append, total=6, clock=lambda: now[0])
    for t in (10, 20, 35, 50, 66, 70):      # layers finish at these seconds: printed at 10 (first), 50 (40 s after
        now[0] = t                          # the last line), 70 (last); 20, 35 and 66 are under 30 s after a line
        p(0)
    assert lines == ["quantize: layer 1/6 done, 10 s elapsed, about 50 s left",     # 10 s a layer x 5 to go
                     "quantize: layer 4/6 done, 50 s elapsed, about 25 s left",     # 12.5 s a layer x 2
                     "quantize: layer 6/6 done, 1 min 10 s elapsed"]


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (59.6, "1 min 00 s"), (200, "3 min 20 s"),
                                           (3930, "1 h 05 min")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_capture_output_takes_fd_level_writes(tmp_path, capfd):
    log = tmp_path / "x.log"
    with capture_output(log):
        print("from print")
        os.write(1, b"fd one\n")
        os.write(2, b"fd two\n")
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child\\n')"], check=True)
    print("after")
    out, err = capfd.readouterr()
    assert log.read_text().splitlines() == ["from print", "fd one", "fd two", "child"]
    assert "after" in out and "fd one" not in out + err and "child" not in err


def _cli_subprocess(args: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    """The real CLI with stderr a pipe (not a TTY), from `cwd`."""
    return subprocess.run([sys.executable, "-m", "qfit", *args], cwd=cwd, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=timeout)


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_rtn_run_keeps_a_log_and_a_short_terminal(tiny_llama_dir, tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "keep.txt").write_text("mine")
    before = _tree(cwd)
    res = _cli_subprocess(["quantize", str(tiny_llama_dir), str(tmp_path / "o"), "--method", "rtn",
                           "--group-size", "32", "--json"], cwd, 300)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    err = res.stderr.strip().splitlines()
    assert len(err) <= 5, err                     # estimate, progress (first/last layer), log path
    assert err[-1] == f"library log: {tmp_path / 'o' / 'qfit-quantize.log'}"
    assert (tmp_path / "o" / "qfit-quantize.log").is_file() and report["log_file"] == "qfit-quantize.log"
    assert _tree(cwd) == before                    # nothing written where qfit was run from
    assert not list(tmp_path.glob("o.tmp-*")) and not (tmp_path / "o" / ".gptqmodel-logs").exists()
    assert report["time_estimate"] is None or report["time_estimate"]["actual_s"] == report["total_seconds"]


def test_gptqmodel_log_folder_is_redirected(tmp_path, monkeypatch):
    """GPTQModel 7.7 puts its per-module log under ./logs: inside contained_logs it goes to the scratch folder."""
    pytest.importorskip("gptqmodel")
    from gptqmodel.looper import loop_processor

    from qfit.quantize.engine import contained_logs

    monkeypatch.chdir(tmp_path)
    with contained_logs(tmp_path / "scratch"):
        path = loop_processor.LoopProcessor._build_log_file_path("gptq", "now")
    assert Path(path).parent == (tmp_path / "scratch").resolve() and not (tmp_path / "logs").exists()
    assert loop_processor._PROJECT_LOG_DIR == Path("logs")   # restored


# ---------------------------------------------------------------------------------- end to end (slow, small)

@pytest.mark.slow
def test_gptq_run_from_a_temp_cwd(smollm2_dir, tmp_path):
    """The small model with GPTQ (8 x 128 tokens): library output in OUT/qfit-quantize.log, a short stderr, the
    estimate recorded beside the actual time, calibration size said, and the working directory untouched."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = tmp_path / "q"
    res = _cli_subprocess(["quantize", str(smollm2_dir), str(out), "--group-size", "64", "--nsamples", "8",
                           "--seqlen", "128", "--device", "cpu", "--json"], cwd, 1800)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _tree(cwd) == []                                           # no logs/ folder, nothing at all
    err = res.stderr.strip().splitlines()
    assert len(err) <= 20, err
    assert err[0].startswith("gptq on cpu, 8 x 128 calibration tokens (given): estimated ")
    assert err[1].startswith("warning: calibration likely to overfit (8 x 128 = 1,024 tokens, below 2,048)")
    log = (out / "qfit-quantize.log").read_text()
    assert "GPT-QModel" in log and "Calibration dataset size should be more than 256" in log
    report = json.loads(res.stdout)
    t = report["time_estimate"]
    assert t["actual_s"] == report["total_seconds"] > 0 and t["low_s"] <= t["total_s"] <= t["high_s"]
    assert {"calibration", "load", "layers", "save"} <= set(report["phases"])
    assert report["recipe"]["calibration_size"] == "given"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith((".", "logs"))) == []


@pytest.mark.parametrize("widths,group", [((576, 1536), 64), ((4096, 11008), 128), ((2048, 5632), 128),
                                          ((96, 160), 32), ((100, 300), -1)])
def test_auto_group_size_is_the_largest_marlin_size_that_divides(widths, group):
    """--group-size auto (the default): 128 where it divides every quantized input width, else 64, 32, else -1."""
    from qfit.quantize.job import ModelLayout, QuantizeJob, resolve_group

    linears = {f"model.layers.0.mlp.m{i}": (64, w) for i, w in enumerate(widths)}
    layout = ModelLayout(float_bytes=0, float_dtype_bytes=2, linears=linears, num_layers=1, hidden=64)
    job = resolve_group(QuantizeJob.from_flags(group_size=None), layout)
    assert job.recipe.group_size == group
    assert job.group_choice.startswith(f"group size auto: {group}")
    assert ("does not divide" in job.group_choice) == (group != 128)
    given = resolve_group(QuantizeJob.from_flags(group_size=32), layout)
    assert given.recipe.group_size == 32 and given.group_choice == "given"


def test_clip_search_term_by_hand():
    """2 layers x 1000 x 1000 weights x 80 steps x 25 ns = 4 s; a row without the constant gives no estimate."""
    profile = _profile()
    with_it = TimeProfile(host=profile.host, device="cpu", forward_passes=5, error=0.2,
                          constants=dict(profile.constants, clip_search_ns_per_weight_step=25.0))
    est = estimate_time(with_it, method="gptq", layers=[[(1000, 1000)], [(1000, 1000)]], hidden=1000, float_gb=0.5,
                        nsamples=10, seqlen=100, clip_search_steps=80)
    assert est.terms["clip_search"] == pytest.approx(4.0) and est.total_s == pytest.approx(58.0)
    assert estimate_time(profile, method="gptq", layers=[[(8, 8)]], hidden=8, float_gb=1.0, nsamples=1, seqlen=16,
                         clip_search_steps=80) is None


@pytest.mark.parametrize("flags, clip, norm", [
    ({}, True, 2.4),                                       # GPTQ's default (issue 17)
    ({"clip_search": False}, False, 0.0),
    ({"method": "rtn", "desc_act": False}, False, 0.0),    # RTN rounds the min-max range
])
def test_clip_search_defaults(flags, clip, norm):
    job = QuantizeJob.from_flags(**flags)
    assert job.clip_search is clip and job.mse_norm == norm
    assert (job.to_dict()["clip_search"] is None) is (not clip)


def test_clip_search_is_refused_for_rtn():
    with pytest.raises(QfitError, match="--clip-search is part of GPTQ"):
        QuantizeJob.from_flags(method="rtn", clip_search=True)


def test_the_shipped_profile_estimates_the_default_gptq_run(smollm2_gguf):
    """The default job (act-order, clip search) on this model gets an estimate whose clip-search term is the
    measured constant times SmolLM2's 106,168,320 quantized weights times 80 steps."""
    from qfit.quantize.run import time_estimate
    from qfit.quantize.timing import time_profile

    profile = time_profile("cpu")   # this host's row, or the first CPU row (another host's constants, band doubled)
    job = QuantizeJob.from_flags(group_size=64).for_device("cpu")
    est = time_estimate(str(smollm2_gguf), gguf_layout(smollm2_gguf), job, "cpu")
    ns = profile.constants["clip_search_ns_per_weight_step"]
    assert est.terms["clip_search"] == pytest.approx(ns * 1e-9 * 106_168_320 * 80, abs=0.1)
