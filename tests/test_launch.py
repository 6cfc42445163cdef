"""qfit plan --launch: the commands each engine gets for a plan (single GPU, TP, TP x PP over nodes, MoE expert
parallel, llama.cpp with expert offload), the node layouts and every refusal, the pipeline-parallel memory and speed,
and the JSON launch object's KV figures (the plan's own). Real catalog models; values worked out by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from qfit import resolve
from qfit.api import plan
from qfit.cli import cli
from qfit.deployment import Deployment
from qfit.errors import QfitError
from qfit.launch import build_launch, render_text
from qfit.launch.layout import node_layout
from qfit.launch.tables import flag_table
from qfit.perf.pipeline import internode

ROOT = Path(__file__).resolve().parents[1]
L8, L70, MOE, NEXT = "llama-3.1-8b", "llama-3.1-70b", "qwen3-30b-a3b", "qwen3-next-80b-a3b"


def run(*args):
    return CliRunner().invoke(cli, ["plan", *args])


def argv(model, **kw):
    return list(build_launch(plan(model, **kw)).commands[0].argv)


# ---- what each engine gets -------------------------------------------------------------------------------------

CASES = [
    # single GPU: defaults (TP 1, PP 1, KV auto) left out; context, memory fraction and concurrency always given
    (dict(model=L8, gpu="h100", precision="bf16", batch=16),
     ["vllm", "serve", "meta-llama/Meta-Llama-3.1-8B", "--max-model-len", "8192", "--gpu-memory-utilization", "0.92",
      "--max-num-seqs", "16"]),
    # tensor parallel over 4 GPUs of one node
    (dict(model=L70, gpu="h100", precision="bf16", gpus=4, context=32768),
     ["vllm", "serve", "meta-llama/Meta-Llama-3.1-70B", "--tensor-parallel-size", "4", "--max-model-len", "32768",
      "--gpu-memory-utilization", "0.92", "--max-num-seqs", "1"]),
    # fp8 from a bf16 checkpoint: vLLM quantizes at load; fp8 KV asked for
    (dict(model=L8, gpu="h100", precision="fp8", kv_dtype="fp8"),
     ["vllm", "serve", "meta-llama/Meta-Llama-3.1-8B", "--max-model-len", "8192", "--gpu-memory-utilization", "0.92",
      "--kv-cache-dtype", "fp8", "--quantization", "fp8", "--max-num-seqs", "1"]),
    # MoE on 2 GPUs: expert parallel (128 experts split 64 / 64)
    (dict(model=MOE, gpu="h100", precision="bf16", gpus=2),
     ["vllm", "serve", "Qwen/Qwen3-30B-A3B", "--tensor-parallel-size", "2", "--enable-expert-parallel",
      "--max-model-len", "8192", "--gpu-memory-utilization", "0.92", "--max-num-seqs", "1"]),
    (dict(model=MOE, gpu="h100", precision="bf16", gpus=2, engine="sglang", batch=4),
     ["sglang", "serve", "--model-path", "Qwen/Qwen3-30B-A3B", "--tp-size", "2", "--ep-size", "2",
      "--context-length", "8192", "--mem-fraction-static", "0.88", "--max-running-requests", "4"]),
    # a GPTQ plan of a bf16 catalog model: the user names the GPTQ checkpoint
    (dict(model=L8, gpu="a6000", precision="gptq-int4", engine="sglang"),
     ["sglang", "serve", "--model-path", "MODEL_GPTQ_INT4", "--context-length", "8192", "--mem-fraction-static",
      "0.88", "--max-running-requests", "1"]),
    # hybrid model under SGLang: recurrent-state slots capped at the concurrency
    (dict(model=NEXT, gpu="h200", precision="bf16", gpus=2, engine="sglang", batch=8),
     ["sglang", "serve", "--model-path", "Qwen/Qwen3-Next-80B-A3B-Thinking", "--tp-size", "2", "--ep-size", "2",
      "--context-length", "8192", "--mem-fraction-static", "0.88", "--max-running-requests", "8",
      "--max-mamba-cache-size", "8"]),
    # llama.cpp: -c is context x slots; q8_0 KV on both K and V
    (dict(model=L8, gpu="rtx-4090", precision="gguf-q4_k_m", batch=4, context=16384, kv_dtype="q8_0"),
     ["llama-server", "-m", "MODEL_GGUF_Q4_K_M.gguf", "-c", "65536", "-np", "4", "-ngl", "all", "-ctk", "q8_0",
      "-ctv", "q8_0"]),
]


@pytest.mark.parametrize("kw,expected", CASES, ids=[f"{c[0]['model']}-{c[1][0]}-{i}" for i, c in enumerate(CASES)])
def test_each_engine_gets_the_plans_values_as_its_flags(kw, expected):
    kw = dict(kw)
    assert argv(kw.pop("model"), **kw) == expected


def test_every_emitted_flag_is_one_the_engines_table_defines():
    for kw, expected in CASES:
        t = flag_table({"vllm": "vllm", "sglang": "sglang", "llama-server": "llama.cpp"}[expected[0]])
        spellings = {s for e in t.flags.values() for s in [e["flag"], *e.get("aliases", [])]}
        assert {a for a in expected if a.startswith("-")} <= spellings


def test_two_nodes_tp_within_pp_across_with_vllms_own_executor():
    p = plan(L70, gpu="h100", precision="bf16", gpus=16, nodes=2, batch=8)
    launch = build_launch(p)
    base = ["vllm", "serve", "meta-llama/Meta-Llama-3.1-70B", "--tensor-parallel-size", "8",
            "--pipeline-parallel-size", "2", "--max-model-len", "8192", "--gpu-memory-utilization", "0.92",
            "--max-num-seqs", "8", "--nnodes", "2", "--master-addr", "NODE0_IP"]
    assert [list(c.argv) for c in launch.commands] == [base + ["--node-rank", "0"],
                                                       base + ["--node-rank", "1", "--headless"]]
    assert "NODE0_IP" in launch.placeholders
    assert any("--distributed-executor-backend ray" in n and "ray start --head" in n for n in launch.notes)
    text = render_text(launch)
    assert "# node 1 (headless worker)" in text and "Fill in NODE0_IP" in text


def test_two_nodes_under_sglang_rank_each_node_at_one_address():
    p = plan(L70, gpu="h100", precision="bf16", gpus=16, nodes=2, engine="sglang")
    cmds = build_launch(p).commands
    assert [c.argv[-6:] for c in cmds] == [
        ("--nnodes", "2", "--node-rank", str(i), "--dist-init-addr", "NODE0_IP:PORT") for i in (0, 1)]
    assert cmds[0].argv[4:8] == ("--tp-size", "8", "--pp-size", "2")


@pytest.mark.parametrize("engine,var", [("vllm", "VLLM_ALLOW_LONG_MAX_MODEL_LEN"),
                                        ("sglang", "SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN")])
def test_a_context_past_the_models_limit_sets_the_engines_override(engine, var):
    # llama-2-7b's config stops at 4,096 positions
    long = build_launch(plan("llama-2-7b", gpu="h100", precision="bf16", context=8192, engine=engine))
    assert long.environment == {var: "1"} and any("exceeds max_position_embeddings 4,096" in n for n in long.notes)
    assert f"  export {var}=1" in render_text(long)
    assert build_launch(plan("llama-2-7b", gpu="h100", precision="bf16", context=4096, engine=engine)).environment == {}


def test_llama_cpp_takes_layer_and_expert_offload_as_parameters():
    p = plan(MOE, gpu="rtx-4090", precision="gguf-q4_k_m")
    args = list(build_launch(p, n_cpu_moe=20).commands[0].argv)
    assert args[args.index("--n-cpu-moe") + 1] == "20" and args[args.index("-ngl") + 1] == "all"
    args = list(build_launch(p, n_gpu_layers=30).commands[0].argv)
    assert args[args.index("-ngl") + 1] == "30" and "--n-cpu-moe" not in args
    assert "--n-cpu-moe" not in build_launch(p, n_cpu_moe=0).commands[0].argv


@pytest.mark.parametrize("call,message", [
    (lambda: build_launch(plan(L8, gpu="rtx-4090", precision="gguf-q4_k_m"), n_cpu_moe=4), "is dense"),
    (lambda: build_launch(plan(MOE, gpu="rtx-4090", precision="gguf-q4_k_m"), n_cpu_moe=49), "between 0 and"),
    (lambda: build_launch(plan(MOE, gpu="rtx-4090", precision="gguf-q4_k_m"), n_gpu_layers=-1), "between 0 and"),
    (lambda: build_launch(plan(MOE, gpu="h100", precision="bf16"), n_cpu_moe=4), "llama.cpp flags"),
    (lambda: build_launch(plan(L8, gpu="h100", precision="bf16", gpus=2), expert_parallel=True), "MoE model"),
    (lambda: build_launch(plan(L8, gpu="h100", precision="bf16"), "sglang"), "--engine sglang"),
    (lambda: build_launch(plan(L8, gpu="h100", precision="bf16", kv_dtype="fp16", engine="sglang")),
     "--kv-dtype bf16 | fp8"),
    (lambda: node_layout(None, 2, None), "needs --gpus-per-node"),
    (lambda: node_layout(12, 2, 8), "give --gpus 16"),
    (lambda: node_layout(None, 65, 8), "between 1 and 64"),
])
def test_builder_refusals_name_what_works(call, message):
    with pytest.raises(QfitError) as err:
        call()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_expert_parallel_off_when_the_experts_do_not_split():
    # 128 experts over 3 GPUs would not split; 3 GPUs do not split Qwen3-30B-A3B's 32 heads either, so use an
    # explicit off switch on a layout that does split, and check the automatic choice on one that does not
    p = plan(MOE, gpu="h100", precision="bf16", gpus=4)
    assert "--enable-expert-parallel" not in build_launch(p, expert_parallel=False).commands[0].argv
    assert "--enable-expert-parallel" in build_launch(p).commands[0].argv


def test_node_layouts():
    assert node_layout(None, None, None) == (1, 1)
    assert node_layout(4, None, None) == (4, 1)
    assert node_layout(None, 2, 8) == (16, 2)
    assert node_layout(16, 2, None) == (16, 2)
    assert node_layout(16, 2, 8) == (16, 2)


# ---- pipeline parallel in the planner --------------------------------------------------------------------------

def test_a_pipeline_stage_holds_its_layers_kv_and_the_tp_groups_activations():
    model, acc = resolve.model(L70), resolve.accelerator("h100")
    recipe, eng = resolve.recipe("bf16", model, None), resolve.engines().get("vllm")
    one = Deployment.build(model, acc, 8, recipe, eng)
    two = Deployment.build(model, acc, 16, recipe, eng, pp=2)
    # 80 layers, 8 KV heads x 128 x K,V x 2 bytes = 4096 B/token/layer; TP 8 -> 512 per GPU; 40 layers per stage
    assert two.kv_one(8192).per_gpu_bytes == 40 * 512 * 8192 == one.kv_one(8192).per_gpu_bytes / 2
    m1, m2 = one.memory(8192, 1, 8192), two.memory(8192, 1, 8192)
    assert m2.activations / 16 == pytest.approx(m1.activations / 8)
    assert m2.weights / 16 == pytest.approx(m1.weights / 16)
    with pytest.raises(QfitError, match="do not split into 3 pipeline stages"):
        Deployment.build(model, acc, 16, recipe, eng, pp=3)


def test_pipeline_speed_adds_one_inter_node_hop_per_stage_boundary():
    tp8 = plan(L70, gpu="h100", precision="bf16", gpus=8)
    pp2 = plan(L70, gpu="h100", precision="bf16", gpus=16, nodes=2)
    # 15 us latency + 1 x 8192 hidden x 2 bytes / 50 GB/s = 15.32768 us
    assert pp2.performance.tpot_s - tp8.performance.tpot_s == pytest.approx(15.32768e-6, rel=1e-6)
    assert pp2.performance.decode_tokens_per_s == pytest.approx(1 / pp2.performance.tpot_s)
    assert any("pipeline bubble" in a for a in pp2.performance.assumptions)
    band, base = pp2.performance.error_band, tp8.performance.error_band
    assert band["decode_pct"] == round(base["decode_pct"] * 1.5, 1) and "across nodes" in band["basis"]
    slow = plan(L70, gpu="h100", precision="bf16", gpus=16, nodes=2, internode="ethernet-100g")
    assert slow.performance.tpot_s - tp8.performance.tpot_s == pytest.approx(30e-6 + 16384 / 12.5e9, rel=1e-6)
    assert internode().key == "infiniband-ndr" and internode().bandwidth_gbps == 50.0


# ---- the CLI: JSON figures, text, refusals ---------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["-m", L8, "--gpu", "h100", "-p", "bf16", "--batch", "16"],
    ["-m", L70, "--gpu", "h100", "-p", "bf16", "--nodes", "2", "--gpus-per-node", "8"],
    ["-m", MOE, "--gpu", "h100", "-p", "bf16", "-n", "2", "--launch", "sglang"],
    ["-m", MOE, "--gpu", "rtx-4090", "-p", "gguf-q4_k_m"],
    ["-m", NEXT, "--gpu", "h200", "-p", "bf16", "-n", "2"],
])
def test_json_launch_kv_figures_are_the_plans(args):
    if "--launch" not in args:
        args = [*args, "--launch"]
    r = run(*args, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    launch, kv = doc["launch"], doc["kv_cache"]
    assert launch["kv_capacity_tokens"] == kv["capacity_tokens"] > 0
    assert launch["max_concurrency"] == kv["max_concurrency"] > 0
    assert launch["max_model_len"] == doc["context"]
    assert len(launch["commands"]) == doc["parallel"]["nodes"] == launch["nodes"]
    assert launch["recipe"] == (None if launch["nodes"] == 1 else {"vllm": "mp", "sglang": "nnodes"}[launch["engine"]])
    assert all(c["shell"].split() == c["argv"] for c in launch["commands"])


def test_text_prints_the_commands_after_the_plan():
    r = run("-m", L8, "--gpu", "h100", "-p", "bf16", "--launch", "vllm")
    assert r.exit_code == 0, r.output
    tail = r.stdout[r.stdout.index("Launch: vllm 0.33.0"):]
    assert "vllm serve meta-llama/Meta-Llama-3.1-8B --max-model-len 8192" in tail
    assert "Left at the engine default: --tensor-parallel-size 1, --pipeline-parallel-size 1" in tail


@pytest.mark.parametrize("model,precision,flag", [("qwen3.5-35b-a3b", "gguf-q8_0", ["--n-cpu-moe", "15"]),
                                                  ("llama-3.1-70b", "gguf-q4_k_m", ["-ngl", "45"])])
def test_a_plans_own_host_split_becomes_llama_servers_flags(model, precision, flag):
    """--ram: the split the plan chose (tests/test_offload.py pins 15 expert layers and 45 GPU layers) is launched."""
    r = run("-m", model, "--gpu", "RTX 4090", "-p", precision, "--ram", "64GB", "--ram-bandwidth", "80GB/s",
            "--launch", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    cmd = doc["launch"]["commands"][0]["argv"]
    assert cmd[cmd.index(flag[0]):cmd.index(flag[0]) + 2] == flag and doc["offload"]["flag"] == " ".join(flag)
    assert doc["launch"]["kv_capacity_tokens"] == doc["kv_cache"]["capacity_tokens"]
    assert any("the plan's own GPU/host split" in n for n in doc["launch"]["notes"])


@pytest.mark.parametrize("engine,flag", [("vllm", "--max-num-seqs"), ("sglang", "--max-running-requests")])
def test_without_batch_the_engine_keeps_its_own_concurrency_limit(engine, flag):
    """A plan at the default batch 1 is not a request to serve one sequence at a time: the cap is left out and the note
    says how many full-length requests the KV cache holds; an explicit --batch 1 caps it."""
    base = ["-m", NEXT, "--gpu", "h200", "-p", "bf16", "-n", "2", "--launch", engine, "--json"]
    doc = json.loads(run(*base).stdout)
    cmd = doc["launch"]["commands"][0]["argv"]
    assert flag not in cmd and "--max-mamba-cache-size" not in cmd
    assert doc["launch"]["max_sequences"] is None
    assert any(f"{flag} left at {engine}'s own limit" in n and f"{doc['kv_cache']['max_concurrency']:g} requests" in n
               for n in doc["launch"]["notes"])
    capped = json.loads(run(*base, "--batch", "1").stdout)["launch"]["commands"][0]["argv"]
    assert capped[capped.index(flag) + 1] == "1"


@pytest.mark.parametrize("args,message", [
    (["-m", L70, "--gpu", "h100", "-p", "bf16", "--nodes", "2", "--gpus-per-node", "8", "-n", "8"],
     "give --gpus 16"),
    (["-m", L70, "--gpu", "h100", "-p", "bf16", "--nodes", "2", "--gpus-per-node", "3"],
     "--gpus-per-node 1 | 2 | 4 | 8 split them"),
    (["-m", L70, "--gpu", "h100", "-p", "bf16", "--nodes", "2"], "needs --gpus-per-node"),
    (["-m", L70, "--gpu", "h100", "-p", "bf16", "--nodes", "2", "--gpus-per-node", "16"], "at most 8"),
    (["-m", L70, "--gpu", "h100", "-p", "gguf-q4_k_m", "--nodes", "2", "--gpus-per-node", "2"],
     "ggml-rpc-server --host BIND_IP --port 50052"),
    (["-m", L8, "--gpu", "h100", "-p", "bf16", "--engine", "transformers", "--nodes", "2", "--gpus-per-node", "1"],
     "--engine vllm | sglang"),
    (["-m", L8, "--gpu", "h100", "-p", "gptq-int4", "--launch", "llama.cpp"], "runs there on vllm"),
    (["-m", L8, "--gpu", "h100", "-p", "gguf-q4_k_m", "--launch", "vllm"], "runs there on llama.cpp"),
    (["-m", L70, "--gpu", "rtx-4090", "-p", "bf16", "--launch"], "would fit: 8 x"),
    (["-m", L8, "--gpu", "rtx-4090", "-p", "bf16", "--context", "128k", "--launch"], "(--context "),
    (["-m", L70, "--gpu", "h100", "-p", "bf16", "-n", "3", "--launch"],
     "nothing to launch: 64 attention heads do not split across 3 GPUs (tensor parallel); --gpus 1 | 2 | 4 | 8"),
    (["-m", L8, "--gpu", "h100,a100", "-p", "bf16", "--launch"], "needs one configuration"),
    (["-m", L8, "--gpu", "h100", "-p", "bf16", "--batch", "1,8", "--launch"], "needs one configuration"),
    (["-m", L8, "--gpu", "h100", "-p", "bf16", "--engine", "vllm", "--launch", "sglang"], "give one of them"),
    (["-m", L8, "--gpu", "h100", "-p", "bf16", "--launch", "trtllm"], "launch commands for vllm, sglang"),
    (["-m", L8, "--gpu", "h100", "-p", "bf16", "--internode", "infiniband-ndr"], "--nodes 2 or more"),
    (["-m", L70, "--gpu", "h100", "-p", "bf16", "--nodes", "2", "--gpus-per-node", "8", "--internode", "carrier"],
     "known: infiniband-ndr"),
    (["--gpu", "h100", "--launch"], "--launch needs --model"),
    (["-m", L8, "--gpu", "h100", "-p", "bf16", "--engine", "transformers", "--launch"],
     "qfit emits them for vllm, sglang, llama.cpp"),
    (["-m", L8, "--gpu", "h100", "-p", "bf16", "--nodes", "0", "--gpus-per-node", "8"], "--nodes"),
])
def test_cli_refusals_are_one_line_naming_what_works(args, message):
    r = run(*args)
    assert r.exit_code != 0
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.output


# ---- the engines' own parsers take what is emitted (slow; scratch virtualenvs, see scripts/check_engine_args.py) --

PARSED = [
    ("vllm", [L8, "--gpu", "h100", "-p", "fp8", "--kv-dtype", "fp8", "--batch", "16"]),
    ("vllm", [L70, "--gpu", "h100", "-p", "bf16", "-n", "4"]),
    ("vllm", [L70, "--gpu", "h100", "-p", "bf16", "--nodes", "2", "--gpus-per-node", "8"]),
    ("vllm", [MOE, "--gpu", "h100", "-p", "bf16", "-n", "2"]),
    ("sglang", [L8, "--gpu", "h100", "-p", "bf16", "--batch", "16"]),
    ("sglang", [L70, "--gpu", "h100", "-p", "bf16", "--nodes", "2", "--gpus-per-node", "8"]),
    ("sglang", [MOE, "--gpu", "h100", "-p", "bf16", "-n", "2"]),
    ("sglang", [NEXT, "--gpu", "h200", "-p", "bf16", "-n", "2"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("engine,args", PARSED, ids=[f"{e}-{i}" for i, (e, _) in enumerate(PARSED)])
def test_the_engines_parser_takes_each_emitted_command(engine, args):
    python = os.environ.get("QFIT_ENGINE_PYTHON_" + engine.upper())
    if not python:
        pytest.skip(f"QFIT_ENGINE_PYTHON_{engine.upper()} not set (scripts/check_engine_args.py says how to make one)")
    r = run("-m", *args, "--launch", engine, "--json")
    assert r.exit_code == 0, r.output
    for cmd in json.loads(r.stdout)["launch"]["commands"]:
        tail = cmd["argv"][2:]                     # after `vllm serve` / `sglang serve`
        out = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_engine_args.py"), engine, "--python",
                              python, "--", *tail], capture_output=True, text=True)
        assert out.returncode == 0, (cmd["shell"], out.stdout, out.stderr)
        parsed = json.loads(out.stdout)["args"]
        flags = dict(zip(tail, tail[1:]))
        size = "tensor_parallel_size" if engine == "vllm" else "tp_size"
        assert parsed[size] == int(flags.get("--tensor-parallel-size", flags.get("--tp-size", 1)))
        if "--node-rank" in flags:
            assert parsed["node_rank"] == int(flags["--node-rank"])
