"""The byte budget of a mixed-precision run: --target-size, --target-bpw, or --fit GPU (the weights that leave room
for the KV cache, activations and runtime overhead of a deployment, from the same Deployment object and formulas as
`qfit plan`). Budgets count every weight tensor the planner counts (embeddings and norms included). Pure: no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from qfit.errors import QfitError
from qfit.model.params import tensor_groups
from qfit.model.tensors import LINEAR_ROLES
from qfit.precision import GROUP_SIZES
from qfit.quantize.mixed.allocate import smallest
from qfit.quantize.mixed.units import WIDTHS, build_units

AUTO_GROUPS = (128, 64, 32)       # as qfit.quantize.job.AUTO_GROUPS: largest Marlin size dividing every width


@dataclass(frozen=True)
class Target:
    """What the user asked for; exactly one of size / bpw / gpu is set."""

    size: float | None = None       # bytes
    bpw: float | None = None        # stored bits per weight of the block linears (scales, zeros, g_idx included)
    gpu: str | None = None
    gpus: int = 1
    context: int | None = None
    batch: int = 1
    engine: str | None = None

    @classmethod
    def from_flags(cls, *, target_size: str | None = None, target_bpw: str | float | None = None,
                   fit: str | None = None, gpus: int = 1, context: str | None = None, batch: int = 1,
                   engine: str | None = None) -> Target | None:
        from qfit.units import parse_bytes, parse_float, parse_tokens

        given = [f for f, v in (("--target-size", target_size), ("--target-bpw", target_bpw), ("--fit", fit))
                 if v is not None]
        # --engine also limits the widths (profiles/quantize/engine_widths.yaml), so it goes with any budget
        deploy = (["--context"] if context is not None else []) + \
            (["--gpus"] if gpus != 1 else []) + (["--batch"] if batch != 1 else [])
        if len(given) > 1:
            raise QfitError(f"{' and '.join(given)}: give one budget")
        if not given:
            if deploy:
                raise QfitError(f"{', '.join(deploy)}: deployment flags of --fit GPU; add --fit")
            if engine is not None:
                raise QfitError("--engine limits the widths of a mixed-precision run; add --fit GPU, --target-size "
                                "or --target-bpw")
            return None
        if deploy and not fit:
            raise QfitError(f"{', '.join(deploy)}: deployment flags of --fit GPU, not of {given[0]}")
        if not 1 <= gpus <= 64 or not 1 <= batch <= 65536:
            raise QfitError("--gpus must be between 1 and 64 and --batch between 1 and 65,536")
        bpw = None if target_bpw is None else parse_float(str(target_bpw), "--target-bpw", maximum=16)
        return cls(size=None if target_size is None else parse_bytes(target_size), bpw=bpw, gpu=fit, gpus=gpus,
                   context=None if context is None else parse_tokens(context), batch=batch, engine=engine)

    def describe(self) -> str:
        if self.size is not None:
            return f"--target-size {self.size / 1e6:,.1f} MB"
        if self.bpw is not None:
            return f"--target-bpw {self.bpw:g}"
        return (f"--fit {self.gpus} x {self.gpu}, context {self.context or 'model default'}, batch {self.batch}"
                + (f", {self.engine}" if self.engine else ""))


def auto_group_size(groups) -> int:
    widths = {g.cols for g in groups if g.role in LINEAR_ROLES}
    return next((g for g in AUTO_GROUPS if all(w % g == 0 for w in widths)), -1)


def weight_room(dep, w) -> tuple[int, float]:
    """(most weight bytes the deployment holds at the workload, per-GPU bytes of everything else). Per-GPU memory is
    (weights + activations + overhead) / gpus + KV per GPU (qfit.memory.MemoryBreakdown): linear in the weights."""
    mem = dep.memory(w.context, w.batch, w.prompt)
    other = mem.per_gpu - mem.weights / dep.gpus
    return math.floor((dep.budget - other) * dep.gpus), other


def mixed_suggestion(dep, w) -> str | None:
    """For `qfit plan`: when uniform GPTQ 4-bit does not fit but every module at 2 bits would, the bits per weight
    (quantized linears, scales included) a mixed allocation can spend, and the command that writes it. None else.
    Below 4 bits/weight a mix needs 2/3-bit modules, which vLLM and SGLang do not load
    (profiles/quantize/engine_widths.yaml): the suggestion then says so and leaves --engine out of the command."""
    from qfit.precision import gptq_recipe, weight_bytes
    from qfit.quantize.mixed.limits import engine_limits

    if dep.tp_problem or dep.recipe.family == "gguf":
        return None
    groups = tensor_groups(dep.model.spec)
    gs = auto_group_size(groups)
    room, _ = weight_room(dep, w)
    units, fixed = build_units(groups, gs)
    if not smallest(units, fixed) <= room < weight_bytes(groups, gptq_recipe(4, gs)).total:
        return None
    params = sum(g.params for g in groups if g.role in LINEAR_ROLES)
    bpw = math.floor((room - fixed) * 8 / params * 10) / 10      # rounded down: the budget is a ceiling
    flags = f"--fit {dep.acc.key}" + (f" --gpus {dep.gpus}" if dep.gpus > 1 else "") + \
        f" --context {w.context} --batch {w.batch}"
    limits = engine_limits(dep.engine.name)
    if limits and smallest(build_units(groups, gs, widths=limits.widths())[0], fixed) > room:
        return (f"mixed GPTQ up to {bpw:.1f} bits/weight: qfit quantize MODEL OUT {flags} (2/3-bit modules: "
                f"GPTQModel loads them, {limits.engine} {limits.version.split()[1]} does not)")
    return f"mixed GPTQ up to {bpw:.1f} bits/weight: qfit quantize MODEL OUT {flags} --engine {dep.engine.name}"


def fit_bytes(loaded, target: Target, group_size: int) -> tuple[int, dict]:
    """Most weight bytes that still fit the deployment: per-GPU memory is (weights + activations + overhead) / gpus
    + KV per GPU (qfit.memory.MemoryBreakdown), linear in the weights, so the room left by everything else at the
    planned context and batch, times the GPU count, is the weights' budget."""
    from qfit import resolve
    from qfit.api import _workload
    from qfit.deployment import Deployment
    from qfit.precision import gptq_recipe

    acc, recipe = resolve.accelerator(target.gpu), gptq_recipe(4, group_size)
    engine = resolve.engines().choose(target.engine, recipe, acc)
    w = _workload(loaded, target.context, target.batch, None, None)
    dep = Deployment.build(loaded, acc, target.gpus, recipe, engine)
    if dep.tp_problem:
        raise QfitError(f"--fit: {dep.tp_problem}")
    room, other = weight_room(dep, w)
    return room, {"accelerator": acc.name, "gpus": target.gpus, "engine": engine.name, "context": w.context,
                  "batch": w.batch, "budget_per_gpu_bytes": dep.budget, "other_per_gpu_bytes": other}


def budget_bytes(loaded, target: Target, group_size: int, widths: Sequence[int] = WIDTHS) -> tuple[int, dict]:
    """(weight-byte budget, how it was derived), checked against what the model can be stored in: at least every
    module at its lowest width, below every module at 16 bits (that would need no quantization)."""
    groups = tensor_groups(loaded.spec)
    if group_size not in GROUP_SIZES["gptq"]:
        raise QfitError(f"--group-size {group_size} is not a GPTQ group size")
    derived: dict = {"target": target.describe()}
    units, fixed = build_units(groups, group_size, widths=widths)
    if target.size is not None:
        budget = math.floor(target.size)
    elif target.bpw is not None:
        # bits per weight as GPTQ reports it: over the linears it quantizes; embeddings/norms stay as stored
        params = sum(g.params for g in groups if g.role in LINEAR_ROLES)
        budget = fixed + math.floor(target.bpw * params / 8)
        derived["linear_params"] = params
    else:
        budget, derived["deployment"] = fit_bytes(loaded, target, group_size)
    low, high = smallest(units, fixed), fixed + sum(max(o.bytes for o in u.options) for u in units)
    derived.update(budget_bytes=budget, smallest_bytes=low, float16_bytes=high)
    if budget < low:
        raise QfitError(f"{target.describe()} allows {_mb(budget)} of weights; the smallest this model can be "
                        f"stored in is {_mb(low)} (every module at {min(widths)} bits, embeddings and norms 16-bit"
                        + (f"; {target.engine} loads {', '.join(map(str, widths[:-1]))}-bit GPTQ only)"
                           if target.engine and min(widths) > 2 else ")"))
    if budget >= high:
        raise QfitError(f"{target.describe()} allows {_mb(budget)} of weights, at least the 16-bit model "
                        f"({_mb(high)}): nothing needs quantizing")
    return budget, derived


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB ({int(n):,} bytes)"
