"""The opposite question to a plan: with this hardware in hand, which models run, at which precision, with how much
context and how fast? (`qfit plan --gpu A6000` with no `--model`.)

Pure over resolved objects. For each model the precision chosen is the most faithful one that fits at the workload:
the most bits first (16 > 8 > 6 > 5 > 4 > 3), and among formats of equal bits the least quality loss in
profiles/quality.yaml (the table `qfit size` uses; typical, model-dependent). Models that fit nowhere come last with
what they would need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qfit.deployment import Deployment
from qfit.engines import EngineProfile, EngineRegistry
from qfit.errors import QfitError
from qfit.hardware import Accelerator
from qfit.model.params import count_params
from qfit.model.sources import LoadedModel
from qfit.plan import Plan, context_limit, default_context, make_plan
from qfit.precision import Recipe, parse_recipe
from qfit.quality import Quality, QualityTable
from qfit.workload import Workload

# What a survey tries (the quality table orders formats of one bit width). Nothing below 3 bits: 2-bit formats lose
# too much to recommend, and the table has no reviewed figure for them.
CANDIDATES = ("bf16", "fp8", "gptq-int8", "gguf-q8_0", "gguf-q6_k", "gguf-q5_k_m", "awq-int4", "gptq-int4",
              "gguf-q4_k_m", "gguf-q3_k_m", "gptq-int3")
SORTS = ("size", "speed", "quality")


@dataclass
class SurveyRow:
    model: LoadedModel
    plan: Plan             # the chosen precision's plan; for a model that fits nowhere, its most compressed try
    quality: Quality
    rank: int              # position of the chosen precision in the fidelity order (0 = the most faithful tried)
    refused: str | None = None   # why the model cannot serve the request whatever the memory (context too long)

    @property
    def fits(self) -> bool:
        return self.plan.fits and self.refused is None

    @property
    def need(self) -> str:
        """What a model that does not fit would need (its plan's suggestion, or why nothing helps)."""
        return self.refused or self.plan.suggestion or self.plan.reason

    def to_dict(self) -> dict:
        d = {**self.plan.to_dict(), "quality": self.quality.to_dict()}
        if self.refused:
            d.update(fits=False, reason=self.refused)
        return d


def loss_pct(q: Quality) -> float:
    """The table's loss figure: perplexity increase where known, else benchmark points lost; unknown sorts last."""
    if q.ppl_delta_pct is not None:
        return float(q.ppl_delta_pct)
    return 100.0 - q.recovery_pct if q.recovery_pct is not None else math.inf


def fidelity_order(quality: QualityTable, names: tuple[str, ...] = CANDIDATES) -> list[Recipe]:
    recipes = [parse_recipe(n) for n in names]
    return sorted(recipes, key=lambda r: (-r.bits, loss_pct(quality.of(r.name))))


def _runnable(order: list[Recipe], engines: EngineRegistry, engine: str | None,
              acc: Accelerator) -> list[tuple[Recipe, EngineProfile]]:
    out = []
    for recipe in order:
        try:
            out.append((recipe, engines.choose(engine, recipe, acc)))
        except QfitError:
            continue     # no engine (or not the one named) runs this format on this device
    return out


@dataclass(frozen=True)
class Request:
    """What every surveyed model is asked to hold: `context` None = each model at its default (8k, or its maximum
    when shorter); an explicit context a model was not trained for refuses that model."""

    context: int | None = None
    batch: int = 1
    input_tokens: int | None = None
    output_tokens: int | None = None
    gpus: int = 1


def survey_model(model: LoadedModel, acc: Accelerator, runnable: list[tuple[Recipe, EngineProfile]],
                 quality: QualityTable, req: Request) -> SurveyRow:
    limit, context, gpus = context_limit(model), req.context, req.gpus
    w = Workload(min(context or default_context(model), limit), req.batch, req.input_tokens, req.output_tokens)
    if context and context > limit:
        recipe, engine = runnable[-1]
        plan = make_plan(model, acc, recipe, engine, w, gpus=gpus, with_performance=False, suggest=False)
        return SurveyRow(model, plan, quality.of(recipe.name), len(runnable) - 1,
                         refused=f"trained for at most {limit:,} tokens of context, not {context:,}")
    for rank, (recipe, engine) in enumerate(runnable):
        dep = Deployment.build(model, acc, gpus, recipe, engine)
        if dep.fits(w.context, w.batch, w.prompt):
            plan = make_plan(model, acc, recipe, engine, w, gpus=gpus, weights=dep.weights, suggest=False)
            return SurveyRow(model, plan, quality.of(recipe.name), rank)
    recipe, engine = runnable[-1]
    plan = make_plan(model, acc, recipe, engine, w, gpus=gpus, with_performance=False)
    return SurveyRow(model, plan, quality.of(recipe.name), len(runnable) - 1)


def _key(sort: str):
    def key(row: SurveyRow):
        perf, params = row.plan.performance, count_params(row.model.spec).total
        if sort == "speed":
            return (-perf.decode_tokens_per_s, -params)
        if sort == "quality":
            return (row.rank, loss_pct(row.quality), -params)
        return (-params, row.rank)
    return key


def survey(models: list[LoadedModel], acc: Accelerator, engines: EngineRegistry, quality: QualityTable,
           req: Request, *, engine: str | None = None, sort: str = "size") -> list[SurveyRow]:
    """Every model's best fitting precision on `req.gpus` x `acc`, ranked by `sort`; models that fit nowhere last."""
    if sort not in SORTS:
        raise QfitError(f"--sort {sort!r}: choose one of {', '.join(SORTS)}")
    runnable = _runnable(fidelity_order(quality), engines, engine, acc)
    if not runnable:
        raise QfitError(f"no precision qfit surveys runs on {acc.short_name} ({acc.backend})"
                        + (f" under {engine}" if engine else ""))
    rows = [survey_model(m, acc, runnable, quality, req) for m in models]
    fit = sorted((r for r in rows if r.fits), key=_key(sort))
    nowhere = sorted((r for r in rows if not r.fits), key=lambda r: count_params(r.model.spec).total)
    return fit + nowhere


def select(models: list[LoadedModel], *, family: str | None = None, min_params: float | None = None,
           max_params: float | None = None, moe: bool | None = None) -> list[LoadedModel]:
    """Filters of `qfit plan` without --model: a family name prefix ("qwen3.5" takes qwen3.5-*, not qwen3-*), a
    parameter range (total parameters), MoE or dense only."""
    fam = (family or "").strip().lower()
    out = []
    for m in models:
        name, total = m.spec.name.lower(), count_params(m.spec).total
        if fam and not (name == fam or name.startswith(fam + "-")):
            continue
        if (min_params and total < min_params) or (max_params and total > max_params):
            continue
        if moe is not None and m.spec.is_moe != moe:
            continue
        out.append(m)
    return out


@dataclass
class SurveyResult:
    accelerator: Accelerator
    request: Request
    rows: list[SurveyRow]
    considered: int                 # models after the filters, before --top
    detected: str | None = None     # what `--gpu auto` found, and how
    sort: str = "size"

    def to_dict(self) -> list[dict]:
        """The JSON of `qfit plan --gpu X` without --model: a list of plan results in the plan contract."""
        return [r.to_dict() for r in self.rows]
