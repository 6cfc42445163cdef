#!/usr/bin/env python
"""Fit the per-host constants of qfit's quantize time estimate (qfit/quantize/timing.py) from real runs.

Protocol (what profiles/quantize/time.yaml records): run `qfit quantize` on one float model at 2-3 calibration sizes
(nsamples x seqlen) with GPTQ, plus one RTN run, on the machine to describe, one run at a time, with GPTQModel's CPU
kernel already compiled (so no run pays the one-time compile) and the model already converted (a .gguf converts once;
a run from the .gguf with an empty QFIT_CACHE gives the conversion constant). Each run's qfit-report.json has the
measured phases (resolve, calibration, load, layers, save), the total, and per layer its seconds and per module
GPTQModel's own solve time. From them, by least squares:
  - module_overhead_s, gptq_gflops:    module solve seconds    = module_overhead_s + (in^3 + 2 out in^2) / gptq rate
  - layer_overhead_s, forward_gflops:  layer seconds - modules = layer_overhead_s + F_fwd / forward rate
  - load_save_s_per_gb:                (load + save) / float GB, averaged
  - fixed_s:                           total - resolve - load - save - sum of layer seconds, averaged
  - convert_s_per_gb, rtn_s_per_gb:    from the runs that converted a .gguf / used --method rtn
Every time is first multiplied by the CPU share the run got (CPU time / wall), so the constants count one core's
time; `cores` is the lowest and highest share seen over all the runs given (other jobs competing; torch using both
cores when the machine is idle). The error stated is the largest of |estimate / one-core actual - 1| over the runs,
each predicted both by the constants fitted on all runs and by those fitted without it (leave-one-out).
`qfit quantize` prints T (1 - error) / most cores to T (1 + error) / fewest cores.

    PYTHONPATH=. python scripts/fit_quantize_time.py OUT1/qfit-report.json OUT2/qfit-report.json ... \
        [--rtn RTN/qfit-report.json] [--convert GGUFRUN/qfit-report.json] [--jit-s 44] [--check HELDOUT.json ...] \
        [--note "load average ..."] [--write]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from qfit.quantize import checkpoint as ck  # noqa: E402
from qfit.quantize.timing import CONSTANTS, OPTIONAL_CONSTANTS, TimeProfile, estimate_time, host_key, layer_flops  # noqa: E402

PASSES = 5   # GPTQModel 7.7, Llama block: 4 module subsets + 1 replay forward per layer (its log, see timing.py)


def cpu_share(path: Path, report: dict) -> float:
    """CPU time / wall time of the run: from the report (cpu_seconds), else from `/usr/bin/time -v` output saved
    beside it as NAME.err (runs made before reports carried cpu_seconds)."""
    if report.get("cpu_seconds"):
        return report["cpu_seconds"] / report["total_seconds"]
    fields = {}
    for line in path.with_suffix(".err").read_text().splitlines():
        key, _, value = line.strip().rpartition(": ")
        fields[key] = value
    h, m, sec = (["0"] + fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":"))[-3:]
    wall = int(h) * 3600 + int(m) * 60 + float(sec)
    return (float(fields["User time (seconds)"]) + float(fields["System time (seconds)"])) / wall


def _load(path: str) -> dict:
    """A report with its times scaled to one core's time (x CPU share) and its layout."""
    from qfit.model.sources import load_model
    from qfit.quantize.job import read_layout

    report = json.loads(Path(path).read_text())
    share = cpu_share(Path(path), report)
    k = share
    report["_share"], report["_wall"] = share, report["total_seconds"]
    report["total_seconds"] *= k
    report["phases"] = {name: v * k for name, v in report["phases"].items()}
    for row in report["layers"]:
        row["seconds"] *= k
        for m in row["modules"].values():
            if isinstance(m.get("seconds"), (int, float)):
                m["seconds"] *= k
    model_dir = Path(report["model_dir"])
    report["_layout"] = read_layout(model_dir, load_model(str(model_dir)).spec)
    return report


def _shapes(report: dict) -> dict[int, dict[str, tuple[int, int]]]:
    """{layer: {module inside the block: (out, in)}} of the modules the run quantized."""
    out: dict[int, dict[str, tuple[int, int]]] = {}
    for name, shape in report["_layout"].linears.items():
        out.setdefault(ck.layer_index(name), {})[name.split(".", 3)[-1]] = shape
    return out


def _line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares y = a + b x with a >= 0 (an overhead cannot be negative: then the line through 0) -> (a, b)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    if my - b * mx < 0:
        return 0.0, sum(x * y for x, y in zip(xs, ys)) / sum(x * x for x in xs)
    return my - b * mx, b


def fit(reports: list[dict], extra: dict[str, float]) -> dict[str, float]:
    mx, my, lx, ly, fixed, io = [], [], [], [], [], []
    for r in reports:
        shapes, n, s = _shapes(r), r["recipe"]["nsamples"] * r["recipe"]["seqlen"], r["recipe"]["seqlen"]
        hidden = r["_layout"].hidden
        for row in r["layers"]:
            mods = {m: v["seconds"] for m, v in row["modules"].items() if isinstance(v.get("seconds"), (int, float))}
            for m, sec in mods.items():
                o, i = shapes[row["layer"]][m]
                mx.append(float(i) ** 3 + 2.0 * o * i * i)
                my.append(sec)
            fwd, _ = layer_flops(list(shapes[row["layer"]].values()), tokens=n, seqlen=s, hidden=hidden,
                                 passes=PASSES)
            lx.append(fwd)
            ly.append(row["seconds"] - sum(mods.values()))
        p = r["phases"]
        gb = r["float_weight_bytes"] / 1e9
        io.append((p["load"] + p["save"]) / gb)
        fixed.append(r["total_seconds"] - p.get("resolve", 0) - p["load"] - p["save"] - sum(x["seconds"]
                                                                                           for x in r["layers"]))
    mod_a, mod_b = _line(mx, my)
    lay_a, lay_b = _line(lx, ly)
    return {"fixed_s": sum(fixed) / len(fixed), "load_save_s_per_gb": sum(io) / len(io),
            "layer_overhead_s": lay_a, "forward_gflops": 1e-9 / lay_b, "module_overhead_s": mod_a,
            "gptq_gflops": 1e-9 / mod_b, **extra}


def predict(constants: dict[str, float], r: dict) -> float:
    profile = TimeProfile(host=host_key(), device="cpu", forward_passes=PASSES, constants=constants, error=0.0)
    layers = [list(m.values()) for m in _shapes(r).values()]
    est = estimate_time(profile, method="gptq", layers=layers, hidden=r["_layout"].hidden,
                        float_gb=r["float_weight_bytes"] / 1e9, nsamples=r["recipe"]["nsamples"],
                        seqlen=r["recipe"]["seqlen"])
    return est.total_s


def _run_row(r: dict) -> dict:
    return {"nsamples": r["recipe"]["nsamples"], "seqlen": r["recipe"]["seqlen"], "wall_s": round(r["_wall"], 1),
            "cpu_share": round(r["_share"], 3), "one_core_s": round(r["total_seconds"], 1)}


def _rtn_and_convert(args) -> dict[str, float]:
    """convert_s_per_gb and rtn_s_per_gb (mean over the RTN runs) from their runs, scaled by CPU share; jit_s as
    given; 0 = not measured."""
    extra = {"convert_s_per_gb": 0.0, "rtn_s_per_gb": 0.0, "jit_s": args.jit_s or 0.0}
    if args.convert:
        c = json.loads(Path(args.convert).read_text())
        k = cpu_share(Path(args.convert), c)
        extra["convert_s_per_gb"] = c["phases"]["resolve"] * k / (c["float_weight_bytes"] / 1e9)
    per_gb = [_rtn_per_gb(Path(path)) for path in args.rtn]
    if per_gb:
        extra["rtn_s_per_gb"] = sum(per_gb) / len(per_gb)
    return extra


def _rtn_per_gb(path: Path) -> float:
    c = json.loads(path.read_text())
    seconds = (c["total_seconds"] - c["phases"].get("resolve", 0)) * cpu_share(path, c)
    return seconds / (c["float_weight_bytes"] / 1e9)


def _rtn_error(paths: list[str], mean: float) -> float:
    """Largest |run / mean - 1| over the RTN runs, rounded up to 5 % (0.5 with one run: its spread is unknown)."""
    if len(paths) < 2:
        return 0.5
    return math.ceil(max(abs(_rtn_per_gb(Path(p)) / mean - 1) for p in paths) * 20) / 20


def _cores(reports: list[dict], args) -> list[float]:
    """[lowest, highest] CPU share over every run given (fitted, held out, RTN, conversion), rounded outwards."""
    shares = [r["_share"] for r in reports]
    for path in [*args.rtn, *args.check, *([args.convert] if args.convert else [])]:
        shares.append(cpu_share(Path(path), json.loads(Path(path).read_text())))
    return [math.floor(min(shares) * 20) / 20, math.ceil(max(shares) * 20) / 20]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", help="qfit-report.json of GPTQ runs (2-3 calibration sizes)")
    ap.add_argument("--rtn", nargs="*", default=[], help="qfit-report.json of RTN runs (their mean; their spread is "
                                                          "rtn_error)")
    ap.add_argument("--convert", help="qfit-report.json of a run that converted a .gguf (phases.resolve)")
    ap.add_argument("--jit-s", type=float, default=None, help="seconds GPTQModel's log gave its one-time CPU compile")
    ap.add_argument("--check", nargs="*", default=[], help="reports of held-out GPTQ runs: predicted with the fitted "
                                                           "constants, not used to fit them (out-of-sample error)")
    ap.add_argument("--note", default="", help="conditions of the runs (load average, what else ran), kept in the row")
    ap.add_argument("--write", action="store_true", help="print the YAML row (default) and write it into "
                                                         "profiles/quantize/time.yaml, replacing this host's row")
    args = ap.parse_args()
    reports = [_load(p) for p in args.reports]
    extra = _rtn_and_convert(args)
    constants = fit(reports, extra)
    runs, worst = [], 0.0
    for k, r in enumerate(reports):
        others = reports[:k] + reports[k + 1:]
        loo = predict(fit(others, extra), r) if len(others) >= 2 else float("nan")
        est = predict(constants, r)
        errs = [est / r["total_seconds"] - 1] + ([loo / r["total_seconds"] - 1] if not math.isnan(loo) else [])
        worst = max([worst] + [abs(e) for e in errs])
        runs.append({**_run_row(r), "estimate_s": round(est, 1),
                     "estimate_leave_one_out_s": None if math.isnan(loo) else round(loo, 1)})
    checks = []
    for r in map(_load, args.check):
        est = predict(constants, r)
        checks.append({**_run_row(r), "estimate_s": round(est, 1), "error": round(est / r["total_seconds"] - 1, 3)})
    row = {"host": host_key(), "device": "cpu", "forward_passes": PASSES,
           "constants": {k: round(constants[k], 4) for k in CONSTANTS},
           "error": math.ceil(worst * 20) / 20, "rtn_error": _rtn_error(args.rtn, extra["rtn_s_per_gb"]),
           "cores": _cores(reports, args), "runs": runs,
           "held_out": checks,
           "versions": reports[0]["libraries"], "model": Path(reports[0]["model_dir"]).name,
           "measured": date.today().isoformat(), "note": args.note}
    print(json.dumps(row, indent=2))
    if args.write:
        _write(row)


def _write(row: dict) -> None:
    import yaml

    from qfit.atomic import write_text

    path = REPO / "profiles" / "quantize" / "time.yaml"
    text = path.read_text() if path.exists() else ""
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    data = yaml.safe_load(text) or {}
    same = [h for h in data.get("hosts", []) if h["host"] == row["host"] and h["device"] == row["device"]]
    for old in same:   # constants measured apart from this fit (OPTIONAL_CONSTANTS) stay
        row["constants"] |= {k: v for k, v in old["constants"].items() if k in OPTIONAL_CONSTANTS}
    hosts = [h for h in data.get("hosts", []) if h not in same]
    write_text(path, header + yaml.safe_dump({"hosts": hosts + [row]}, sort_keys=False, width=120))


if __name__ == "__main__":
    main()
