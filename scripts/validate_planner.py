#!/usr/bin/env python
"""Score the planner against published measurements: memory (through make_plan) and decode / prefill / e2e speed.

Usage:  PYTHONPATH=. python scripts/validate_planner.py [--cases PATH] [--json] [--markdown] [--worst N]

Per kind it reports the median absolute error, the share of rows within +-10 % / +-25 %, the bias (median signed
error: + = the planner is optimistic) and the worst rows. Speed rows are predicted exactly as each row defines its figure
(see scripts/calibration.py). These are in-sample figures for the speed kinds: the efficiencies were fitted on the same
rows; scripts/fit_efficiency.py prints the leave-one-group-out figures that the error bands use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import (  # noqa: E402
    DEFAULT_CASES,
    SPEED_KINDS,
    build_cases,
    load_rows,
    predict,
    registry,
    rel_error,
    summarize,
)

GIB = 2**30


def predict_memory(row: dict) -> float:
    """GiB the row measured: gguf file size (target weights) or torch peak allocated (target total, no CUDA context)."""
    from qfit import api
    from qfit.hardware import get_accelerator

    common = dict(precision=row["precision"], engine=row["engine"], with_performance=False, suggest=False,
                  engines=registry())
    if row["target"] == "weights":
        return api.plan(row["model"], gpu="rtx-4090", context=512, **common).memory.weights / GIB
    acc = get_accelerator(row["gpu"], row.get("gpu_variant"))
    inp, out = int(row["input_len"]), int(row["output_len"])
    plan = api.plan(row["model"], gpu=acc, context=inp + out, batch=int(row.get("batch") or 1), input_len=inp,
                    output_len=out, **common)
    mem = plan.to_dict()["memory"]
    # torch.cuda.max_memory_allocated does not see the CUDA context / workspaces the runtime overhead stands for.
    return mem["total_gib"] - mem["overhead_gib"]


def score(cases_path: str) -> tuple[dict, list[dict]]:
    rows = load_rows(cases_path, kinds=SPEED_KINDS + ("memory",))
    results = []
    for case in build_cases([r for r in rows if r["kind"] in SPEED_KINDS]):
        pred = predict(case)
        results.append(_result(case.row, pred, case.group))
    for row in (r for r in rows if r["kind"] == "memory"):
        results.append(_result(row, predict_memory(row), f"{row['engine']}/memory-{row['target']}"))
    table = {}
    for kind in SPEED_KINDS + ("memory",):
        errs = [r["error"] for r in results if r["kind"] == kind]
        table[kind] = summarize(errs)
    groups = sorted({(r["kind"], r["group"]) for r in results})
    by_group = {f"{k} {g}": summarize([r["error"] for r in results if r["kind"] == k and r["group"] == g])
                for k, g in groups}
    return {"overall": table, "by_group": by_group}, results


def _result(row: dict, pred: float, group: str) -> dict:
    return {"id": row["id"], "kind": row["kind"], "group": group, "measured": row["measured"], "unit": row["unit"],
            "predicted": round(pred, 3), "error": rel_error(pred, row["measured"])}


def markdown(summary: dict) -> str:
    lines = ["| kind | rows | median abs error | within ±10 % | within ±25 % | bias (median) |",
             "|---|---|---|---|---|---|"]
    for kind, s in summary["overall"].items():
        if s.get("n"):
            lines.append(f"| {kind} | {s['n']} | {s['median_abs_pct']:.1f} % | {s['within_10_pct']:.0f} % | "
                         f"{s['within_25_pct']:.0f} % | {s['bias_pct']:+.1f} % |")
    lines += ["", "| kind x engine/device family | rows | median abs error | within ±25 % | bias |", "|---|---|---|---|---|"]
    for key, s in summary["by_group"].items():
        lines.append(f"| {key} | {s['n']} | {s['median_abs_pct']:.1f} % | {s['within_25_pct']:.0f} % | "
                     f"{s['bias_pct']:+.1f} % |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Score qfit plan against the calibration measurements.")
    ap.add_argument("--cases", default=str(DEFAULT_CASES))
    ap.add_argument("--json", action="store_true", help="print the summary and every row as JSON")
    ap.add_argument("--markdown", action="store_true", help="print the README tables")
    ap.add_argument("--worst", type=int, default=5, help="worst rows to list per kind")
    args = ap.parse_args(argv)
    summary, results = score(args.cases)
    if args.json:
        print(json.dumps({"summary": summary, "rows": results}, indent=1))
        return 0
    if args.markdown:
        print(markdown(summary))
        return 0
    for kind, s in summary["overall"].items():
        print(f"{kind:8s} {s}")
        worst = sorted((r for r in results if r["kind"] == kind), key=lambda r: -abs(r["error"]))[:args.worst]
        for r in worst:
            print(f"    {100 * r['error']:+6.1f} %  measured {r['measured']:>9} predicted {r['predicted']:>9}  {r['id']}")
    print()
    for key, s in summary["by_group"].items():
        print(f"{key:40s} {s}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
