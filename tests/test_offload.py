"""Host memory as a second tier (`qfit plan --ram`): the llama.cpp split (--n-cpu-moe / -ngl), its memory, its speed
formula, and every refusal, on hand-computed cases."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from qfit.api import plan
from qfit.cli import cli
from qfit.errors import QfitError
from qfit.memory import GIB
from qfit.offload import facts, host_memory, parse_bandwidth
from qfit.perf.workload import expert_coverage

Q35 = "qwen3.5-35b-a3b"
# Qwen3.5-35B-A3B: 256 routed experts x (gate, up, down) of 512 x 2048 per layer; Q8_0 stores 34 bytes per 32 values.
Q35_EXPERTS_PER_LAYER_Q8 = 256 * 3 * 512 * 2048 * 34 // 32          # 855,638,016 bytes
RTX4090_GBPS = 1008.0


def run(*args):
    return CliRunner().invoke(cli, list(args))


def q35(ram="64GB", bw="80GB/s", **kw):
    return plan(Q35, gpu="RTX 4090", precision="gguf-q8_0", ram=ram, ram_bandwidth=bw, **kw)


def test_q35_q8_0_on_a_24gb_card_puts_15_expert_layers_on_cpu():
    assert Q35_EXPERTS_PER_LAYER_Q8 == 855_638_016
    whole = plan(Q35, gpu="RTX 4090", precision="gguf-q8_0")
    assert not whole.fits and whole.offload is None          # without --ram: the old verdict
    need, budget = whole.memory.per_gpu, whole.budget_per_gpu  # 35.40 GiB against 24.0 GiB (GGUF: no vision tower)
    # smallest N: 14 layers of experts (11.16 GiB) are too few for the 11.40 GiB over budget, 15 (11.95 GiB) enough
    assert need - 14 * Q35_EXPERTS_PER_LAYER_Q8 > budget >= need - 15 * Q35_EXPERTS_PER_LAYER_Q8
    p = q35()
    off = p.offload
    assert p.fits and off.kind == "moe_experts" and off.cpu_expert_layers == 15 and off.gpu_layers == 40
    assert isinstance(off.cpu_expert_layers, int) and off.flag == "--n-cpu-moe 15"
    assert off.host_weight_bytes == 15 * Q35_EXPERTS_PER_LAYER_Q8 and off.host_kv_bytes == 0
    assert off.host_bytes / GIB == pytest.approx(11.953, abs=1e-3)
    assert p.memory.per_gpu == pytest.approx(need - 15 * Q35_EXPERTS_PER_LAYER_Q8)
    assert p.reason.startswith("fits with 15 expert layers on CPU (--n-cpu-moe 15), ~") and "tok/s decode" in p.reason


def test_moe_decode_speed_is_gpu_time_plus_host_experts_read_over_host_bandwidth():
    whole = plan(Q35, gpu="RTX 4090", precision="gguf-q8_0")
    p = q35()
    b0, b = whole.performance.breakdown, p.performance.breakdown
    host_bytes = 15 * Q35_EXPERTS_PER_LAYER_Q8
    read = host_bytes * 8 / 256                                 # batch 1: top-8 of 256 experts per layer
    assert read == 401_080_320 and b["offload_host_read_bytes"] == read
    host_s = read / 80e9                                        # 5.01 ms at 80 GB/s
    assert b["offload_host_s"] == pytest.approx(host_s)
    eff_bw = 0.8999 * 0.9334                                    # llama.cpp cuda x gguf-q8_0 (profile figures)
    gpu_mem_s = b0["decode_memory_s"] - read / (RTX4090_GBPS * 1e9 * eff_bw)
    tpot = max(gpu_mem_s, b0["decode_compute_s"]) + b0["decode_overhead_s"] + host_s
    assert p.performance.tpot_s == pytest.approx(tpot, rel=1e-3)
    assert p.performance.decode_tokens_per_s == pytest.approx(1 / tpot, rel=1e-3)
    # prefill: 8192 prompt tokens in 16 micro-batches of 512, each copying the host experts over PCIe 4.0 x16
    copy_s = 16 * host_bytes / 31.504e9
    assert b["offload_prefill_copy_s"] == pytest.approx(copy_s)
    assert p.performance.ttft_s == pytest.approx(whole.performance.ttft_s + copy_s)
    assert p.performance.error_band["decode_pct"] > whole.performance.error_band["decode_pct"]


@pytest.mark.parametrize("batch", [8, 31])
def test_small_decode_batches_read_the_distinct_experts_on_the_cpu(batch):
    p = q35(batch=batch)
    cover = 1 - (1 - 8 / 256) ** batch
    assert cover == pytest.approx(expert_coverage(256, 8, batch))
    assert p.performance.breakdown["offload_host_s"] == pytest.approx(p.offload.host_weight_bytes * cover / 80e9)


def test_decode_batches_past_the_op_offload_threshold_copy_the_experts_over_pcie():
    assert facts()["engines"]["llama.cpp"]["op_offload_min_batch"] == 32
    p = q35(batch=32, context=2048)
    host_s = p.offload.host_weight_bytes / 31.504e9
    assert p.performance.breakdown["offload_host_s"] == pytest.approx(host_s)


def test_dense_70b_partial_offload_keeps_45_of_80_layers_on_the_gpu():
    whole = plan("llama-3.1-70b", gpu="RTX 4090", precision="gguf-q4_k_m")
    role = whole.weights.by_role
    outer = role["embed"] + role["lm_head"]
    layer = (whole.weights.total - outer) / 80
    kv_layer = whole.memory.kv_cache / 80                      # 2.5 GiB of fp16 KV at 8k over 80 layers
    assert kv_layer == 32 * 2**20

    def gpu(n):   # what the card holds with the last n layers on it
        return whole.memory.per_gpu - (outer + (80 - n) * (layer + kv_layer))

    assert gpu(45) <= whole.budget_per_gpu < gpu(46)
    p = plan("llama-3.1-70b", gpu="RTX 4090", precision="gguf-q4_k_m", ram="64GB", ram_bandwidth="80GB/s")
    off = p.offload
    assert p.fits and off.kind == "layers" and off.gpu_layers == 45 and off.cpu_expert_layers == 0
    assert off.flag == "-ngl 45" and p.reason.startswith("fits with 45 of 80 layers on GPU (-ngl 45), ~")
    assert off.host_weight_bytes == pytest.approx(outer + 35 * layer)
    assert off.host_kv_bytes == pytest.approx(35 * kv_layer)
    # decode: the CPU reads its 35 layers, the output matrix (not the embedding table: a row lookup) and their KV
    read = 35 * layer + role["lm_head"] + 35 * kv_layer
    assert p.performance.breakdown["offload_host_s"] == pytest.approx(read / 80e9)
    # the GPU holds the KV of its 45 layers only: the planned context fits, and the pool counts 45 layers per token
    assert p.max_context >= p.context and p.max_batch >= 1
    assert p.kv_pool.tokens == pytest.approx(p.kv_pool.bytes_per_gpu / (45 * kv_layer / 8192), rel=0.01)


def test_ram_too_small_says_how_much_ram_the_split_needs():
    p = q35(ram="8GB")
    assert not p.fits and p.offload.cpu_expert_layers == 15
    assert p.reason == "does not fit: the experts of 15 layers on CPU need 12.0 GiB RAM, --ram gives 7.5 GiB"
    assert p.suggestion


def test_gpu_too_small_even_with_every_expert_on_cpu():
    p = plan("qwen3.5-397b-a17b", gpu="RTX 3070", precision="gguf-q8_0", ram="1TB")   # 8 GB card, 11.3 GiB needed
    assert not p.fits and p.reason.startswith("does not fit even with all 60 expert layers on CPU: each GPU needs 11.3 GiB")


def test_engines_without_a_layer_split_say_so_and_plan_as_before():
    p = plan(Q35, gpu="RTX 4090", precision="fp8", ram="64GB")
    assert not p.fits and p.offload is None
    assert any("vLLM has no per-layer expert offload" in a for a in p.assumptions)


def test_a_model_that_fits_needs_no_offload():
    p = plan("qwen3.5-35b-a3b", gpu="H100", precision="gguf-q8_0", ram="64GB")
    assert p.fits and p.offload is None


@pytest.mark.parametrize("text,gbps", [("80GB/s", 80.0), ("80 GB/s", 80.0), ("80GBps", 80.0), ("80", 80.0),
                                       ("1.2TB/s", 1200.0), ("500MB/s", 0.5)])
def test_parse_bandwidth(text, gbps):
    assert parse_bandwidth(text) == pytest.approx(gbps)


@pytest.mark.parametrize("text", ["fast", "0GB/s", "-5GB/s", "80GiB", "1e9", "200000GB/s"])
def test_bad_bandwidth_is_refused(text):
    with pytest.raises(QfitError, match="--ram-bandwidth"):
        parse_bandwidth(text)


def test_host_bandwidth_sources():
    given = host_memory("64GB", "80GB/s")
    assert given.bandwidth_gbps == 80.0 and given.bytes == 64e9 and "--ram-bandwidth" in given.source
    epyc = host_memory("64GB", cpu="AMD EPYC 9654")     # Genoa: 12 ch DDR5-4800 = 460.8 GB/s theoretical
    assert epyc.bandwidth_gbps == pytest.approx(460.8 * 0.8) and "Genoa" in epyc.source
    default = host_memory("64GB")                        # 2 ch x 8 B x 5600 MT/s = 89.6 GB/s, assumed
    assert default.bandwidth_gbps == pytest.approx(2 * 8 * 5600e6 / 1e9 * 0.8) and "ASSUMED" in default.source
    with pytest.raises(QfitError, match="no known platform"):
        host_memory("64GB", cpu="Pentium 4")


@pytest.mark.parametrize("args,message", [
    (["--ram", "lots"], "cannot read size 'lots'"),
    (["--ram", "64GB", "--ram-bandwidth", "fast"], "is not a bandwidth"),
    (["--ram-bandwidth", "80GB/s"], "give --ram too"),
    (["--cpu", "EPYC 9654"], "give --ram too"),
    (["--ram", "64GB", "--cpu", "Pentium 4"], "no known platform"),
])
def test_cli_refuses_bad_host_options_in_one_line(args, message):
    r = run("plan", "-m", Q35, "--gpu", "RTX 4090", "-p", "gguf-q8_0", *args)
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_cli_ram_needs_one_configuration():
    r = run("plan", "-m", Q35, "--gpu", "RTX 4090,A6000", "-p", "gguf-q8_0", "--ram", "64GB")
    assert r.exit_code != 0 and "--ram and --spec plan one configuration" in r.output
    r = run("plan", "--gpu", "RTX 4090", "--ram", "64GB")
    assert r.exit_code != 0 and "--ram needs --model" in r.output


def test_cli_json_carries_the_split():
    r = run("plan", "-m", Q35, "--gpu", "RTX 4090", "-p", "gguf-q8_0", "--ram", "64GB", "--ram-bandwidth", "80GB/s",
            "--json")
    assert r.exit_code == 0, r.output
    off = json.loads(r.stdout)["offload"]
    assert off["cpu_expert_layers"] == 15 and off["flag"] == "--n-cpu-moe 15" and off["bandwidth_gbps"] == 80.0
    assert math.isclose(off["host_gib"], 15 * Q35_EXPERTS_PER_LAYER_Q8 / GIB)
    r = run("plan", "-m", Q35, "--gpu", "RTX 4090", "-p", "gguf-q8_0", "--ram", "64GB")
    assert r.exit_code == 0 and "fits with 15 expert layers on CPU" in r.output and "ASSUMED dual-channel" in r.output


def test_cpu_host_uses_this_machines_recorded_measurement(monkeypatch):
    from qfit import host

    monkeypatch.setattr(host, "_read", lambda path: "model name\t: AMD EPYC 9654 96-Core Processor\n")
    monkeypatch.setattr(host, "cached_bandwidth", lambda model: (123.0, "measured on this machine (stable)"))
    measured = host_memory("64GB", cpu="host")
    assert measured.bandwidth_gbps == 123.0 and "this machine's AMD EPYC 9654" in measured.source
    monkeypatch.setattr(host, "cached_bandwidth", lambda model: None)   # none recorded: its platform's figure
    tabled = host_memory("64GB", cpu="host")
    assert tabled.bandwidth_gbps == pytest.approx(460.8 * 0.8) and "Genoa" in tabled.source
