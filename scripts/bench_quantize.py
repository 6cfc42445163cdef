#!/usr/bin/env python
"""Benchmark `qfit quantize` against calling GPTQModel directly on the same model, recipe and calibration tokens.

Each side runs in a fresh subprocess (imports, model load, quantize, save: the whole job a user waits for); wall time
is measured around the process and peak RSS comes from the kernel's rusage of that child (os.wait4). Ratios are
qfit / direct: >1 means qfit costs more. Results go to benchmarks/results/quantize_bench.json and .md.

    PYTHONPATH=. python scripts/bench_quantize.py [--model PATH] [--nsamples 32] [--seqlen 256] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"

# The direct GPTQModel call: same QuantizeConfig as qfit's engine, same calibration windows (built by the same
# function so only the surrounding tool differs), same save. Written out so readers can see what "direct" means.
DIRECT = r"""
import sys
from pathlib import Path
from gptqmodel import GPTQModel, QuantizeConfig
from transformers import AutoTokenizer
from qfit.quantize.calib import build_calibration, calibration_text
model_dir, out, bits, group, nsamples, seqlen = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
tok = AutoTokenizer.from_pretrained(model_dir)
_, windows = build_calibration(tok, calibration_text("xsum"), nsamples, seqlen)
qc = QuantizeConfig(bits=bits, group_size=group, desc_act=False, sym=True, damp_percent=0.01,
                    act_group_aware=False, offload_to_disk=False)
model = GPTQModel.load(model_dir, qc, device="cpu")
model.quantize([{"input_ids": w, "attention_mask": [1] * len(w)} for w in windows], batch_size=1)
model.save(out)
"""


def run_child(cmd: list[str], env: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}):\n{stderr.decode(errors='replace')[-3000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_bytes": usage.ru_maxrss * 1024, "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="float HF folder or .gguf (default: the offline SmolLM2-135M)")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from qfit.loading import resolve_model_dir, smollm2_gguf_path
    from qfit.paths import cache_dir
    from qfit.quantize.engine import prepare_env
    from qfit.quantize.report import library_versions

    prepare_env(cache_dir())
    model_dir = resolve_model_dir(args.model or smollm2_gguf_path())
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    recipe = [str(args.bits), str(args.group_size), str(args.nsamples), str(args.seqlen)]
    runs: dict[str, list[dict]] = {"qfit": [], "direct": []}
    work = Path(tempfile.mkdtemp(prefix="qfit-bench-"))
    try:
        for i in range(args.repeats):
            for side in ("direct", "qfit"):  # direct first: it also warms the page cache and JIT caches for both
                out = work / f"{side}-{i}"
                if side == "direct":
                    cmd = [sys.executable, "-c", DIRECT, str(model_dir), str(out), *recipe]
                else:
                    cmd = [sys.executable, "-m", "qfit", "quantize", str(model_dir), str(out), "--bits", recipe[0],
                           "--group-size", recipe[1], "--nsamples", recipe[2], "--seqlen", recipe[3],
                           "--calib", "xsum", "--device", "cpu", "--json"]
                runs[side].append(run_child(cmd, env))
                print(side, i, runs[side][-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results(args, model_dir, runs, library_versions())


def _best(rows: list[dict], key: str) -> float:
    return min(r[key] for r in rows)


def write_results(args, model_dir, runs, libs) -> None:
    ratio = {k: round(_best(runs["qfit"], k) / _best(runs["direct"], k), 3)
             for k in ("wall_s", "cpu_s", "peak_rss_bytes")}
    result = {
        "what": "qfit quantize vs GPTQModel called directly; same model, recipe, calibration tokens; fresh process each",
        "model": str(model_dir), "recipe": {"bits": args.bits, "group_size": args.group_size, "desc_act": False,
                                            "sym": True, "nsamples": args.nsamples, "seqlen": args.seqlen},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "device": "cpu"},
        "libraries": libs, "runs": runs, "ratio_qfit_over_direct": ratio,
        "note": "best of repeats; wall time includes imports, model load, calibration, quantize and save; on a shared "
                "machine wall time is noisy, CPU time (user+sys of the child) is the steadier cost measure",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quantize_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    q, d = runs["qfit"], runs["direct"]
    md = [
        "# qfit quantize vs GPTQModel direct", "",
        f"Model {Path(str(model_dir)).name}, {args.bits}-bit g{args.group_size}, {args.nsamples} x {args.seqlen} "
        f"calibration tokens (XSum calib split), CPU ({os.cpu_count()} cores), best of {len(q)}.", "",
        "| | wall time (s) | CPU time (s) | peak RSS (MB) |", "|---|---:|---:|---:|",
        f"| GPTQModel direct | {_best(d, 'wall_s'):.1f} | {_best(d, 'cpu_s'):.1f} | {_best(d, 'peak_rss_bytes') / 1e6:,.0f} |",
        f"| qfit quantize | {_best(q, 'wall_s'):.1f} | {_best(q, 'cpu_s'):.1f} | {_best(q, 'peak_rss_bytes') / 1e6:,.0f} |",
        f"| ratio qfit / direct | {ratio['wall_s']:.2f} | {ratio['cpu_s']:.2f} | {ratio['peak_rss_bytes']:.2f} |", "",
        "Wall time includes imports, model load, calibration, quantize and save. The machine was shared with other",
        "jobs (load average 10+ on 2 cores), so wall time is noisy; CPU time is the steadier comparison.", "",
    ]
    (RESULTS / "quantize_bench.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
