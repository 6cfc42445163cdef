"""qfit profile without a real model: window plans, scoring on a fake backend, comparison, report, CLI errors."""

import math

import pytest
from click.testing import CliRunner

from qfit.cli import cli
from qfit.errors import QfitError
from qfit.profile import accuracy, predict, report
from qfit.profile.backends.base import Backend, ModelInfo


@pytest.mark.parametrize("n,window,stride,bos,expected", [
    (8, 4, 4, False, [(0, 4, 1), (4, 8, 5)]),            # without BOS a window's first token has no context
    (8, 4, 4, True, [(0, 4, 0), (4, 8, 4)]),
    (8, 4, 2, False, [(0, 4, 1), (2, 6, 4), (4, 8, 6)]),  # sliding: each token scored once, with more context
    (10, 4, 4, False, [(0, 4, 1), (4, 8, 5), (8, 10, 9)]),
])
def test_plan_windows(n, window, stride, bos, expected):
    plan = accuracy.plan_windows(n, window, stride, bos)
    assert plan == expected
    scored = [i for _, end, frm in plan for i in range(frm, end)]
    assert scored == sorted(set(scored))  # no token scored twice
    if bos or stride < window:
        assert scored == list(range(0 if bos else 1, n))


@pytest.mark.parametrize("n,window,stride,error", [
    (3, 4, 4, "text too short for the window"), (8, 1, 1, "at least 2"), (8, 4, 5, "stride"), (8, 4, 0, "stride"),
])
def test_plan_windows_errors(n, window, stride, error):
    with pytest.raises(QfitError, match=error):
        accuracy.plan_windows(n, window, stride, False)


class FakeBackend(Backend):
    """Characters are tokens (vocab = 4 letters); next-token log-probs come from a fixed table keyed by the last token."""

    name = "fake"
    supports_full_logprobs = True
    VOCAB = "abcd"

    def __init__(self, table):
        self.table = table
        self.device = "cpu"
        self.info = ModelInfo("fake", "fp32", "float32", 0, 0, 0, 0)

    def encode(self, text, add_special_tokens=True):
        return [self.VOCAB.index(c) for c in text if c in self.VOCAB]

    def full_logprobs(self, ids):
        import torch
        return torch.log_softmax(torch.tensor([self.table[i] for i in ids], dtype=torch.float32), -1)

    def token_logprobs(self, ids):
        lp = self.full_logprobs(ids)
        return [float(lp[i, ids[i + 1]]) for i in range(len(ids) - 1)]


UNIFORM = [[0.0] * 4] * 4
PEAKED = [[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 2.0]]


def test_evaluate_text_uniform_model_has_ppl_vocab_and_self_kl_zero():
    pytest.importorskip("torch")
    proto = accuracy.TextProtocol("t", 100, 4, 4, "no")
    res = accuracy.evaluate_text(FakeBackend(UNIFORM), FakeBackend(UNIFORM), "abcdabcdab", proto)
    assert res["model"]["ppl"]["value"] == pytest.approx(4.0)
    assert res["protocol"]["tokens_scored"] == 7  # windows (0,4) (4,8) (8,10), first token of each unscored
    assert res["kl"]["value"] == pytest.approx(0.0, abs=1e-7)
    assert res["top1_agreement"]["value"] == 1.0
    assert res["retained_pct"]["value"] == pytest.approx(100.0)


def test_evaluate_text_kl_matches_hand_value():
    pytest.importorskip("torch")
    proto = accuracy.TextProtocol("t", 100, 4, 4, "no")
    res = accuracy.evaluate_text(FakeBackend(PEAKED), FakeBackend(UNIFORM), "aaaa", proto)
    p = [math.exp(2) / (math.exp(2) + 3)] + [1 / (math.exp(2) + 3)] * 3  # model (peaked) vs base (uniform)
    kl = sum(0.25 * math.log(0.25 / q) for q in p)  # KL(base || model)
    assert res["kl"]["value"] == pytest.approx(kl, rel=1e-5)
    assert res["top1_agreement"]["value"] == 1.0  # uniform argmax is index 0, as is the peaked row for 'a'
    assert res["ppl_ratio"]["value"] < 1  # every target is 'a', which the peaked model favours


def test_score_items_and_task_retained():
    pytest.importorskip("torch")
    from qfit.data.tasks import MCItem, TaskSpec
    items = [MCItem("a", (" a", " b"), 0), MCItem("b", (" a", " b"), 1)]
    spec = TaskSpec("toy", "-", "toy", lambda r: r, "hand-made")
    res = accuracy.evaluate_task(FakeBackend(PEAKED), FakeBackend(PEAKED), spec, items, "no")
    assert res["model"]["acc"]["value"] == 1.0
    assert res["retained_pct"]["acc"]["value"] == pytest.approx(100.0)


def test_split_context_moves_trailing_space():
    assert accuracy.split_context("Answer: ", "yes") == ("Answer:", " yes")
    assert accuracy.split_context("Answer:", " yes") == ("Answer:", " yes")


def _speed_row(batch, tps):
    s = {"mean": 1 / tps, "p50": 1 / tps, "p90": 1 / tps, "p99": 1 / tps, "cv": 0.0}
    return {"batch": batch, "tpot_s": s, "ttft_s": s, "tokens_per_s_per_seq": {"mean": tps, "cv": 0.0},
            "tokens_per_s_total": {"mean": batch * tps}, "bandwidth": {"achieved_gbps": None}}


def test_compare_ratio_and_missing_prediction():
    speed = {"prefill": [{"input_len": 32, "tokens_per_s": {"mean": 100.0}}], "decode": [_speed_row(1, 10.0)]}
    pred = {"available": True, "prefill": [{"input_len": 32, "tokens_per_s": 50.0}],
            "decode": [{"batch": 1, "tokens_per_s_per_seq": 20.0, "tpot_s": 0.05, "ttft_s": 0.2}]}
    comp = predict.compare(speed, pred)
    assert comp["prefill"][0]["ratio"] == pytest.approx(2.0)
    assert comp["decode"][0]["ratio"] == pytest.approx(0.5)
    none = predict.compare(speed, {"available": False, "reason": "x"})
    assert none["decode"][0]["ratio"] is None and none["prefill"][0]["predicted_tokens_per_s"] is None


def test_prediction_is_guarded():
    from qfit.hardware import get_accelerator

    res = predict.planner_prediction("/nonexistent/model", precision="fp32", acc=get_accelerator("h100"),
                                     engine="transformers", input_lens=[32], batches=[1], output_tokens=4)
    assert res["available"] is False and res["reason"]


def test_bandwidth_maths():
    from qfit.profile.speed import bandwidth, decode_read_bytes
    info = ModelInfo("m", "fp32", "float32", 0, 1000, 800, 10)
    assert decode_read_bytes(info, 2, 50) == 800 + 10 * 2 * 50
    bw = bandwidth(2e9, 0.5, 8.0)
    assert bw["achieved_gbps"] == pytest.approx(4.0) and bw["fraction"] == pytest.approx(0.5)
    assert bandwidth(2e9, 0.5, None)["fraction"] is None


def test_markdown_renders_na_prediction():
    result = {"schema": report.SCHEMA, "created": "now", "qfit": {"version": "0", "git_commit": None},
              "host": {}, "device": {"kind": "cpu", "name": "host CPU", "threads": 1}, "versions": {"torch": "x"},
              "backend": "transformers", "model": {"path": "/m/a", "precision": "gptq-int4", "weight_bytes": 10},
              "baseline": None, "methods": ["m"], "accuracy": {"tasks": []},
              "speed": {"protocol": {"warmup": 1, "trials": 2, "decode_prompt_len": 32, "output_tokens": 4},
                        "prefill": [], "decode": [_speed_row(1, 10.0)],
                        "peak_memory": {"kind": "process-rss", "bytes": 2**30, "how": "rss"}},
              "prediction": {"available": False, "reason": "planner not importable"},
              "comparison": {"prefill": [], "decode": [{"predicted_tokens_per_s_per_seq": None, "ratio": None}]}}
    report.validate(result)
    md = report.render_markdown(result)
    assert "| 1 | 10.0 | 10.0 |" in md and "n/a (planner not importable)" in md
    with pytest.raises(ValueError):
        report.validate({k: v for k, v in result.items() if k != "speed"})


@pytest.mark.parametrize("args,error", [
    (["/nonexistent/model"], "model /nonexistent/model does not exist"),
    (["/nonexistent/m.gguf"], "does not exist"),
    (["x", "--eval", "ppl,hellaswag"], "unknown task 'hellaswag'"),
    (["x", "--eval", "kl"], "pass --baseline"),
    (["x", "--backend", "vllm"], "backend vllm needs the vllm package"),
    (["x", "--backend", "tgi"], "unknown backend 'tgi'"),
    (["x", "--plot"], "pass --out DIR"),
    (["x", "--limit", "0"], "--limit must be positive"),
    (["x", "--output-len", "1"], "--output-len must be at least 2"),
    (["x", "--output-tokens", "1"], "--output-len must be at least 2"),        # the old name, hidden, still read
    (["x", "--input-lens", "0"], "--input-len must be positive"),
    (["x", "--input-lens", "8", "--input-len", "9"], "--input-lens is the old name of --input-len: give one"),
    (["x", "--output-tokens", "8", "--output-len", "9"], "--output-tokens is the old name of --output-len"),
    (["x", "-b", "smollm2-f32"], "-b is now --batch; use --baseline smollm2-f32"),
    (["x", "-b", "/models/base"], "-b is now --batch; use --baseline /models/base"),
    (["x", "-b", "0"], "--batch must be positive"),                              # a number: the usual message
    (["x", "--batch", "base"], "--batch"),
])
def test_cli_bad_input_is_one_line(args, error):
    res = CliRunner().invoke(cli, ["profile", *args])
    assert res.exit_code == 2, res.output
    assert error in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_llama_cpp_backend_errors_come_before_anything_loads(monkeypatch):
    """A missing package names how to install it; an installed one refuses batches its Llama object cannot hold."""
    import importlib.util

    from qfit.profile import backends

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    res = CliRunner().invoke(cli, ["profile", "x", "--backend", "llama.cpp"])
    assert res.exit_code == 2 and "pip install llama-cpp-python" in res.output and "scripts/setup.sh" in res.output
    monkeypatch.setattr(backends, "require", lambda name: None)
    res = CliRunner().invoke(cli, ["profile", "x", "--backend", "llama.cpp", "-b", "1,4"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "runs at most 1 sequence(s) in process: use --batch 1" in res.output and "--endpoint" in res.output


def test_a_backend_holding_one_sequence_defaults_to_batch_one():
    from qfit.profile.defaults import backend_max_batch, fill

    assert backend_max_batch("llama.cpp") == 1 and backend_max_batch("transformers") is None
    given = {"batch": None, "output_len": None, "trials": None, "warmup": None}
    assert fill(given, "cpu", backend_max_batch("llama.cpp"))[0]["batch"] == "1"
    assert fill(given, "cpu")[0]["batch"] == "1,4" and fill(given, "accelerator", 4)[0]["batch"] == "1,4"


def test_renamed_flags_and_the_short_batch_flag():
    """-b is --batch as in `qfit plan`; the old names work hidden (absent from --help) with a note on stderr."""
    help_text = CliRunner().invoke(cli, ["profile", "--help"]).output
    assert "-b, --batch" in help_text and "--input-len " in help_text and "--output-len " in help_text
    assert "--input-lens" not in help_text and "--output-tokens" not in help_text and "-b, --baseline" not in help_text
    res = CliRunner().invoke(cli, ["profile", "x", "--batch", "base"])
    assert "-b is now" not in res.output                 # --batch spelled out: the plain number-list error


def test_precision_name_from_config_with_enum_quant_method():
    from transformers import LlamaConfig
    from transformers.utils.quantization_config import QuantizationMethod

    from qfit.profile.backends.hf import precision_of

    cfg = LlamaConfig()
    cfg.quantization_config = {"quant_method": QuantizationMethod.GPTQ, "bits": 4, "group_size": 64}
    assert precision_of(cfg, "fp32") == "gptq-int4"
    assert precision_of(LlamaConfig(), "bf16") == "bf16"


def test_apple_mps_profile_gets_a_prediction(monkeypatch):
    """A profile run on an Apple GPU (torch device "mps") names its chip for the planner, which predicts for it."""
    from qfit import detect
    from qfit.profile import predict

    assert detect.apple_device_name("Apple M3 Max", 96 * 2**30, 30) == "Apple M3 Max 96GB 30-core"
    answers = {"machdep.cpu.brand_string": "Apple M3 Max", "hw.memsize": str(96 * 2**30)}
    monkeypatch.setattr(detect, "sysctl", answers.__getitem__)        # what macOS's sysctl prints
    monkeypatch.setattr(detect, "apple_gpu_cores", lambda: 30)
    acc = predict.planner_accelerator("mps")
    assert acc.backend == "metal" and acc.memory_gib == 96 and 30 in acc.gpu_cores
    res = predict.planner_prediction("smollm2-135m", precision="fp32", acc=acc, engine="transformers",
                                     input_lens=[128], batches=[1, 4], output_tokens=16)
    assert res["available"], res.get("reason")
    assert res["accelerator"]["backend"] == "metal" and [d["batch"] for d in res["decode"]] == [1, 4]
    assert res["prefill"][0]["tokens_per_s"] > 0 and res["decode"][0]["tokens_per_s_per_seq"] > 0


# ---- speed settings by device --------------------------------------------------------------------------------------

@pytest.mark.parametrize("given,kind,values,note", [
    (dict(batch=None, output_len=None, trials=None, warmup=None), "cpu",
     dict(batch="1,4", output_len="32", trials="3", warmup="1"),
     "note: speed at the CPU defaults --batch 1,4 --output-len 32 --trials 3 --warmup 1 "),
    (dict(batch="8", output_len=None, trials="2", warmup="0"), "cpu",
     dict(batch="8", output_len="32", trials="2", warmup="0"), "note: speed at the CPU defaults --output-len 32 "),
    (dict(batch=None, output_len=None, trials=None, warmup=None), "accelerator",
     dict(batch="1,4,16", output_len="128", trials="5", warmup="2"), None),
    (dict(batch="2", output_len="16", trials="4", warmup="1"), "cpu",
     dict(batch="2", output_len="16", trials="4", warmup="1"), None),
])
def test_speed_settings_the_user_left_out_follow_the_device(given, kind, values, note):
    from qfit.profile.defaults import fill
    got, said = fill(given, kind)
    assert got == values
    assert said == note if note is None else said.startswith(note)

