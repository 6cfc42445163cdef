"""One engine registry: every name users type resolves the same way for plan, size and profile; which engine runs which
weights where is data (profiles/engines/*.yaml); a broken profile is refused with its field named."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from click.testing import CliRunner

from qfit import resolve
from qfit.cli import cli
from qfit.engines import load_engines
from qfit.engines.load import validate_profile
from qfit.engines.profile import MULTI_GPU
from qfit.errors import QfitError
from qfit.paths import profiles_dir
from qfit.precision import parse_recipe

ENGINES = load_engines(overlays=False)


@pytest.mark.parametrize("name,engine,noted", [
    ("vllm", "vllm", False), ("VLLM", "vllm", False), ("hf", "transformers", False),
    ("huggingface", "transformers", False), ("llamacpp", "llama.cpp", False), ("gguf", "llama.cpp", False),
    ("trtllm", "vllm", True), ("tensorrt-llm", "vllm", True), ("tgi", "vllm", True), ("lmdeploy", "vllm", True),
    ("autoawq", "transformers", True), ("tinychat", "transformers", True), ("ollama", "llama.cpp", True),
    ("lmstudio", "llama.cpp", True), ("llama-server", "llama.cpp", False), ("llama-bench", "llama.cpp", False),
    ("llama-cli", "llama.cpp", False),
])
def test_names_map_to_the_nearest_engine_with_a_note(name, engine, noted):
    profile = ENGINES.get(name)
    assert profile.name == engine and bool(profile.note) == noted


def test_unknown_engine_suggests():
    with pytest.raises(QfitError, match=r"unknown engine 'vlm'.*did you mean: vllm"):
        ENGINES.get("vlm")


@pytest.mark.parametrize("gpu,precision,engine", [
    ("h100", "bf16", "vllm"), ("mi300x", "gptq-int4", "vllm"), ("h100", "gguf-q4_k_m", "llama.cpp"),
    ("M3 Max", "bf16", "transformers"), ("M3 Max", "gguf-q4_k_m", "llama.cpp"), ("gaudi3", "fp8", "vllm"),
    ("v100", "fp16", "vllm"), ("t4", "gptq-int4", "vllm"),
    ("p100", "gptq-int4", "transformers"),     # vLLM and SGLang refuse Pascal: the next engine that runs GPTQ there
])
def test_default_engine_per_device_and_weights(gpu, precision, engine):
    assert ENGINES.choose(None, parse_recipe(precision), resolve.accelerator(gpu)).name == engine


@pytest.mark.parametrize("engine,gpu,precision,needle", [
    ("llama.cpp", "h100", "gptq-int4", "GGUF"),
    ("vllm", "h100", "gguf-q4_k_m", "runs there on llama.cpp"),
    (None, "M3 Max", "gptq-int4", "no engine runs gptq-int4"),
    ("sglang", "M3 Max", "bf16", "does not run on"),
    # device_support (policy.yaml): hardware the kernels need
    (None, "v100", "bf16", r"V100 SXM2 16GB \(volta\) cannot run bf16: .*use fp16"),
    (None, "t4", "bf16", r"T4 \(turing\) cannot run bf16"),
    (None, "t4", "fp8", r"T4 \(turing\) cannot run fp8: FP8 checkpoints need"),
    (None, "rtx a6000", "fp8-dynamic", None),   # Ampere runs FP8 weight-only (Marlin): no error
    ("vllm", "p100", "gptq-int4", r"vllm does not run on Tesla P100 .*compute capability 7.0.*engines that do: "
                                  r"llama.cpp, transformers"),
    ("sglang", "v100", "fp16", "SGLang's attention kernels"),
])
def test_engines_refuse_what_they_do_not_run(engine, gpu, precision, needle):
    if needle is None:
        ENGINES.choose(engine, parse_recipe(precision), resolve.accelerator(gpu))
        return
    with pytest.raises(QfitError, match=needle):
        ENGINES.choose(engine, parse_recipe(precision), resolve.accelerator(gpu))


def test_one_multi_gpu_vocabulary_from_memory_to_speed():
    for engine in ENGINES.engines.values():
        assert engine.multi_gpu in MULTI_GPU
        assert engine.efficiency(engine.speed_default_backend, "bf16").multi_gpu == engine.multi_gpu


def test_plan_size_and_profile_share_the_normaliser(tmp_path):
    run = CliRunner().invoke
    plan = run(cli, ["plan", "-m", "llama-3-8b", "--gpu", "h100", "-p", "bf16", "--engine", "trtllm", "--json"])
    assert plan.exit_code == 0, plan.output
    d = json.loads(plan.output)
    assert d["engine"] == "vllm" and any("TensorRT-LLM" in a for a in d["assumptions"])
    size = run(cli, ["size", "-m", "qwen2.5-7b-instruct", "-u", "4", "--engine", "HF", "--gpus-allowed", "h100",
                     "--json"])
    assert size.exit_code == 0, size.output
    assert json.loads(size.stdout)["chosen"]["engine"] == "transformers"
    # profile drives engines itself: a stand-in is refused rather than measured as something else
    prof = run(cli, ["profile", "x", "--backend", "trtllm"])
    assert prof.exit_code == 2 and "unknown backend 'trtllm'" in prof.output and "planned" in prof.output


def _record(stem: str) -> dict:
    return yaml.safe_load((profiles_dir() / "engines" / f"{stem}.yaml").read_text())


def test_every_shipped_profile_is_valid():
    for path in sorted((profiles_dir() / "engines").glob("*.yaml")):
        assert validate_profile(_record(path.stem), path.stem) == [], path.name


@pytest.mark.parametrize("change,needle", [
    (lambda d: d.update(multi_gpu="tensor"), "multi_gpu 'tensor'"),
    (lambda d: d["runs"].update(tpu=["float"]), "unknown backend 'tpu'"),
    (lambda d: d["runs"]["cuda"].append("fp5"), "unknown weight family 'fp5'"),
    (lambda d: d["memory"]["runtime_overhead_gib"].pop("cuda"), "no figure for 'cuda'"),
    (lambda d: d["default_on"].append("metal"), "'metal' is not in runs"),
    (lambda d: d["memory"].update(memory_fraction=1.5), "memory_fraction"),
    (lambda d: d.pop("speed"), "missing field 'speed'"),
    (lambda d: d.update(name="vllm2"), "does not match the file name"),
    (lambda d: d.update(unsupported_families={"pascal": ""}), "unsupported_families"),
    (lambda d: d.update(unsupported_families=["pascal"]), "unsupported_families"),
])
def test_broken_profiles_are_refused_by_field(change, needle):
    data = copy.deepcopy(_record("vllm"))
    change(data)
    assert any(needle in p for p in validate_profile(data, "vllm"))
