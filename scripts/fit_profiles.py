"""The writer of the `fitted:` section of profiles/engines/<engine>.yaml, used by fit_efficiency.py.

Everything above the marker line of an engine file (its memory behaviour, priors, format generalisations, sources) is
reviewed by hand and read, never rewritten; the fit replaces what follows the marker.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = ("# ---- fitted by scripts/fit_efficiency.py from here to the end of the file: do not edit by hand, re-run "
          "the fit ----")

# Neutral starting values for a backend that has never been fitted; replaced by the fit where data exists.
PRIOR = {"decode_bandwidth_efficiency": 0.75, "overhead_per_layer_us": 50.0, "kv_traffic_factor": 1.0,
         "prefill_compute_efficiency": 0.4}
def _r(v: float, nd: int = 4) -> float:
    return float(f"{v:.{nd}g}")


def _formats(res: dict, generalize: list) -> list[dict]:
    params = res["params"]
    fmts = sorted({k.split(":", 1)[1] for k in params if ":" in k})
    entries = {}
    for fmt in fmts:
        entries[fmt] = {"match": fmt, "decode_bandwidth": _r(params.get(f"fbw:{fmt}", 1.0)),
                        "overhead_per_layer_us": _r(params.get(f"fovh:{fmt}", 0.0)),
                        "prefill_compute": _r(params.get(f"fpf:{fmt}", 1.0)), "note": "fitted"}
    out = list(entries.values())
    for pattern, like in generalize:
        if like in entries:
            out.append({**entries[like], "match": pattern, "note": f"no rows: assumed like {like}"})
    return out


def backend_entry(res: dict | None, generalize: list) -> dict:
    if res is None:
        return {**PRIOR, "fitted": False, "source": "prior (no calibration rows yet)",
                "error_band": {"decode_pct": 30.0, "prefill_pct": 50.0, "basis": "prior: uncalibrated"}}
    p = res["params"]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from calibration import summarize

    ins = {}
    for kind in ("decode", "prefill", "e2e"):
        errs = [e for c, _, e in res["fit"] if c.kind == kind]
        if errs:
            ins[kind] = summarize(errs)
    return {
        "fitted": True,
        "decode_bandwidth_efficiency": _r(p.get("bw", PRIOR["decode_bandwidth_efficiency"])),
        "overhead_per_layer_us": _r(p.get("ovh", 0.0 if "ovs" in p else PRIOR["overhead_per_layer_us"])),
        "overhead_per_step_us": _r(p.get("ovs", 0.0)),
        "kv_traffic_factor": _r(p.get("kvf", 1.0)),
        "prefill_compute_efficiency": _r(p.get("pf", p.get("pfv", PRIOR["prefill_compute_efficiency"]))),
        "attention_compute_efficiency": _r(p.get("pa", p.get("pf", p.get("pfv", PRIOR["prefill_compute_efficiency"])))),
        "compute_peak": res.get("compute_peak", "tensor"),
        "formats": _formats(res, generalize),
        "error_band": res["band"],
        "in_sample": ins,
        "n_rows": res["n"],
        "source": "; ".join(res["sources"]),
    }


def write_profiles(results: dict, groups: list[str], out: str | None = None) -> list[Path]:
    """Rewrite the `fitted:` section of every engine file: one entry per fit group ("engine/backend") of that engine."""
    import yaml

    from qfit.atomic import write_text

    engines_dir = (Path(out) if out else ROOT / "profiles") / "engines"
    if not engines_dir.is_dir():   # --out elsewhere: start from the reviewed files
        shutil.copytree(ROOT / "profiles" / "engines", engines_dir)
    written = []
    for path in sorted(engines_dir.glob("*.yaml")):
        head, marker, _ = path.read_text(encoding="utf-8").partition(MARKER)
        if not marker:
            raise SystemExit(f"{path}: no fitted-section marker line; refusing to rewrite a hand-edited file")
        static = yaml.safe_load(head)
        generalize = static["speed"].get("formats_generalize") or []
        backends = [g.split("/", 1)[1] for g in groups if g.split("/", 1)[0] == static["name"]]
        doc = {"fitted": {"generated_on": _dt.date.today().isoformat(),
                          "calibration_set": "benchmarks/calibration/cases.jsonl",
                          "backends": {b: backend_entry(results.get(f"{static['name']}/{b}"), generalize)
                                       for b in backends}}}
        write_text(path, head + marker + "\n" + yaml.safe_dump(doc, sort_keys=False, width=120))
        written.append(path)
    return written
