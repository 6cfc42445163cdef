#!/usr/bin/env python
"""Start-up and planning time: `qfit plan ... --json` as a user runs it, one library plan, a full matrix (every
accelerator x every precision) for one model, and the whole catalog on one accelerator (`qfit plan --gpu A6000`, no
model); checks that planning imports neither torch/transformers nor, on the JSON path, rich.

Usage:  PYTHONPATH=. python scripts/bench_plan.py [--model llama-3-8b] [--repeat 7] [--out benchmarks/results]
Every measurement runs in a fresh interpreter (warm disk caches: one untimed run first), `--repeat` times; the median
and min/max are reported with the machine's load average, and written to OUT/plan_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CLI = r"""
import json, sys, time
t0 = time.perf_counter()
from qfit.cli import main
sys.argv = ARGV
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = sorted(m for m in ("torch", "transformers", "numpy", "matplotlib", "rich", "yaml") if m in sys.modules)
print(json.dumps({"cli_json_s": time.perf_counter() - t0, "cli_json_modules": heavy}), file=sys.stderr)
"""

LIBRARY = r"""
import json, sys, time
t0 = time.perf_counter()
from qfit import api, resolve
from qfit.plan import default_context, make_plan
from qfit.precision import list_precisions
from qfit.workload import Workload
t_import = time.perf_counter() - t0
t = time.perf_counter()
api.plan(MODEL, gpu="rtx-4090", precision="gguf-q4_k_m", engine="llama.cpp")
t_one = time.perf_counter() - t
t = time.perf_counter()
model, engines, accs = resolve.model(MODEL), resolve.engines(), resolve.accelerators(None)
recipes = [resolve.recipe(p) for p in list_precisions()]
w = Workload(default_context(model))
n = refused = 0
for acc in accs:
    for r in recipes:
        try:
            eng = engines.choose(None, r, acc)
        except Exception:
            refused += 1
            continue
        make_plan(model, acc, r, eng, w, suggest=False)
        n += 1
t_matrix = time.perf_counter() - t
heavy = sorted(m for m in ("torch", "transformers", "numpy", "matplotlib") if m in sys.modules)
print(json.dumps({"import_s": t_import, "one_plan_s": t_one, "matrix_s": t_matrix, "matrix_plans": n,
                  "matrix_refused": refused, "accelerators": len(accs), "precisions": len(recipes),
                  "heavy_imports": heavy}))
"""


def child(code: str, model: str, stream: str, argv: list[str] | None = None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    code = code.replace("ARGV", repr(["qfit", *(argv or [])])).replace("MODEL", repr(model))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=ROOT)
    return json.loads(getattr(out, stream).strip().splitlines()[-1])


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def run(model: str, repeat: int) -> dict:
    one = ["plan", "--model", model, "--gpu", "rtx-4090", "--precision", "gptq-int4", "--json"]
    catalog = ["plan", "--gpu", "A6000", "--json"]
    child(CLI, model, "stderr", one)          # warm the JSON caches of the profiles (a first run after a change)
    cli = [child(CLI, model, "stderr", one) for _ in range(repeat)]
    survey = [child(CLI, model, "stderr", catalog) for _ in range(repeat)]
    lib = [child(LIBRARY, model, "stdout") for _ in range(repeat)]
    return {
        "cli_json_s": spread([r["cli_json_s"] for r in cli]), "cli_json_modules": cli[-1]["cli_json_modules"],
        "catalog_on_a6000_json_s": spread([r["cli_json_s"] for r in survey]),
        **{k: spread([r[k] for r in lib]) for k in ("import_s", "one_plan_s", "matrix_s")},
        **{k: lib[-1][k] for k in ("matrix_plans", "matrix_refused", "accelerators", "precisions", "heavy_imports")},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3-8b")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", default=None, help="folder for plan_bench.json (default: print only)")
    args = ap.parse_args(argv)
    r = run(args.model, args.repeat)
    meta = {"model": args.model, "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"qfit plan --json {r['cli_json_s']['median'] * 1e3:.0f} ms (min {r['cli_json_s']['min'] * 1e3:.0f}, max "
          f"{r['cli_json_s']['max'] * 1e3:.0f}); library import {r['import_s']['median'] * 1e3:.0f} ms, one plan "
          f"{r['one_plan_s']['median'] * 1e3:.0f} ms, matrix {r['matrix_plans']} plans ({r['accelerators']} "
          f"accelerators x {r['precisions']} precisions, {r['matrix_refused']} refused) "
          f"{r['matrix_s']['median']:.2f} s; whole catalog on an A6000 (qfit plan --gpu A6000 --json) "
          f"{r['catalog_on_a6000_json_s']['median'] * 1e3:.0f} ms (max {r['catalog_on_a6000_json_s']['max'] * 1e3:.0f}); "
          f"modules on the JSON path: {r['cli_json_modules'] or 'none'}; "
          f"load average {meta['load_average'][0]:.2f}")
    if args.out:
        from qfit.atomic import write_json

        print(f"wrote {write_json(Path(args.out) / 'plan_bench.json', {'meta': meta, 'results': r}, indent=1)}")
    bad = set(r["heavy_imports"]) & {"torch", "transformers"} or {"rich", "torch"} & set(r["cli_json_modules"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
