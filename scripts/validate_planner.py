#!/usr/bin/env python
"""Score the planner against published measurements: memory (through make_plan) and decode / prefill / e2e speed.

Usage:  PYTHONPATH=. python scripts/validate_planner.py [--cases PATH] [--json] [--markdown] [--loo] [--worst N]
                                                       [--out DIR]

Per kind it reports the median absolute error, the share of rows within +-10 % / +-25 %, the bias (median signed
error: + = the planner is optimistic) and the worst rows. Speed rows are predicted exactly as each row defines its figure
(see scripts/calibration.py). These are in-sample figures for the speed kinds: the efficiencies were fitted on the same
rows; scripts/fit_efficiency.py prints the leave-one-group-out figures that the error bands use.
--loo prints the leave-one-model-out table (scripts/loo.py: `qfit calibrate`'s factors fitted on every other model,
beside the uncalibrated and in-sample figures, against issue 12's targets) and the cases the planner refuses;
--out DIR writes planner_validation.json and planner_validation.md there (benchmarks/results/).
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
    load_rows,
    predict,
    registry,
    rel_error,
    summarize,
)
from loo import leave_one_model_out, resolve_cases  # noqa: E402
from loo import markdown as loo_markdown  # noqa: E402
from loo import table as loo_table  # noqa: E402

from qfit.errors import QfitError  # noqa: E402

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
    summary, results, _ = score_all(cases_path)
    return summary, results


def score_all(cases_path: str) -> tuple[dict, list[dict], dict]:
    """(in-sample summary, per-row results, leave-one-model-out report with the refused cases)."""
    rows = load_rows(cases_path, kinds=SPEED_KINDS + ("memory",))
    cases, refused = resolve_cases([r for r in rows if r["kind"] in SPEED_KINDS])
    results = [_result(case.row, predict(case), case.group) for case in cases]
    loo = leave_one_model_out(cases)
    for row in (r for r in rows if r["kind"] == "memory"):
        try:
            pred = predict_memory(row)
        except QfitError as exc:
            refused.append({"id": row["id"], "model": row["model"], "precision": row["precision"], "why": str(exc)})
            continue
        results.append(_result(row, pred, f"{row['engine']}/memory-{row['target']}"))
        err = results[-1]["error"]     # no calibration factor touches memory: the three columns agree
        loo.append({"id": row["id"], "kind": "memory", "engine": row["engine"], "model": row["model"],
                    "measured": row["measured"], "uncalibrated": round(pred, 3), "in_sample": round(pred, 3),
                    "loo": round(pred, 3), "error": {"uncalibrated": err, "in_sample": err, "loo": err}})
    table = {}
    for kind in SPEED_KINDS + ("memory",):
        errs = [r["error"] for r in results if r["kind"] == kind]
        table[kind] = summarize(errs)
    groups = sorted({(r["kind"], r["group"]) for r in results})
    by_group = {f"{k} {g}": summarize([r["error"] for r in results if r["kind"] == k and r["group"] == g])
                for k, g in groups}
    report = {"table": loo_table(loo), "refused": refused, "rows": loo,
              "models": sorted({r["model"] for r in loo})}
    return {"overall": table, "by_group": by_group}, results, report


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


def write_results(out_dir: str, cases_path: str, summary: dict, report: dict) -> list[Path]:
    from qfit.atomic import write_json, write_text

    out = Path(out_dir)
    data = {"command": "PYTHONPATH=. python scripts/validate_planner.py --out benchmarks/results",
            "cases": os.path.relpath(cases_path, Path(__file__).resolve().parents[1]),
            "in_sample": summary, "leave_one_model_out": report}
    md = (f"# Planner validation on {data['cases']}\n\nMade by `{data['command']}`.\n\n## The planner as shipped (reviewed profiles: in-sample for the rows they were fitted on, not for the Qwen3 H20 rows)\n\n"
          f"{markdown(summary)}\n\n## Leave one model out ({', '.join(report['models'])})\n\n"
          f"{loo_markdown(report['table'], report['refused'])}\n")
    return [write_json(out / "planner_validation.json", data, mkdir=True),
            write_text(out / "planner_validation.md", md, mkdir=True)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Score qfit plan against the calibration measurements.")
    ap.add_argument("--cases", default=str(DEFAULT_CASES))
    ap.add_argument("--json", action="store_true", help="print the summary and every row as JSON")
    ap.add_argument("--markdown", action="store_true", help="print the README tables")
    ap.add_argument("--loo", action="store_true", help="print the leave-one-model-out table and the refused cases")
    ap.add_argument("--out", help="write planner_validation.json/.md into this folder (e.g. benchmarks/results)")
    ap.add_argument("--worst", type=int, default=5, help="worst rows to list per kind")
    args = ap.parse_args(argv)
    summary, results, report = score_all(args.cases)
    if args.out:
        for path in write_results(args.out, args.cases, summary, report):
            print(f"wrote {path}")
    if args.json:
        print(json.dumps({"summary": summary, "rows": results, "leave_one_model_out": report}, indent=1))
        return 0
    if args.markdown:
        print(markdown(summary))
        return 0
    if args.loo:
        print(loo_markdown(report["table"], report["refused"]))
        return 0
    for kind, s in summary["overall"].items():
        print(f"{kind:8s} {s}")
        worst = sorted((r for r in results if r["kind"] == kind), key=lambda r: -abs(r["error"]))[:args.worst]
        for r in worst:
            print(f"    {100 * r['error']:+6.1f} %  measured {r['measured']:>9} predicted {r['predicted']:>9}  {r['id']}")
    print()
    for key, s in summary["by_group"].items():
        print(f"{key:40s} {s}")
    print(f"\nrefused cases: {len(report['refused'])}")
    for r in report["refused"]:
        print(f"    {r['id']}: {r['why']}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
