"""Shared by validate_planner.py and fit_efficiency.py: read the calibration cases, resolve their inputs through the
planner's own modules, and predict each measured figure exactly as the row defines it.

Row definitions (see each row's `what` / `speed_def`):
  llama-bench tg128   decode tok/s at batch 1 from an empty KV cache (timed over 128 tokens: mid-point context 64)
  llama-bench pp512   prefill tok/s of a 512-token prompt
  gen_over_total      generated tokens / total time including prefill (Qwen2.5 speed benchmark, transformers and vLLM)
  in_plus_gen_over_total  (prompt + generated tokens) / total time (Qwen3 speed benchmark, transformers and SGLang)
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CASES = Path(__file__).resolve().parents[1] / "benchmarks" / "calibration" / "cases.jsonl"
SPEED_KINDS = ("decode", "prefill", "e2e")


_INTERNAL = re.compile(r",? via (?:research/)?(?:reference_measurements\.md )?§[A-Z]\d+(?:/§[A-Z]\d+)*"
                       r"|reference_measurements\.md §[A-Z]\d+(?: single reports)?: ")
_PUBLIC = ((re.compile(r"llama\.cpp discussion #(\d+)"), r"github.com/ggml-org/llama.cpp/discussions/\1"),
           (re.compile(r"^PR #(\d+)"), r"github.com/ggml-org/llama.cpp/pull/\1"),   # the single reports are llama.cpp's
           (re.compile(r"^unattributed benchmark notes, index id \d+"), "unattributed benchmark notes (no public page)"),
           (re.compile(r"^QwenLM/"), "github.com/QwenLM/"))


# Rows the profiles are not fitted on: the Qwen3 H20 speed benchmark arrived after the fit and is scored as unseen data
# (tests/test_validate.py) until issue 12 (MoE and long-context prediction) refits with it.
HELD_OUT_SOURCES = ("QwenLM/Qwen3 ",)


def held_out(row: dict) -> bool:
    return str(row.get("source", "")).startswith(HELD_OUT_SOURCES)


def public_source(source: str) -> str:
    """A row's source as users may follow it: the public page or repo path, without the compiler's section marks."""
    out = _INTERNAL.sub("", source).strip()
    for pattern, repl in _PUBLIC:
        out = pattern.sub(repl, out)
    return out


def load_rows(path: Path | str = DEFAULT_CASES, kinds=SPEED_KINDS) -> list[dict]:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r for r in rows if r["kind"] in kinds]


_ENGINES = None


def registry():
    """The reviewed engine profiles only: validation and fitting never see a user's calibration overlay."""
    global _ENGINES
    if _ENGINES is None:
        from qfit.engines import load_engines

        _ENGINES = load_engines(overlays=False)
    return _ENGINES


def resolve_inputs(row: dict):
    """-> (spec, groups, weights, precision, accelerator) through the planner's own resolution."""
    from qfit import resolve
    from qfit.hardware import get_accelerator
    from qfit.model.params import tensor_groups
    from qfit.precision import weight_bytes

    spec = resolve.model(row["model"]).spec
    groups = tensor_groups(spec)
    precision = resolve.recipe(row["precision"])
    weights = weight_bytes(groups, precision)
    accel = get_accelerator(row["gpu"], row.get("gpu_variant"))
    return spec, groups, weights, precision, accel


@dataclass
class Case:
    row: dict
    inputs: tuple
    engine: str
    backend: str

    @property
    def id(self) -> str:
        return self.row["id"]

    @property
    def kind(self) -> str:
        return self.row["kind"]

    @property
    def group(self) -> str:
        """Fit group: engine x device family."""
        return f"{self.engine}/{self.backend}"

    @property
    def precision(self) -> str:
        return self.row["precision"]


def build_cases(rows: list[dict], resolver=resolve_inputs) -> list[Case]:
    cases = []
    for row in rows:
        inputs = resolver(row)
        if row["kind"] == "prefill" and not _has_flops(inputs[4]):
            continue   # no compute figure for this device: prefill is not predicted (the estimate says so)
        backend = row.get("backend") or inputs[4].backend
        cases.append(Case(row, inputs, registry().get(row["engine"]).name, backend))
    return cases


def _has_flops(accel) -> bool:
    return any(accel.tflops_for(k) for k in ("fp32", "bf16", "fp16"))


def case_efficiency(case: Case, precision: str):
    """The reviewed profile's factors for a case's engine, device family and format."""
    return registry().get(case.engine).efficiency(case.backend, precision)


def predict(case: Case, eff=None) -> float:
    from qfit.perf import estimate_performance

    spec, groups, weights, recipe, accel = case.inputs
    precision = recipe.name
    r = case.row
    gpus = int(r.get("n_gpus") or 1)
    batch = int(r.get("batch") or 1)
    common = dict(gpus=gpus, batch=batch, kv_dtype="fp16", efficiency=eff or case_efficiency(case, precision))
    if r.get("speed_def") in ("gen_over_total", "in_plus_gen_over_total"):
        est = estimate_performance(spec, groups, weights, precision, accel, input_len=int(r["input_len"]),
                                   output_len=int(r["output_len"]), **common)
        if r["speed_def"] == "in_plus_gen_over_total":
            return (int(r["input_len"]) + int(r["output_len"])) / est.e2e_s
        return est.e2e_tokens_per_s
    if r["kind"] == "prefill":
        est = estimate_performance(spec, groups, weights, precision, accel, input_len=int(r["input_len"]),
                                   context=int(r["input_len"]), **common)
        return est.prefill_tokens_per_s
    out = int(r.get("output_len") or 128)
    est = estimate_performance(spec, groups, weights, precision, accel, input_len=int(r.get("input_len") or 0),
                               context=max(int(r.get("input_len") or 0) + out // 2, 1), **common)
    return est.decode_tokens_per_s


def rel_error(pred: float, measured: float) -> float:
    """Signed relative error of the prediction, (pred - measured) / measured."""
    return (pred - measured) / measured


def summarize(errors: list[float]) -> dict:
    """Median abs error, share within +-10 % / +-25 %, bias (median signed), n."""
    if not errors:
        return {"n": 0}
    absd = [abs(e) for e in errors]
    return {
        "n": len(errors),
        "median_abs_pct": round(100 * statistics.median(absd), 1),
        "within_10_pct": round(100 * sum(a <= 0.10 for a in absd) / len(absd), 1),
        "within_25_pct": round(100 * sum(a <= 0.25 for a in absd) / len(absd), 1),
        "bias_pct": round(100 * statistics.median(errors), 1),
        "p90_abs_pct": round(100 * sorted(absd)[min(len(absd) - 1, math.ceil(0.9 * len(absd)) - 1)], 1),
    }
