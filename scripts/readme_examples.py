#!/usr/bin/env python3
"""Re-run the `$ qfit plan ...` / `$ qfit size ...` examples in README.md and rewrite the prose figures that quote them,
so every number the README gives is one the code prints today.

Examples: a fenced block starting with `$ qfit plan|size ...` gets that command's output. Prose: text between
`<!-- prose:NAME -->` and `<!-- /prose -->` is rebuilt by PROSE[NAME] below from the `--json` of the commands it names,
so a sentence cannot drift from the table above it.

Usage: PYTHONPATH=. python scripts/readme_examples.py [--check]   (--check: exit 1, naming the blocks, if any would
change; tests/test_readme.py runs it)
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```\n(\$ qfit (?:plan|size) .*?)```", re.S)
PROSE_BLOCK = re.compile(r"<!-- prose:([\w-]+) -->(.*?)<!-- /prose -->", re.S)
TIMING = re.compile(r"in [\d.]+ s wall / [\d.]+ s CPU")     # qfit size reports its own search time: not compared


def _env() -> dict:
    return {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(Path.home())}


def run(command: str) -> str:
    args = shlex.split(command.replace("\\\n", " ").removeprefix("$ "))
    out = subprocess.run([sys.executable, "-m", "qfit", *args[1:]], capture_output=True, text=True, cwd=ROOT,
                         env=_env(), check=False)
    if out.returncode != 0:
        raise SystemExit(f"{command!r} failed: {out.stderr.strip()}")
    return "\n".join(line.rstrip() for line in out.stdout.splitlines())   # rich pads wrapped lines with a space


@cache
def as_json(command: str):
    return json.loads(run(command + " --json"))


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f}"


def _plan_72b() -> str:
    a6000, h100 = as_json("qfit plan --model Qwen/Qwen2.5-72B-Instruct --gpu A6000,H100 --precision bf16")
    d = as_json("qfit plan --model Qwen/Qwen2.5-72B-Instruct --gpu A6000 --precision gptq-int4")
    return (f"{a6000['model']['params_total'] / 1e9:.1f}B parameters in BF16 are {_gb(a6000['weights']['total'])} GB "
            f"of weights (\"≈144 GB\" for a 72B model): {a6000['min_gpus']} x 48 GB cards, or {h100['min_gpus']} x 80 GB "
            "ones. "f"GPTQ 4-bit ({_gb(d['weights']['total'])} GB with scales, zeros and g_idx; embeddings and lm_head stay "
            f"16-bit) fits one A6000 with {d['max_context']:,} tokens of context under vLLM's "
            f"{100 * d['memory']['budget_per_gpu_gib'] / d['accelerator']['usable_memory_gib']:.0f} % reservation.")


def _curve() -> str:
    plans = as_json("qfit plan --model llama-3-8b --gpu 4090 --precision gptq-int4 --batch 1,32,128,512 --context 512")
    flip = next((p["batch"] for p in plans if p["performance"]["bound"] == "compute"), None)
    where = (f"(here from batch {flip}: past it, fewer weight bytes no longer speed a decode step)" if flip
             else "(none of these batches)")
    return f"A batch list prints the curve and says from which batch decode turns compute-bound {where}:"


def _mac() -> str:
    d = as_json('qfit plan --model llama-3-70b --gpu "M3 Max 96GB" --precision q4_k_m')
    return (f"A Q4_K_M of a 70B model comes out at {_gb(d['weights']['total'])} GB (llama.cpp's per-tensor mix of "
            "Q4_K and Q6_K, from the model's shapes).")


def _seeds() -> str:
    moe = as_json("qfit plan --model qwen2-57b-a14b --gpu A6000 --precision gptq-int4 --context 4k")
    mac = as_json('qfit plan --model qwen2.5-72b-instruct --gpu "M3 Max 96GB" --precision q4_k_m --context 4k')
    mac40 = as_json('qfit plan --model qwen2.5-72b-instruct --gpu "M3 Max 128GB" --precision q4_k_m --context 4k')
    dec, band = moe["performance"]["decode_tokens_per_s"], moe["performance"]["error_band"]["decode_pct"]
    m, mb = mac["performance"]["decode_tokens_per_s"], mac["performance"]["error_band"]["decode_pct"]
    need = mac["weights"]["total"] * 12 / 1e9
    return (f"*72B/14B-active MoE, GPTQ-4bit, one A6000, vLLM (≈45 tok/s reported).* The catalog's nearest real "
            f"model with 14B active is Qwen2-57B-A14B: `qfit plan --model qwen2-57b-a14b --gpu A6000 --precision "
            f"gptq-int4 --context 4k` gives {moe['memory']['per_gpu_gib']:.1f} GiB (fits, "
            f"{moe['memory']['headroom_per_gpu_gib']:.0f} GiB headroom) and **{dec:.0f} tok/s ±{band:.0f} %** at "
            f"batch 1, so the reported 45 tok/s sits {'inside' if dec * (1 - band / 100) <= 45 else 'below'} its "
            f"band ({dec * (1 - band / 100):.0f}-{dec * (1 + band / 100):.0f}); the band is wide because vLLM is "
            "calibrated on one GPU and one dense 7B model, and the MoE kernels are the uncalibrated part.\n"
            f"- *Q4_K_M 72B, M3 Max 96 GB, llama.cpp (≈12 tok/s reported).* `qfit plan --model qwen2.5-72b-instruct "
            f"--gpu \"M3 Max 96GB\" --precision q4_k_m --context 4k` gives **{m:.1f} tok/s ±{mb:.0f} %** (the 96 GB M3 "
            f"Max is the 30-core, {mac['accelerator']['bandwidth_gbps']:.0f} GB/s part; the 40-core 128 GB part gives "
            f"{mac40['performance']['decode_tokens_per_s']:.1f}). A dense 72B at Q4_K_M reads "
            f"{_gb(mac['weights']['total'])} GB per token; 12 tok/s would need {need:.0f} GB/s, more than either M3 "
            "Max has, so the reported figure cannot be plain decoding of a dense 72B (a smaller quant, speculative "
            "decoding or a MoE are the likely explanations).")


QWEN35 = ("qwen3.5-9b", "qwen3.5-27b", "qwen3.5-35b-a3b", "qwen3.5-122b-a10b", "qwen3.5-397b-a17b")


def _qwen35_4090() -> str:
    """A table of the Qwen3.5 family on a 24 GB card with 64 GB of host memory (llama.cpp's expert/layer offload)."""
    rows = ["| model | verdict | GPU GiB | host GiB | decode tok/s | prefill tok/s |", "|---|---|---:|---:|---:|---:|"]
    for m in QWEN35:
        d = as_json(f'qfit plan --model {m} --gpu "RTX 4090" --precision gguf-q4_k_m --ram 64GB')
        off, perf = d["offload"], d["performance"]
        host = f"{off['host_gib']:.1f}" if off else "0"
        if d["fits"]:
            band = perf["error_band"]
            speed = (f"{perf['decode_tokens_per_s']:.0f} ±{band['decode_pct']:.0f} %",
                     f"{perf['prefill_tokens_per_s']:,.0f} ±{band['prefill_pct']:.0f} %")
        else:
            speed = ("-", "-")
        verdict = d["reason"].split(", ~")[0] if off else ("fits on the GPU" if d["fits"] else d["reason"])
        rows.append(f"| {m} | {verdict} | {d['memory']['per_gpu_gib']:.1f} | {host} | {speed[0]} | {speed[1]} |")
    return "\n" + "\n".join(rows) + "\n"


SIZE_EXAMPLE = ('qfit size --model llama-3.1-70b --context 8k --concurrency 32 --rps 1 --input-len 2k --output-len 512 '
                '--min-tokens-per-s 20 --max-ttft 2s --gpus-allowed A100,H100,H200,L40S,MI300X,"RTX 4090",L4 --top 3')


def _size_reading() -> str:
    d = as_json(SIZE_EXAMPLE)
    c, t = d["chosen"], d["by_tco"][0]
    cost = [f for f in d["cheaper_failed"] if f["constraint"] == "cost"]
    others = [f for f in d["cheaper_failed"] if f["constraint"] != "cost"]
    text = (f"Reading it: {c['gpus']} x {c['accelerator']} at {c['precision']} ({c['engine']}) serves the load at "
            f"${c['cost']['rent_usd_per_hour']:.2f}/h, {c['memory_per_gpu_gib']:.1f} GiB per GPU, "
            f"{c['decode_tokens_per_s_per_user']:.0f} tok/s per user.")
    if cost:
        text += (f" {len(cost)} accelerator(s) with a cheaper GPU-hour were feasible too but need more GPUs ("
                 + "; ".join(f["detail"].removeprefix("feasible from ") for f in cost) + ").")
    if others:
        text += " " + "; ".join(f"{f['accelerator']} failed on {f['constraint']}: {f['detail']}" for f in others) + "."
    return text + (f" To buy instead of rent, {t['gpus']} x {t['accelerator']} ({t['replicas']}x{t['gpus_per_replica']},"
                   f" {t['precision']}) come out cheapest over 36 months (${t['cost']['tco_usd_per_hour']:.2f} per hour "
                   "of ownership, list price + power at TDP).")


def _validation_loo() -> str:
    """The leave-one-model-out table of scripts/validate_planner.py (its own process: it imports the scripts' helpers)."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "validate_planner.py"), "--loo"], capture_output=True,
                         text=True, cwd=ROOT, env=_env(), check=False)
    if out.returncode != 0:
        raise SystemExit(f"validate_planner.py --loo failed: {out.stderr.strip()}")
    return "\n\n" + out.stdout.strip() + "\n\n"


def _size_binding() -> str:
    d = as_json("qfit size --model llama-3.1-70b --context 8k --concurrency 16 --min-tokens-per-s 25 --precision bf16 "
                "--gpus-allowed H200,A40,L4,\"RTX 3090\" --max-gpus-per-node 2")
    first = {}
    for f in d["cheaper_failed"]:
        first.setdefault(f["constraint"], f)      # one line per kind of constraint
    lines = [first[k] for k in ("memory", "speed", "ttft") if k in first]
    quoted = " and ".join(f"`{f['accelerator']} (${f['usd_per_gpu_hour']:.2f}/GPU-h) [{f['constraint']}]: "
                          f"{f['detail']}`" for f in lines)
    return ("Where a cheaper accelerator fails outright, the line names the binding constraint of its closest attempt "
            "and by how much; with the same model at BF16, 16 users at 25 tok/s each and nodes of two GPUs "
            f"(`--max-gpus-per-node 2`), for example: {quoted}.")


NODES_EXAMPLE = ("qfit size --model llama-3.1-405b --precision bf16 --context 8k --concurrency 16 --min-tokens-per-s 10 "
                 "--gpus-allowed H100,H200,A100,L40S --top 4")


def _size_nodes() -> str:
    d = as_json(NODES_EXAMPLE)
    c = d["chosen"]
    one = next(o for o in d["by_rent"] if o["nodes_per_replica"] == 1)
    band = c["performance"]["error_band"]["decode_pct"]
    reps = "one replica" if c["replicas"] == 1 else f"{c['replicas']} replicas"
    text = (f"Reading it: {c['gpus']} x {c['accelerator']} as {reps} of {c['layout']} rents for "
            f"${c['cost']['rent_usd_per_hour']:.2f}/h at {c['memory_per_gpu_gib']:.1f} GiB per GPU and "
            f"{c['decode_tokens_per_s_per_user']:.1f} tok/s per user ±{band:.0f} % (the band widened for the "
            f"uncalibrated hops); the cheapest single-node option, {one['gpus']} x {one['accelerator']} "
            f"({one['precision']}), costs ${one['cost']['rent_usd_per_hour']:.2f}/h and is faster per user "
            f"({one['decode_tokens_per_s_per_user']:.1f} tok/s).")
    if c["nodes_per_replica"] > 1:
        text += (f" `qfit plan --model llama-3.1-405b --precision bf16 --gpu {c['key']} --nodes "
                 f"{c['nodes_per_replica']} --gpus-per-node {c['gpus_per_node']} --batch {c['batch_per_replica']} "
                 "--launch vllm` gives the same memory and speed, and the commands to start it.")
    return text


def _would_fit() -> str:
    d = as_json("qfit plan --model Qwen/Qwen2.5-72B-Instruct --gpu h100 --precision bf16")
    return (f"When it does not fit, the verdict says what would (`qfit plan --model Qwen/Qwen2.5-72B-Instruct --gpu h100 "
            f"--precision bf16` → `{d['suggestion']}`).")


PROSE = {"qwen35-4090": _qwen35_4090, "plan-72b": _plan_72b, "would-fit": _would_fit, "curve": _curve,
         "mac-q4km": _mac, "seeds": _seeds, "size-reading": _size_reading, "size-binding": _size_binding,
         "size-nodes": _size_nodes, "validation-loo": _validation_loo}


def render(text: str) -> tuple[str, list[str]]:
    """The README with every example and prose block regenerated, and the names of those that changed."""
    changed = []

    def example(m: re.Match) -> str:
        lines = m.group(1).split("\n")
        n = 1
        while lines[n - 1].endswith("\\"):
            n += 1
        command = "\n".join(lines[:n])
        new = f"```\n{command}\n{run(command).rstrip()}\n```"
        if TIMING.sub("", new) != TIMING.sub("", m.group(0)):
            changed.append(command.splitlines()[0])
        return new

    def prose(m: re.Match) -> str:
        new = f"<!-- prose:{m.group(1)} -->{PROSE[m.group(1)]()}<!-- /prose -->"
        if new != m.group(0):
            changed.append(f"prose:{m.group(1)}")
        return new

    return PROSE_BLOCK.sub(prose, BLOCK.sub(example, text)), changed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    missing = set(PROSE) - {name for name, _ in PROSE_BLOCK.findall(text)}
    if missing:
        raise SystemExit(f"README.md has no prose block for {', '.join(sorted(missing))}")
    new, changed = render(text)
    if args.check:
        for name in changed:
            print(f"out of date: {name}")
        return int(bool(changed))
    readme.write_text(new, encoding="utf-8")
    print(f"{len(BLOCK.findall(text))} examples and {len(PROSE)} prose blocks; changed: {', '.join(changed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
