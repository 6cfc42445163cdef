"""`qfit quantize --target-size/--target-bpw/--fit`: budget -> sensitivity -> allocation -> the ordinary writer.

Cheap checks first (budget against the model's smallest and 16-bit sizes, from the headers/config alone); then one
float pass for the sensitivities; then the allocation becomes a Recipe (overrides and keep patterns) that
qfit.quantize.run writes like any other, with OUT/qfit-allocation.json beside it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from qfit.errors import QfitError
from qfit.quantize.job import QuantizeJob
from qfit.quantize.mixed.allocate import KEEP, Allocation, Unit, allocate
from qfit.quantize.mixed.budget import Target, auto_group_size, budget_bytes
from qfit.quantize.mixed.limits import engine_limits
from qfit.quantize.mixed.units import WIDTHS, build_units, to_recipe

ALLOCATION_FILE = "qfit-allocation.json"


def plan_allocation(loaded, target: Target, group_size: int, costs: dict | None, widths: Sequence[int] = WIDTHS
                    ) -> tuple[list[Unit], Allocation, dict]:
    """(units, allocation, how the budget was derived) for a model description and measured costs (layer key ->
    width -> cost): one unit per (layer, fused group); pure."""
    from qfit.model.params import layer_groups

    budget, derived = budget_bytes(loaded, target, group_size, widths)
    units, fixed = build_units(layer_groups(loaded.spec), group_size, costs, widths)
    return units, allocate(units, budget, fixed), derived


def summary(units: list[Unit], alloc: Allocation) -> str:
    """"2-bit x 10, 4-bit x 100, 16-bit x 10": units per chosen width."""
    count = Counter(alloc.choice[u.name].bits for u in units)
    return ", ".join(f"{b}-bit x {n}" for b, n in sorted(count.items()))


def allocation_json(units: list[Unit], alloc: Allocation, recipe, derived: dict, sensitivity, planned: int) -> dict:
    return {
        "budget": derived, "weight_bytes": alloc.bytes, "planner_weight_bytes": planned,
        "total_sensitivity": alloc.cost, "recipe": recipe.to_dict(),
        "units": [{"unit": u.name, "modules": list(u.keys), "bits": alloc.choice[u.name].bits,
                   "kept_16bit": alloc.choice[u.name].bits == KEEP, "bytes": alloc.choice[u.name].bytes,
                   "sensitivity": alloc.choice[u.name].cost,
                   "options": [{"bits": o.bits, "bytes": o.bytes, "sensitivity": o.cost} for o in u.options]}
                  for u in units],
        "sensitivity": sensitivity.to_dict() if sensitivity is not None else None,
    }


def _windows(job: QuantizeJob, model_dir: Path, trust_remote_code: bool):
    from qfit.loading import load_tokenizer
    from qfit.quantize.calib import build_calibration, calibration_text

    return build_calibration(load_tokenizer(model_dir, trust_remote_code=trust_remote_code),
                             calibration_text(job.calib), job.nsamples, job.seqlen)[1]


def _measure(model: str, job: QuantizeJob, group_size: int, say, trust_remote_code: bool):
    from qfit.loading import resolve_model_dir
    from qfit.model.sources import load_model
    from qfit.quantize.job import read_layout
    from qfit.quantize.mixed.sensitivity import measure

    say(f"measuring per-module sensitivity ({job.nsamples} x {job.seqlen} calibration tokens, one float pass)")
    model_dir = resolve_model_dir(model)
    layout = read_layout(model_dir, load_model(str(model_dir)).spec)
    t0 = time.perf_counter()
    sens = measure(model_dir, list(layout.linears), _windows(job, model_dir, trust_remote_code), group_size,
                   trust_remote_code=trust_remote_code)
    sens.seconds["total"] = round(time.perf_counter() - t0, 2)
    return sens


def quantize_mixed(model: str, out: Path, job: QuantizeJob, target: Target, *, device: str = "auto",
                   force: bool = False, progress=None, notify=None, trust_remote_code: bool = False,
                   sensitivity=None):
    """Allocate widths for `target` and write the checkpoint; returns (QuantizeReport, allocation dict).
    `sensitivity`: a Sensitivity measured before for this model, calibration and group size (one pass serves
    several budgets); measured here when None."""
    from qfit.model.params import layer_groups, tensor_groups
    from qfit.model.sources import load_model
    from qfit.precision import weight_bytes
    from qfit.quantize.run import _destination, pick_device
    from qfit.quantize.run import quantize as write

    say = notify or (lambda _line: None)
    job.validate()
    if job.recipe.overrides or job.recipe.keep:
        raise QfitError("--override/--keep choose widths by hand; a budget (--target-size/--target-bpw/--fit) "
                        "chooses them for you: give one or the other")
    _destination(out, force, [model])
    source = load_model(model)
    groups = tensor_groups(source.spec)
    group_size = auto_group_size(groups) if job.group_choice == "auto" else job.recipe.group_size
    limits = engine_limits(target.engine)
    if limits:
        limits.check(group_size, job.recipe.sym, job.recipe.desc_act)
    widths = limits.widths() if limits else WIDTHS
    budget_bytes(source, target, group_size, widths)       # a bad budget fails before any model is loaded
    job = replace(job.for_device(pick_device(device, job.method)), group_choice="given")
    sens = sensitivity or _measure(model, job, group_size, say, trust_remote_code)
    units, alloc, derived = plan_allocation(source, target, group_size, sens.costs, widths)
    if limits:
        derived["engine_limits"] = {"engine": limits.engine, "version": limits.version, "widths": list(widths),
                                    "source": "profiles/quantize/engine_widths.yaml"}
    recipe = to_recipe(units, alloc, group_size)
    planned = weight_bytes(layer_groups(source.spec), recipe).total
    if planned != alloc.bytes:
        raise QfitError(f"internal: the allocation counts {alloc.bytes:,} bytes but its recipe {planned:,}")
    say(f"allocation ({len(units)} units, one per layer and fused group): {summary(units, alloc)} "
        f"-> {alloc.bytes / 1e6:,.1f} MB of {derived['budget_bytes'] / 1e6:,.1f} MB ({ALLOCATION_FILE} lists them)")
    data = allocation_json(units, alloc, recipe, derived, sens, planned)
    report = write(model, out, replace(job, recipe=recipe), device=device, force=force, progress=progress,
                   notify=notify, trust_remote_code=trust_remote_code, extra_json={ALLOCATION_FILE: data})
    return report, data
