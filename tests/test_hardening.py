"""Bad input across all eight commands: a one-line error and exit 2 (inspect: exit 1 with its report), never a
traceback, a hang or a silent wrong answer; nothing the user owns is lost; no pickle is ever loaded."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import struct
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from qfit.cli import cli

BASE = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 256, "max_position_embeddings": 128}


def invoke(*args) -> tuple[int, str]:
    t = time.perf_counter()
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert time.perf_counter() - t < 20, f"{args} took {time.perf_counter() - t:.0f} s"
    assert r.exception is None or isinstance(r.exception, SystemExit), f"{args}: {r.exception!r}"
    assert "Traceback" not in r.output
    return r.exit_code, r.output


def one_line_error(*args, needle: str = "") -> str:
    code, out = invoke(*args)
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    assert code == 2, (args, out)
    errors = [ln for ln in lines if ln.startswith(("error: ", "Error: "))]
    assert errors, (args, out)
    if errors[0].startswith("error: "):          # qfit's own errors are exactly one line
        assert len(lines) == 1, (args, out)
    assert needle in errors[0], (args, errors[0])
    return errors[0]


def folder(tmp_path: Path, name: str, config=None, raw: bytes | None = None, header=None,
           data: bytes = b"") -> Path:
    d = tmp_path / name
    d.mkdir()
    if raw is not None:
        (d / "config.json").write_bytes(raw)
    elif config is not None:
        (d / "config.json").write_text(json.dumps(config))
    if header is not None:
        h = header if isinstance(header, bytes) else json.dumps(header).encode()
        (d / "model.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + data)
    return d


def tensor(shape, begin=0, dtype="F16"):
    n = 1
    for s in shape:
        n *= s
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, begin + 2 * n]}


# ------------------------------------------------------------------------------------------- numbers on the command line

NUMBERS = ["", "abc", "-1", "0", "1.5", "9" * 400, "1e400", "nan", "inf", "12x"]
NUMERIC_FLAGS = [
    ("plan", ["-m", "llama-3-8b", "--gpu", "a6000", "-p", "bf16"], ["--context", "--batch", "--gpus", "--input-len",
                                                                     "--output-len"]),
    ("plan", ["--gpu", "a6000"], ["--top", "--min-params", "--max-params"]),
    ("size", ["-m", "llama-3-8b", "-u", "4", "--input-len", "1k", "--output-len", "1k"],
     ["--rps", "--min-tokens-per-s", "--max-ttft", "--hours-per-month", "--months", "--max-gpus", "--top"]),
    ("profile", ["x"], ["--ppl-tokens", "--ppl-window", "--limit", "--trials", "--threads", "--tensor-parallel",
                        "--input-len", "--batch", "--output-len"]),
]
CASES = [(cmd, base, flag, value) for cmd, base, flags in NUMERIC_FLAGS for flag in flags for value in NUMBERS
         if not (value == "1.5" and flag in ("--rps", "--min-tokens-per-s", "--max-ttft", "--hours-per-month",
                                             "--min-params", "--max-params"))]


@pytest.mark.parametrize("cmd,base,flag,value", CASES, ids=[f"{c[0]}{c[2]}={c[3][:8]}" for c in CASES])
def test_bad_numbers_are_one_line_errors(cmd, base, flag, value):
    one_line_error(cmd, *base, flag, value)


def test_float_flags_are_exact_and_bounded():
    one_line_error("size", "-m", "llama-3-8b", "-u", "4", "--power-cost", "-1", needle="non-negative")
    one_line_error("plan", "-m", "llama-3-8b", "--gpu", "a6000", "--context", "1.5", needle="not a whole number")
    one_line_error("plan", "-m", "llama-3-8b", "--gpu", "a6000", "--batch", ",".join(["1"] * 100), needle="at most 64")


# ------------------------------------------------------------------------------------------------------- config.json

CONFIGS = {
    "not utf-8": dict(raw=b"\xff\xfe{}"), "array": dict(raw=b"[1, 2]"), "deep": dict(raw=b"[" * 5000 + b"]" * 5000),
    "infinity": dict(raw=b'{"model_type": "llama", "hidden_size": Infinity}'), "nan": dict(raw=b'{"hidden_size": NaN}'),
    "string number": dict(config={**BASE, "hidden_size": "64"}), "float layers": dict(config={**BASE,
                                                                                          "num_hidden_layers": 2.5}),
    "bool heads": dict(config={**BASE, "num_attention_heads": True}),
    "negative window": dict(config={**BASE, "model_type": "mistral", "sliding_window": -5}),
    "objects in layer_types": dict(config={**BASE, "layer_types": [{"a": 1}, {"b": 2}]}),
    "short layer_types": dict(config={**BASE, "layer_types": ["full_attention"]}),
    "pattern 0": dict(config={**BASE, "model_type": "gemma3_text", "sliding_window": 16, "sliding_window_pattern": 0}),
    "top-k > experts": dict(config={**BASE, "num_local_experts": 4, "num_experts_per_tok": 8}),
    "kv > heads": dict(config={**BASE, "num_key_value_heads": 8}),
    "kv not dividing": dict(config={**BASE, "num_attention_heads": 6, "num_key_value_heads": 4}),
    "string quant config": dict(config={**BASE, "quantization_config": "gptq"}),
    "10M layers": dict(config={**BASE, "num_hidden_layers": 10_000_000}),
    "huge vocab": dict(config={**BASE, "vocab_size": 10**12}),
    "missing hidden": dict(config={k: v for k, v in BASE.items() if k != "hidden_size"}),
    "max position string": dict(config={**BASE, "max_position_embeddings": "lots"}),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_bad_configs(tmp_path, name):
    d = folder(tmp_path, "m", **CONFIGS[name])
    one_line_error("plan", "-m", d, "--gpu", "a6000", "-p", "bf16")
    one_line_error("quantize", d, tmp_path / "out", "--method", "rtn")
    assert not (tmp_path / "out").exists()


def test_config_that_is_a_folder(tmp_path):
    d = tmp_path / "m"
    (d / "config.json").mkdir(parents=True)
    one_line_error("plan", "-m", d, "--gpu", "a6000", needle="not a file")


# ------------------------------------------------------------------------------------------------ safetensors headers

HEADERS = {
    "array": ([1, 2], b""), "number": (5, b""), "empty": ({}, b""), "not json": (b"{oops", b""),
    "string shape": ({"a": {"dtype": "F16", "shape": "x", "data_offsets": [0, 2]}}, b"\0" * 2),
    "string offsets": ({"a": {"dtype": "F16", "shape": [1], "data_offsets": ["0", "2"]}}, b"\0" * 2),
    "reversed offsets": ({"a": {"dtype": "F16", "shape": [1], "data_offsets": [2, 0]}}, b"\0" * 2),
    "missing offsets": ({"a": {"dtype": "F16", "shape": [1]}}, b"\0" * 2),
    "unknown dtype": ({"a": {"dtype": "F13", "shape": [1], "data_offsets": [0, 2]}}, b"\0" * 2),
    "span mismatch": ({"a": {"dtype": "F16", "shape": [4], "data_offsets": [0, 2]}}, b"\0" * 2),
    "truncated data": ({"a": tensor([1000])}, b"\0" * 10),
    "overlap": ({"a": tensor([4]), "b": tensor([4], begin=2)}, b"\0" * 10),
}


@pytest.mark.parametrize("name", HEADERS)
def test_bad_safetensors_headers(tmp_path, name):
    header, data = HEADERS[name]
    d = folder(tmp_path, "m", config=BASE, header=header, data=data)
    one_line_error("plan", "-m", d, "--gpu", "a6000", "-p", "bf16")
    one_line_error("quantize", d, tmp_path / "out", "--method", "rtn")


def test_missing_shards_are_refused(tmp_path):
    d = folder(tmp_path, "m", config=BASE)
    h = json.dumps({"a": tensor([2])}).encode()
    (d / "model-00001-of-00004.safetensors").write_bytes(struct.pack("<Q", len(h)) + h + b"\0" * 4)
    one_line_error("plan", "-m", d, "--gpu", "a6000", needle="1 of 4 shards")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-00001-of-00004.safetensors",
                                                                               "b": "model-00002-of-00004.safetensors"}}))
    one_line_error("plan", "-m", d, "--gpu", "a6000", needle="missing")


# --------------------------------------------------------------------------------------------------------------- GGUF

def _gguf(path: Path, arch: str = "llama", block_count=2, tensors: bool = True) -> Path:
    import numpy as np
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), arch)
    if isinstance(block_count, str):
        w.add_string(f"{arch}.block_count", block_count)
    else:
        w.add_block_count(block_count)
    for key, value in (("embedding_length", 64), ("feed_forward_length", 128), ("attention.head_count", 4)):
        w.add_uint32(f"{arch}.{key}", value)
    if tensors:
        w.add_tensor("token_embd.weight", np.zeros((256, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("kind,needle", [("string block count", "not a number"), ("no tensors", "no tensors"),
                                         ("bad magic", "not a GGUF"), ("truncated", "truncated")])
def test_bad_gguf(tmp_path, kind, needle):
    path = tmp_path / "m.gguf"
    if kind == "bad magic":
        path.write_bytes(b"NOPE" + b"\0" * 64)
    else:
        _gguf(path, block_count="two" if kind == "string block count" else 2, tensors=kind != "no tensors")
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[:40])
    one_line_error("plan", "-m", path, "--gpu", "a6000", needle=needle)


# ------------------------------------------------------------------------------------ outputs: nothing lost, no escape

def _digest(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("where", ["itself", "inside", "holding"])
def test_quantize_never_writes_over_or_inside_its_input(tiny_llama_dir, tmp_path, where):
    model = tmp_path / "home" / "model"
    shutil.copytree(tiny_llama_dir, model)
    before = _digest(tmp_path / "home")
    out = {"itself": model, "inside": model / "q", "holding": tmp_path / "home"}[where]
    one_line_error("quantize", model, out, "--method", "rtn", "--group-size", "32", "--force", needle="refusing")
    assert _digest(tmp_path / "home") == before


def test_plot_and_profile_out_cannot_overwrite_the_model(tmp_path):
    gguf = _gguf(tmp_path / "m.gguf")
    before = gguf.read_bytes()
    one_line_error("plan", "-m", gguf, "--gpu", "a6000", "-p", "gguf-q4_k_m", "--plot", gguf, "--force",
                   needle="refusing")
    one_line_error("profile", gguf, "--out", tmp_path, "--no-speed", "--eval", "ppl", needle="refusing")
    assert gguf.read_bytes() == before


@pytest.mark.parametrize("command", [
    ["plan", "-m", "llama-3-8b", "--gpu", "a6000", "-p", "bf16", "--plot"],
    ["size", "-m", "llama-3-8b", "-u", "4", "--plot"],
])
def test_unwritable_outputs_fail_before_work(tmp_path, command):
    one_line_error(*command, tmp_path / ("x" * 300 + ".png"), needle="longer than 255")
    one_line_error(*command, tmp_path / "missing" / "p.png", needle="does not exist")


def test_calibrate_never_escapes_the_overlay_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("QFIT_CONFIG_DIR", str(tmp_path / "cfg"))
    result = {"schema": "qfit.profile/1", "backend": "../../escape", "device": {"kind": "cpu", "name": "cpu"},
              "prediction": {"available": True},
              "comparison": {"decode": [{"measured_tokens_per_s_per_seq": 5, "predicted_tokens_per_s_per_seq": 4}]}}
    (tmp_path / "r.json").write_text(json.dumps(result))
    one_line_error("calibrate", tmp_path / "r.json", needle="not an engine")
    assert not list(tmp_path.rglob("*.yaml"))


@pytest.mark.parametrize("value", [-0.5, 0, 1e400, "fast", None])
def test_calibrate_refuses_rates_that_are_not_positive_and_finite(tmp_path, value):
    text = json.dumps({"schema": "qfit.profile/1", "backend": "transformers", "device": {"kind": "cpu"},
                       "prediction": {"available": True},
                       "comparison": {"decode": [{"measured_tokens_per_s_per_seq": "VALUE",
                                                  "predicted_tokens_per_s_per_seq": 4}]}})
    (tmp_path / "r.json").write_text(text.replace('"VALUE"', "1e400" if value == 1e400 else json.dumps(value)))
    if value is None:            # no measurement in the row: nothing to fit, said as such
        one_line_error("calibrate", tmp_path / "r.json", "--dry-run", needle="no measured-vs-predicted pairs")
    else:
        one_line_error("calibrate", tmp_path / "r.json", "--dry-run", needle="not a positive finite rate")


@pytest.mark.parametrize("text,needle", [
    ("calibrations: [1, 2]\n", "no `calibrations` mapping"),
    ("calibrations:\n  cuda:\n    decode_speed_factor: fast\n", "implausible"),
    ("calibrations:\n  cuda:\n    decode_speed_factor: .nan\n", "implausible"),
    ("calibrations:\n  cuda:\n    points: 3\n", "points"),
    ("calibrations: {cuda: [1]}\n", "not a mapping"),
    (":\n  - [", "cannot read calibration overlay"),
])
def test_malformed_overlays_are_one_line(tmp_path, monkeypatch, text, needle):
    monkeypatch.setenv("QFIT_CONFIG_DIR", str(tmp_path))
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "vllm.yaml").write_text(text)
    one_line_error("plan", "-m", "llama-3-8b", "--gpu", "h100", "-p", "bf16", needle=needle)


# ------------------------------------------------------------------------------------------------------------ pickle

class _Tripwire:
    """Unpickling this creates a marker file: proof that some code path loaded the pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_no_pickle_is_loaded_beside_safetensors(tiny_llama_dir, tmp_path, monkeypatch):
    import torch

    from qfit.loading import load_causal_lm, safe_model_dir

    model = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, model)
    marker = tmp_path / "unpickled"
    (model / "pytorch_model.bin").write_bytes(pickle.dumps(_Tripwire(marker)))
    (model / "training_args.bin").write_bytes(pickle.dumps(_Tripwire(marker)))

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", refuse)
    assert not any(p.suffix == ".bin" for p in safe_model_dir(model).iterdir())
    load_causal_lm(model)                                                      # profile's transformers path
    code, out = invoke("quantize", model, tmp_path / "q", "--method", "rtn", "--group-size", "32")   # RTN path
    assert code == 0, out
    from gptqmodel import GPTQModel  # GPTQ path: what GPTQModel is given

    seen = []

    def capture(path, *args, **kwargs):
        seen.append(Path(path))
        raise RuntimeError("stop here")

    monkeypatch.setattr(GPTQModel, "load", capture)
    from qfit.quantize.engine import run_gptq
    from qfit.quantize.job import QuantizeJob

    with pytest.raises(RuntimeError, match="stop here"):
        run_gptq(model, tmp_path / "g", QuantizeJob.from_flags(group_size=32), windows=[[1, 2]], device="cpu")
    assert seen and not any(p.suffix == ".bin" for p in seen[0].iterdir())
    assert not marker.exists()


# --------------------------------------------------------------------------------------------------------- the rest

@pytest.mark.parametrize("args,needle", [
    (["plan", "-m", "llama-3-8b", "--gpu", "a6000", "-p", "bf16", "--kv-dtype", "q4_0"], "q4_0 is llama.cpp's"),
    (["plan", "-m", "llama-3-8b", "--gpu", "a6000", "-p", "gguf-q4_k_m", "--kv-dtype", "fp8"], "not fp8"),
    (["plan", "-m", "llama-3-8b", "--gpu", "a6000", "--context", "4k", "--input-len", "8k"], "exceed --context"),
    (["plan", "-m", "llama-3-8b", "--gpu", "a6000", "-p", "bf16", "--batch", ""], "--batch is empty"),
    (["profile", "x", "--eval", "lmeval:"], "expected lmeval:<task>"),
    (["profile", "x", "--eval", "lmeval:../x"], "expected lmeval:<task>"),
    (["inspect", "/nonexistent/ckpt"], "does not exist"),
    (["gpus", "--vendor", "x" * 300], "unknown vendor"),
    (["size", "-m", "llama-3-8b", "-u", "4", "--prices", "/"], "is a directory"),
])
def test_more_refusals(args, needle):
    one_line_error(*args, needle=needle)


@pytest.mark.parametrize("text,needle", [
    ("name,usd_per_hour\nA100," + "9" * 500 + "\n", "positive number"),
    ("name,usd_per_hour,date\nA100,1,yesterday\n", "not YYYY-MM-DD"),
    ("name,usd_per_hour,source\nA100,1," + "s" * 600 + "\n", "longer than"),
])
def test_bad_price_files(tmp_path, text, needle):
    (tmp_path / "p.csv").write_text(text)
    one_line_error("size", "-m", "llama-3-8b", "-u", "4", "--prices", tmp_path / "p.csv", needle=needle)


def test_plan_warns_past_the_trained_context():
    code, out = invoke("plan", "-m", "llama-3-8b", "--gpu", "a6000", "-p", "bf16", "--context", "64k", "--json")
    assert code == 0 and any(a.startswith("WARNING: context 65,536 exceeds") for a in json.loads(out)["assumptions"])


def test_inspect_reports_truncated_tensor_data(tiny_llama_dir, tmp_path):
    code, out = invoke("quantize", tiny_llama_dir, tmp_path / "q", "--method", "rtn", "--group-size", "32")
    assert code == 0, out
    st = tmp_path / "q" / "model.safetensors"
    st.write_bytes(st.read_bytes()[:-100])
    code, out = invoke("inspect", tmp_path / "q", "--json")
    assert code == 1 and not json.loads(out)["ok"]
    assert any("truncated" in p for p in json.loads(out)["config_problems"])


def test_profile_windows_and_prompts_must_fit_the_models_positions():
    from qfit.errors import QfitError
    from qfit.profile.backends.base import ModelInfo
    from qfit.profile.run import ProfileOptions, check_positions

    info = ModelInfo("m", "fp32", "float32", 0, 0, 0, 0, max_positions=1024)
    check_positions(ProfileOptions(model="m", ppl_window=512, input_lens=[128, 512], output_tokens=128), info)
    with pytest.raises(QfitError, match="--ppl-window 2,048 exceeds the 1,024 positions"):
        check_positions(ProfileOptions(model="m", ppl_window=2048, input_lens=[128]), info)
    with pytest.raises(QfitError, match="exceed the 1,024 positions"):
        check_positions(ProfileOptions(model="m", input_lens=[128, 1000], output_tokens=128), info)


# Generated invocations: random flags of every command with values from hostile to plausible, seeded so a failure
# reproduces. Whatever the combination: no traceback, no hang, an exit code of 0, 1 (inspect's problems) or 2.
VALUES = ["", "0", "-3", "1", "7", "1.5", "32k", "1m", "9" * 60, "nan", "abc", "a,b", "1,2,3", "../x", "x" * 300,
          "llama-3-8b", "qwen3-30b-a3b", "a6000", "h100", "auto", "bf16", "gptq-int4", "gguf-q4_k_m", "fp8", "vllm",
          "llama.cpp", "trtllm", "q8_0", "/nonexistent", "/", "size"]
FLAGS = {
    "plan": ["-m", "--gpu", "--gpus", "-p", "--group-size", "--context", "--batch", "--input-len", "--output-len",
             "--engine", "--kv-dtype", "--models", "--family", "--min-params", "--max-params", "--sort", "--top"],
    "size": ["--context", "--rps", "--input-len", "--output-tokens", "--min-tokens-per-s", "--max-ttft", "-p",
             "--engine", "--kv-dtype", "--gpus-allowed", "--max-gpus-per-node", "--max-gpus", "--months", "--top"],
    "gpus": ["--vendor", "--segment"], "inspect": [], "calibrate": ["--out"],
    "quantize": ["--bits", "--group-size", "--damp", "--nsamples", "--seqlen", "--keep", "--override"],
}


def _generated(seed: int, n: int):
    import random

    rng = random.Random(seed)
    for i in range(n):
        cmd = rng.choice(sorted(FLAGS))
        args = [cmd] + ([rng.choice(VALUES)] if cmd in ("inspect", "calibrate", "quantize") else [])
        args += [f"OUT-{i}"] if cmd == "quantize" else []
        args += ["-m", rng.choice(VALUES), "-u", rng.choice(VALUES)] if cmd == "size" else []
        for flag in rng.sample(FLAGS[cmd], k=min(len(FLAGS[cmd]), rng.randint(0, 4))):
            args += [flag, rng.choice(VALUES)]
        yield args + (["--method", "rtn"] if cmd == "quantize" else [])


@pytest.mark.parametrize("args", list(_generated(seed=16, n=150)), ids=lambda a: " ".join(a)[:60])
def test_generated_invocations(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)      # quantize outputs and calibrate overlays land here, never in the repository
    monkeypatch.setenv("QFIT_CONFIG_DIR", str(tmp_path / "cfg"))
    code, _ = invoke(*args)
    assert code in (0, 1, 2)
