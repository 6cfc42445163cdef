"""Pure statistics for `qfit profile`: no torch, no numpy, no I/O, so the maths is unit-testable on hand-computed numbers.

Methods (recorded verbatim in every report under "methods"):
- Perplexity = exp(mean per-token NLL). Standard error by the delta method on the per-token NLL:
  SE(ppl) = ppl * sd(nll) / sqrt(n). Tokens of one text are correlated, so this understates the true SE somewhat;
  it is still the usual figure (llama.cpp's perplexity tool reports the same).
- KL(base || model) per token = sum_v p_base(v) (log p_base(v) - log p_model(v)); mean over tokens, SE = sd / sqrt(n).
- Top-1 agreement = share of tokens where both argmaxes agree; SE = sqrt(p(1-p)/n).
- Multiple-choice accuracy (acc) = argmax of summed continuation log-likelihood; acc_norm divides each choice's
  log-likelihood by its continuation length in UTF-8 bytes (lm-evaluation-harness's definition). SE = sqrt(p(1-p)/n).
- Retained % = 100 * mean(model) / mean(base) over the same items. Interval by the delta method for a ratio of paired
  means: Var(r) ~= (Var(m) - 2 r Cov(m, b) + r^2 Var(b)) / (n * mean(b)^2), 95 % interval r +- 1.96 SE. Pairing matters:
  a model scored against itself gets a zero-width interval, as it should.
- Timing summaries: mean, p50/p90/p99 (linear interpolation between order statistics), sample std (n-1), CV = std/mean.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


@dataclass(frozen=True)
class Estimate:
    """A value with its standard error and the number of observations it rests on."""

    value: float
    se: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Interval:
    value: float
    se: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def _check(values: Sequence[float], what: str) -> None:
    if len(values) == 0:
        raise ValueError(f"{what}: no observations")


def mean(values: Sequence[float]) -> float:
    _check(values, "mean")
    return math.fsum(values) / len(values)


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (n-1); 0 for a single observation (no spread can be measured)."""
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def covariance(xs: Sequence[float], ys: Sequence[float]) -> float:
    if len(xs) != len(ys):
        raise ValueError("covariance: paired series differ in length")
    if len(xs) < 2:
        return 0.0
    mx, my = mean(xs), mean(ys)
    return math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys)) / (len(xs) - 1)


def percentile(values: Sequence[float], q: float) -> float:
    """q in [0, 100]; linear interpolation between closest ranks (numpy's default 'linear' method)."""
    _check(values, "percentile")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# ---------------------------------------------------------------- token-level quality

def perplexity(nlls: Sequence[float]) -> Estimate:
    """exp(mean NLL) with the delta-method SE; nlls are natural-log negative log-likelihoods, one per scored token."""
    _check(nlls, "perplexity")
    m = mean(nlls)
    ppl = math.exp(m)
    return Estimate(ppl, ppl * sample_std(nlls) / math.sqrt(len(nlls)), len(nlls))


def mean_estimate(values: Sequence[float]) -> Estimate:
    _check(values, "mean_estimate")
    return Estimate(mean(values), sample_std(values) / math.sqrt(len(values)), len(values))


def proportion(successes: Sequence[bool | int | float]) -> Estimate:
    """Share of successes with the binomial SE sqrt(p(1-p)/n)."""
    _check(successes, "proportion")
    n = len(successes)
    p = math.fsum(float(s) for s in successes) / n
    return Estimate(p, math.sqrt(max(p * (1 - p), 0.0) / n), n)


def log_softmax(logits: Sequence[float]) -> list[float]:
    top = max(logits)
    lse = top + math.log(math.fsum(math.exp(x - top) for x in logits))
    return [x - lse for x in logits]


def kl_divergence(base_logits: Sequence[float], model_logits: Sequence[float]) -> float:
    """KL(base || model) in nats for one position, from raw logits (reference implementation for the torch path)."""
    if len(base_logits) != len(model_logits):
        raise ValueError("kl_divergence: vocabularies differ in size")
    lp, lq = log_softmax(base_logits), log_softmax(model_logits)
    return math.fsum(math.exp(a) * (a - b) for a, b in zip(lp, lq))


def argmax(values: Sequence[float]) -> int:
    """First index of the maximum (ties go to the lower index, as torch.argmax does on CPU)."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


# ---------------------------------------------------------------- multiple choice

@dataclass(frozen=True)
class ChoiceScores:
    """Log-likelihood of each choice's continuation, and its length in UTF-8 bytes, for one question."""

    loglik: tuple[float, ...]
    nbytes: tuple[int, ...]
    gold: int


def score_item(item: ChoiceScores) -> tuple[bool, bool]:
    """(acc correct, acc_norm correct) for one question."""
    if not 0 <= item.gold < len(item.loglik):
        raise ValueError(f"gold index {item.gold} outside {len(item.loglik)} choices")
    acc = argmax(item.loglik) == item.gold
    norm = [ll / max(nb, 1) for ll, nb in zip(item.loglik, item.nbytes)]
    return acc, argmax(norm) == item.gold


def mc_accuracy(items: Sequence[ChoiceScores]) -> dict:
    """{'acc': Estimate, 'acc_norm': Estimate, 'correct': [...], 'correct_norm': [...]} over the questions."""
    _check(items, "mc_accuracy")
    pairs = [score_item(it) for it in items]
    correct = [a for a, _ in pairs]
    correct_norm = [b for _, b in pairs]
    return {"acc": proportion(correct), "acc_norm": proportion(correct_norm),
            "correct": correct, "correct_norm": correct_norm}


# ---------------------------------------------------------------- retained quality

def retained_ratio(model: Sequence[float], base: Sequence[float]) -> Interval:
    """100 * mean(model) / mean(base) over paired items, with a delta-method 95 % interval (see module docstring)."""
    if len(model) != len(base):
        raise ValueError("retained_ratio: model and baseline were scored on different items")
    _check(model, "retained_ratio")
    n = len(model)
    mm, mb = mean(model), mean(base)
    if mb == 0:
        return Interval(float("nan"), float("nan"), float("nan"), float("nan"), n)
    r = mm / mb
    var = (sample_std(model) ** 2 - 2 * r * covariance(model, base) + r * r * sample_std(base) ** 2) / (n * mb * mb)
    se = math.sqrt(max(var, 0.0))
    return Interval(100 * r, 100 * se, 100 * (r - Z95 * se), 100 * (r + Z95 * se), n)


def ppl_ratio(model_nll: Sequence[float], base_nll: Sequence[float]) -> Interval:
    """PPL(model) / PPL(base) = exp(mean(nll_m - nll_b)) on the same tokens; interval from the paired NLL difference."""
    if len(model_nll) != len(base_nll):
        raise ValueError("ppl_ratio: model and baseline were scored on different tokens")
    diff = [a - b for a, b in zip(model_nll, base_nll)]
    est = mean_estimate(diff)
    return Interval(math.exp(est.value), math.exp(est.value) * est.se,
                    math.exp(est.value - Z95 * est.se), math.exp(est.value + Z95 * est.se), est.n)


# ---------------------------------------------------------------- timing

@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    p50: float
    p90: float
    p99: float
    std: float
    cv: float
    min: float
    max: float

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(values: Sequence[float]) -> Summary:
    _check(values, "summarize")
    m = mean(values)
    sd = sample_std(values)
    return Summary(len(values), m, percentile(values, 50), percentile(values, 90), percentile(values, 99),
                   sd, sd / m if m else float("nan"), min(values), max(values))
