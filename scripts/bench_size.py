#!/usr/bin/env python
"""Time the full `qfit size` search: every catalog accelerator x GPU counts 1-64 (TP 1-8 x replicas) x the default
precision ladder x engines, for a few models and workloads. Reports wall time AND CPU time (time.process_time): the
machine is shared, so wall time includes waiting for a core; CPU time is what the search itself costs.

Usage:  PYTHONPATH=. python scripts/bench_size.py [--repeat 5] [--out benchmarks/results] [--plot]
Writes benchmarks/results/size_bench.json (and size_bench.png with --plot). Each scenario: one cold run in a fresh
interpreter (imports + model load + search, as the CLI pays it) and `--repeat` warm runs in one process.
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

SCENARIOS = [
    ("8B, 64 users @ 8k, >= 20 tok/s", "llama-3.1-8b", dict(context=8192, batch=64, min_tokens_per_s=20)),
    ("8B, 4 req/s 2k in / 500 out, TTFT <= 1 s", "llama-3.1-8b",
     dict(context=8192, batch=64, rps=4.0, input_tokens=2048, output_tokens=512, max_ttft_s=1.0)),
    ("70B, 32 users @ 8k, >= 20 tok/s", "llama-3.1-70b", dict(context=8192, batch=32, min_tokens_per_s=20)),
    ("Qwen3-30B-A3B MoE, 128 users @ 32k", "qwen3-30b-a3b", dict(context=32768, batch=128)),
    ("Qwen3-235B-A22B MoE, 16 users @ 8k, >= 15 tok/s", "qwen3-235b-a22b",
     dict(context=8192, batch=16, min_tokens_per_s=15)),
]

COLD = r"""
import json, time
t0, c0 = time.perf_counter(), time.process_time()
from qfit.api import size
from qfit.workload import Workload
r = size(MODEL, Workload(**KW), with_performance=True)
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, **r.seconds,
                  "evaluated": r.found.evaluated, "feasible": len(r.found.options),
                  "accelerators": len(r.accelerators), "chosen": r.chosen.label}))
"""


def cold(model: str, kw: dict) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    code = COLD.replace("MODEL", repr(model)).replace("KW", repr(kw))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def warm(model: str, kw: dict, repeat: int, max_nodes: int | None = None) -> dict:
    """`max_nodes` None: the default search (replicas over up to 4 nodes); 1: one node per replica, the search before
    multi-node replicas, timed alongside so their cost is measured under the same load."""
    from qfit.api import size
    from qfit.model.sources import load_model
    from qfit.workload import Workload

    loaded = load_model(model)
    size(loaded, Workload(**kw), with_performance=False)   # first call fills the profile caches
    walls, cpus = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        size(loaded, Workload(**kw), with_performance=False, max_nodes=max_nodes)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return {"wall_median": statistics.median(walls), "wall_min": min(walls), "cpu_median": statistics.median(cpus),
            "cpu_min": min(cpus)}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    names = [r["scenario"] for r in rows]
    bars = (("search CPU (warm, median)", lambda r: r["warm"]["cpu_median"]),
            ("search wall (warm, median; shared 2-core machine)", lambda r: r["warm"]["wall_median"]),
            ("cold CLI path CPU (imports + load + search)", lambda r: r["cold"]["cpu"]))
    for k, (label, get) in enumerate(bars):
        ax.barh([i + (k - 1) * 0.27 for i in range(len(rows))], [get(r) for r in rows], 0.27, label=label)
    ax.axvline(1.0, color="r", ls="--", lw=1, label="1 s target")
    ax.set_yticks(list(range(len(rows))), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title(f"qfit size: full search ({rows[0]['cold']['accelerators']} accelerators x 1-64 GPUs x 7 precisions)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.4, -0.18), ncol=2)
    fig.tight_layout()
    from qfit.atomic import write_with

    write_with(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"), suffix=".png")
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--plot", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    for name, model, kw in SCENARIOS:
        row = {"scenario": name, "model": model, "workload": kw, "cold": cold(model, kw),
               "warm": warm(model, kw, args.repeat), "warm_one_node": warm(model, kw, args.repeat, max_nodes=1)}
        rows.append(row)
        c, w, one = row["cold"], row["warm"], row["warm_one_node"]
        print(f"{name:50s} search CPU {w['cpu_median']:.3f} s (min {w['cpu_min']:.3f}; one node per replica "
              f"{one['cpu_median']:.3f}), wall {w['wall_median']:.3f} s; "
              f"cold CLI path {c['wall']:.2f} s wall / {c['cpu']:.2f} s CPU; {c['evaluated']} shapes, "
              f"{c['feasible']} feasible -> {c['chosen']}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "repeat": args.repeat}
    target = out / "size_bench.json"
    from qfit.atomic import write_json

    write_json(target, {"meta": meta, "scenarios": rows}, indent=1)
    print(f"wrote {target} (load average {meta['load_average'][0]:.1f} on {meta['cpus']} CPUs)")
    if args.plot:
        plot(rows, out / "size_bench.png")
        print(f"wrote {out / 'size_bench.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
