#!/usr/bin/env python
"""Wall time of one `qfit plan` and of a full matrix (every accelerator x every precision) for one model, and a check
that planning never imports torch or transformers.

Usage:  PYTHONPATH=. python scripts/bench_plan.py [--model llama-3-8b] [--json]
Each measurement runs in a fresh interpreter (`python -X importtime` is not needed: sys.modules is inspected).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import sys, time, json
t0 = time.perf_counter()
from qfit.plan import make_plan
from qfit.hardware import list_accelerators
from qfit.precision import list_precisions
t_import = time.perf_counter() - t0
t = time.perf_counter()
make_plan(MODEL, gpu="rtx-4090", precision="gguf-q4_k_m", engine="llama.cpp")
t_one = time.perf_counter() - t
accs = list_accelerators()
precs = [p for p in list_precisions()]
t = time.perf_counter(); n = 0; failed = 0
for acc in accs:
    for p in precs:
        try:
            make_plan(MODEL, gpu=acc, precision=p, suggest=False)
            n += 1
        except Exception:
            failed += 1
t_matrix = time.perf_counter() - t
heavy = sorted(m for m in ("torch", "transformers", "numpy", "matplotlib") if m in sys.modules)
print(json.dumps({"import_s": t_import, "one_plan_s": t_one, "matrix_s": t_matrix, "matrix_plans": n,
                  "matrix_skipped": failed, "accelerators": len(accs), "precisions": len(precs),
                  "heavy_imports": heavy}))
"""


def run(model: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD.replace("MODEL", repr(model))], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3-8b")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    r = run(args.model)
    if args.json:
        print(json.dumps(r, indent=1))
    else:
        print(f"import {r['import_s'] * 1e3:.0f} ms; one plan {r['one_plan_s'] * 1e3:.0f} ms; matrix "
              f"{r['matrix_plans']} plans ({r['accelerators']} accelerators x {r['precisions']} precisions, "
              f"{r['matrix_skipped']} refused) in {r['matrix_s']:.2f} s; heavy imports: {r['heavy_imports'] or 'none'}")
    return 1 if set(r["heavy_imports"]) & {"torch", "transformers"} else 0


if __name__ == "__main__":
    sys.exit(main())
