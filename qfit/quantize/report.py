"""The quantize report: one dataclass whose to_dict() drives qfit-report.json, qfit-report.md, the rich summary and --json."""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qfit.quantize.heldout import heldout_header, heldout_lines
from qfit.units import GIB

LIBRARIES = ("qfit", "torch", "transformers", "gptqmodel", "optimum", "safetensors", "huggingface_hub")


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    if out.get("qfit") is None:  # running from a source tree (PYTHONPATH) rather than an installed wheel
        from qfit import __version__

        out["qfit"] = __version__
    return out


def planner_prediction(loaded, recipe) -> dict:
    """The planner's weight bytes for the recipe that was written, from the source model's config alone (the same
    count `qfit plan` makes)."""
    from qfit.model.params import layer_groups, tensor_groups
    from qfit.precision import weight_bytes

    predicted = weight_bytes((layer_groups if recipe.per_layer else tensor_groups)(loaded.spec), recipe)
    return {"available": True, "precision": recipe.name, "group_size": recipe.group_size,
            "weight_bytes": predicted.total, "detail": predicted.to_dict()}


@dataclass
class QuantizeReport:
    model: str
    model_dir: str
    out: str
    method: str
    recipe: dict
    calibration: dict | None
    layers: list[dict]
    quantized_params: int
    bits_per_weight: float          # stored bits (qweight + qzeros + scales + g_idx) per quantized weight
    size_on_disk_bytes: int
    weight_bytes: int               # all tensors in the safetensors files (from headers)
    float_weight_bytes: int
    wall_seconds: float
    peak_rss_bytes: int
    peak_vram_bytes: int | None
    memory_estimate: dict
    device: str
    libraries: dict = field(default_factory=library_versions)
    planner_prediction: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    time_estimate: dict | None = None   # qfit.quantize.timing.TimeEstimate, made before the run started
    phases: dict = field(default_factory=dict)   # measured seconds: resolve, calibration, load, layers, save
    total_seconds: float = 0.0          # from the start of the heavy work to the report: what time_estimate predicts
    cpu_seconds: float = 0.0            # CPU time over the same span (cpu_share = cpu / total: 1 = one full core)
    log_file: str | None = None         # the libraries' output, beside the report
    heldout: dict | None = None         # qfit.quantize.heldout: perplexity per domain on text calibration never read

    def to_dict(self) -> dict:
        d = asdict(self)
        pred = self.planner_prediction
        if pred.get("available"):
            d["planner_prediction"]["real_weight_bytes"] = self.weight_bytes
            d["planner_prediction"]["ratio_real_to_predicted"] = round(self.weight_bytes / pred["weight_bytes"], 4)
        share = self.cpu_seconds / self.total_seconds if self.total_seconds and self.cpu_seconds else None
        d["cpu_share"] = round(share, 3) if share else None
        if self.time_estimate and self.total_seconds:
            t = d["time_estimate"]
            t["actual_s"] = self.total_seconds
            t["error"] = round(t["total_s"] / self.total_seconds - 1, 3)
            # the estimate counts one core's time: compare it with this run's CPU time too (wall x CPU share)
            t["error_one_core"] = round(t["total_s"] / (self.total_seconds * share) - 1, 3) if share else None
        return d


def time_line(d: dict) -> str:
    """'estimated 3 min 10 s (2 min 55 s to 4 min 50 s), took 3 min 02 s, 98% of a core (estimate +4%)'."""
    from qfit.quantize.terminal import duration

    t = d.get("time_estimate")
    share = f", {d['cpu_share']:.0%} of a core" if d.get("cpu_share") else ""
    took = f"took {duration(d['total_seconds'])}{share}"
    if not t:
        return f"{took}; no estimate (no timing constants for this device)"
    return (f"estimated {duration(t['total_s'])} ({duration(t['low_s'])} to {duration(t['high_s'])}), {took} "
            f"(estimate {t['error']:+.0%})")


def _mb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e6:,.1f} MB"


def render_markdown(report: QuantizeReport) -> str:
    d = report.to_dict()
    r = d["recipe"]
    lines = [
        f"# qfit quantize report: {Path(d['model']).name}",
        "",
        f"- method: **{d['method']}**, bits {r['bits']}, group size {r['group_size']}, desc_act {r['desc_act']}, "
        f"sym {r['sym']}, damp {r['damp']}",
        f"- device: {d['device']}; wall time {d['wall_seconds']:.1f} s; peak RSS {_mb(d['peak_rss_bytes'])}"
        f" (predicted before start {_mb(d['memory_estimate']['total_bytes'])}); peak VRAM {_mb(d['peak_vram_bytes'])}",
        f"- stored: {d['bits_per_weight']:.3f} bits per quantized weight over {d['quantized_params']:,} weights; "
        f"weights {_mb(d['weight_bytes'])} (float source {_mb(d['float_weight_bytes'])}); "
        f"folder on disk {_mb(d['size_on_disk_bytes'])}",
    ]
    pred = d["planner_prediction"]
    if pred.get("available"):
        lines.append(f"- planner predicted {_mb(pred['weight_bytes'])} of weights for {pred['precision']} "
                     f"g{pred['group_size']}; real {_mb(d['weight_bytes'])} (ratio {pred['ratio_real_to_predicted']})")
    else:
        lines.append(f"- planner prediction unavailable: {pred.get('reason', 'unknown')}")
    cal = d["calibration"]
    if cal:
        lines.append(f"- calibration: {cal['nsamples']} samples x {cal['seqlen']} tokens from {cal['source']['name']} "
                     f"({cal['source']['split']} split, {cal['source']['fraction']}); size {r['calibration_size']}")
    lines.append(f"- time: {time_line(d)}; phases (s): "
                 + ", ".join(f"{k} {v}" for k, v in d["phases"].items()))
    if d["time_estimate"]:
        terms = ", ".join(f"{k} {v}" for k, v in d["time_estimate"]["terms"].items())
        lines.append(f"- time estimate terms (s): {terms}; {d['time_estimate']['assumes']}")
    if d["heldout"]:
        lines.append(f"- held-out perplexity ({heldout_header(d['heldout'])}): " + "; ".join(heldout_lines(d["heldout"])))
    if d["log_file"]:
        lines.append(f"- library output (GPTQModel, transformers): `{d['log_file']}` in this folder")
    lines += ["", "## Libraries", "", ", ".join(f"{k} {v}" for k, v in d["libraries"].items() if v), "",
              "## Per layer", "", "| layer | seconds | mean loss | worst module |", "|---:|---:|---:|---|"]
    for row in d["layers"]:
        losses = {m: v.get("loss", v.get("rel_weight_error")) for m, v in row["modules"].items()}
        losses = {m: v for m, v in losses.items() if isinstance(v, (int, float))}
        mean = sum(losses.values()) / len(losses) if losses else float("nan")
        worst = max(losses, key=losses.get) if losses else "-"
        lines.append(f"| {row['layer']} | {row['seconds']:.2f} | {mean:.4g} | {worst} |")
    if d["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in d["notes"]]
    return "\n".join(lines) + "\n"


def gib_str(n: int) -> str:
    return f"{n / GIB:.2f} GiB"
