"""Is a speed measurement trustworthy? `assess` flags a profile's speed rows against the thresholds of
profiles/planner/measurement.yaml (`speed`), each flag naming the figure, the threshold and its basis:
- CV of tokens/s across trials above `max_cv` in any prefill or decode row;
- CPU steal above `max_steal_pct` over the speed phase;
- over-subscription on a CPU device: threads > free cores + `oversubscription_slack_cores`;
- fewer than `min_trials` trials (no spread can be measured).
The verdict travels in profile.json (`speed.quality`); `qfit calibrate` refuses flagged or unassessed results unless
told otherwise (`verdict`). Pure functions over dicts, no I/O but `thresholds()`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from qfit.paths import profiles_dir
from qfit.yamlcache import load_records


@dataclass(frozen=True)
class Thresholds:
    max_cv: float = 0.15
    max_steal_pct: float = 5.0
    oversubscription_slack_cores: float = 0.25
    min_trials: int = 2

    def to_dict(self) -> dict:
        return asdict(self) | {"source": "profiles/planner/measurement.yaml (speed)"}


def thresholds() -> Thresholds:
    raw = load_records(profiles_dir() / "planner")["measurement"]["speed"]
    return Thresholds(float(raw["max_cv"]), float(raw["max_steal_pct"]), float(raw["oversubscription_slack_cores"]),
                      int(raw["min_trials"]))


def _rows(speed: dict) -> list[tuple[str, float]]:
    """(row name, CV of its tokens/s across trials) for every measured row."""
    out = [(f"prefill {r['input_len']} tokens", r["tokens_per_s"]["cv"]) for r in speed.get("prefill", [])]
    return out + [(f"decode batch {r['batch']}", r["tokens_per_s_per_seq"]["cv"]) for r in speed.get("decode", [])]


def assess(speed: dict, cond: dict, device_kind: str, limits: Thresholds) -> dict:
    """Pure: {"reliable", "flags", "max_cv", "worst_row", "thresholds"} for one profile's speed section."""
    flags = []
    rows = [(name, cv) for name, cv in _rows(speed) if not math.isnan(cv)]   # NaN (zero mean) cannot be judged
    worst = max(rows, key=lambda r: r[1]) if rows else (None, None)
    if worst[1] is not None and worst[1] > limits.max_cv:
        flags.append(f"{worst[0]}: CV {100 * worst[1]:.0f} % across trials > {100 * limits.max_cv:.0f} %")
    trials = (speed.get("protocol") or {}).get("trials", 0)
    if trials < limits.min_trials:
        flags.append(f"{trials} trial(s): no spread measured (at least {limits.min_trials} needed)")
    steal = cond.get("steal_pct")
    if steal is not None and steal > limits.max_steal_pct:
        flags.append(f"CPU steal {steal:.1f} % > {limits.max_steal_pct:g} %")
    threads, free = cond.get("threads"), cond.get("free_cores")
    if device_kind == "cpu" and threads and free is not None and threads > free + limits.oversubscription_slack_cores:
        flags.append(f"over-subscribed: {threads} threads but {free:.1f} of {cond.get('logical_cpus')} cores free "
                     f"(other processes used {cond.get('other_load_cores'):.1f})")
    return {"reliable": not flags, "flags": flags, "max_cv": worst[1], "worst_row": worst[0],
            "thresholds": limits.to_dict()}


def verdict(result: dict) -> tuple[bool, str]:
    """(trusted, why not) for a profile result: flagged and pre-assessment results are not trusted."""
    speed = result.get("speed") if isinstance(result.get("speed"), dict) else {}
    quality = speed.get("quality")
    if not isinstance(quality, dict) or not isinstance(quality.get("reliable"), bool):
        return False, "its speed was measured without a quality assessment (a qfit older than this check)"
    if quality["reliable"]:
        return True, ""
    flags = [str(f) for f in quality.get("flags") or []] or ["flagged"]
    return False, "flagged unreliable: " + "; ".join(flags)
