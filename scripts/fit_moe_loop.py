#!/usr/bin/env python
"""Fit an engine's per-expert loop cost (`speed.moe_expert_loop.us` in profiles/engines/<engine>.yaml) on the
calibration set's MoE rows of that engine at float weights; with --calls FORMAT, then the fixed cost per linear-module
call of that weight format (`speed.format_warnings[].call_us`) on every row of the engine in that format.

Usage:  PYTHONPATH=. python scripts/fit_moe_loop.py [--engine transformers] [--calls fp8] [--cases PATH]

transformers' MoE blocks (Qwen3-MoE, Qwen2-MoE, Mixtral ... in the 4.5x releases) run `for expert_idx in
range(num_experts)` in Python: every expert of every routed layer is visited each forward pass, with its index ops and
kernel launches, whether or not a token was routed to it. That cost is one engine-level number (us per visit), fitted
here on every decode and end-to-end row of the engine's MoE models at float weights (quantized formats carry their own
per-layer format overhead, fitted separately), by least squares on log(predicted / measured), the other factors of the
reviewed profile held fixed. One number for the engine, never one per case.

transformers' FP8 path (4.51's fine-grained FP8 linear: an activation-quantizing kernel and a block-FP8 matmul
launched per call) adds a fixed cost to every linear-module call, the loop's empty expert calls included; its one
number is fitted the same way on all FP8 rows of the engine, dense and MoE, with the loop term already in place.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import DEFAULT_CASES, build_cases, case_efficiency, load_rows, predict, rel_error  # noqa: E402

FLOAT = ("bf16", "fp16", "fp32")


def moe_cases(engine: str, cases_path: str) -> list:
    from qfit import resolve

    rows = [r for r in load_rows(cases_path) if r["engine"] == engine and r["precision"] in FLOAT
            and r["kind"] in ("decode", "e2e") and resolve.model(r["model"]).spec.moe is not None]
    return build_cases(rows)


def format_cases(engine: str, fmt: str, cases_path: str) -> list:
    rows = [r for r in load_rows(cases_path) if r["engine"] == engine and r["precision"] == fmt
            and r["kind"] in ("decode", "e2e")]
    return build_cases(rows)


def predicted(case, us: float, term: str = "moe_expert_loop_us") -> float:
    return predict(case, replace(case_efficiency(case, case.precision), **{term: us}))


def loss(cases: list, us: float, term: str = "moe_expert_loop_us") -> float:
    return statistics.fmean(math.log(predicted(c, us, term) / c.row["measured"]) ** 2 for c in cases)


def fit(cases: list, term: str = "moe_expert_loop_us", lo: float = 0.01, hi: float = 10000.0,
        iters: int = 80) -> float:
    """Golden-section search on log(us): the loss is unimodal in the one parameter."""
    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    for _ in range(iters):
        c, d = b - g * (b - a), a + g * (b - a)
        if loss(cases, math.exp(c), term) < loss(cases, math.exp(d), term):
            b = d
        else:
            a = c
    return math.exp((a + b) / 2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--engine", default="transformers")
    ap.add_argument("--cases", default=str(DEFAULT_CASES))
    ap.add_argument("--calls", metavar="FORMAT", help="fit the per-linear-call cost of this weight format instead")
    args = ap.parse_args(argv)
    if args.calls:
        return _report(format_cases(args.engine, args.calls, args.cases), "linear_call_us",
                       f"{args.engine} {args.calls}: call_us")
    cases = moe_cases(args.engine, args.cases)
    if not cases:
        print(f"no {args.engine} MoE rows at float weights in {args.cases}")
        return 1
    return _report(cases, "moe_expert_loop_us", f"{args.engine}: moe_expert_loop us")


def _report(cases: list, term: str, label: str) -> int:
    if not cases:
        print(f"no rows for {label}")
        return 1
    us = fit(cases, term)
    print(f"{label} = {us:.1f} from {len(cases)} rows")
    for c in cases:
        print(f"  {100 * rel_error(predicted(c, 0.0, term), c.row['measured']):+9.1f} % without, "
              f"{100 * rel_error(predicted(c, us, term), c.row['measured']):+6.1f} % with   {c.id}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
