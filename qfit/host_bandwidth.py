"""The host's memory bandwidth, measured until stable and cached with its own quality (qfit/host.py uses it).

A probe times a single-threaded numpy copy (read + write bytes counted) after one untimed copy that touches the pages,
and repeats until the last `agree_runs` runs agree within `agree_pct` % of their median, or `max_runs` runs were
timed. The figure is the median of that last window; its spread (max - min) / median is recorded with every sample,
the date and the load average before and after. A probe is flagged when it never became stable or when the machine
was loaded (load average per CPU above `max_load_per_cpu`): other work shares the memory bus, and contention only
lowers the figure. Parameters and their basis: profiles/planner/measurement.yaml (`host_bandwidth`).

Cache policy (host.json in qfit's cache, keyed by CPU model): a probe's entry is re-measured at its first use when it
is older than `max_age_days`, when it is flagged and older than `recheck_flagged_hours`, or when it predates this
record (no spread or date-time: measured once, under whatever load). A figure the user recorded (host.record_bandwidth,
e.g. from STREAM) is theirs: kept until they record another. The stability logic and the cache policy are
pure functions over injected samples and times, so they are tested without timing anything.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qfit.atomic import write_json
from qfit.paths import cache_dir, profiles_dir
from qfit.yamlcache import load_records

HOW = "measured: single-threaded numpy copy (a lower bound on a many-channel server), repeated until stable"


@dataclass(frozen=True)
class ProbeParams:
    mib: int = 512
    agree_runs: int = 3
    agree_pct: float = 10.0
    max_runs: int = 15
    max_load_per_cpu: float = 0.5
    max_age_days: float = 30.0
    recheck_flagged_hours: float = 1.0


def probe_params() -> ProbeParams:
    """profiles/planner/measurement.yaml `host_bandwidth` (the *_basis texts stay in the file)."""
    raw = load_records(profiles_dir() / "planner")["measurement"]["host_bandwidth"]
    return ProbeParams(**{k: type(getattr(ProbeParams, k))(raw[k]) for k in ProbeParams.__dataclass_fields__})


def spread_pct(values: list[float]) -> float:
    """(max - min) / median of the values, in %."""
    mid = statistics.median(values)
    return 100.0 * (max(values) - min(values)) / mid if mid > 0 else float("inf")


def stable_window(samples: list[float], agree_runs: int, agree_pct: float) -> list[float] | None:
    """Pure: the last `agree_runs` samples when they agree within `agree_pct` % of their median, else None."""
    if agree_runs < 1 or len(samples) < agree_runs:
        return None
    window = samples[-agree_runs:]
    return window if spread_pct(window) <= agree_pct else None


@dataclass
class Probe:
    gbps: float
    samples_gbps: list[float]
    spread_pct: float
    stable: bool
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def probe(sample: Callable[[], float], params: ProbeParams) -> Probe:
    """Call `sample()` (one timed run, GB/s) until the last runs agree or the cap is reached. Pure but for `sample`."""
    samples: list[float] = []
    window = None
    while window is None and len(samples) < params.max_runs:
        samples.append(float(sample()))
        window = stable_window(samples, params.agree_runs, params.agree_pct)
    last = window or samples[-min(params.agree_runs, len(samples)):]
    unstable = f"unstable: no {params.agree_runs} consecutive runs within {params.agree_pct:g} % in {len(samples)} runs"
    flags = [] if window else [unstable]
    return Probe(round(statistics.median(last), 3), [round(s, 3) for s in samples], round(spread_pct(last), 2),
                 window is not None, flags)


def load_flags(load_before: float | None, logical_cpus: int, params: ProbeParams) -> list[str]:
    """Pure: the machine was busy when the probe started."""
    if load_before is None or logical_cpus < 1 or load_before / logical_cpus <= params.max_load_per_cpu:
        return []
    return [f"loaded: load average {load_before:.2f} on {logical_cpus} CPUs (> {params.max_load_per_cpu:g} per CPU)"]


def needs_measuring(entry: dict | None, now: _dt.datetime, params: ProbeParams) -> str | None:
    """Pure: why a cached entry must be re-measured now (None: use it)."""
    if not isinstance(entry, dict) or not entry.get("gbps"):
        return "no measurement"
    if entry.get("recorded") is True:      # the user's own figure (host.record_bandwidth): theirs to replace
        return None
    try:
        taken = _dt.datetime.fromisoformat(str(entry["measured_at"]))
    except (KeyError, ValueError):
        return "measured by an older qfit without a stability check"
    if taken.tzinfo is None:
        taken = taken.replace(tzinfo=_dt.timezone.utc)
    age_h = (now - taken).total_seconds() / 3600
    if age_h > params.max_age_days * 24:
        return f"older than {params.max_age_days:g} days"
    if entry.get("flags") and age_h > params.recheck_flagged_hours:
        return f"flagged ({'; '.join(entry['flags'])}) and older than {params.recheck_flagged_hours:g} h"
    return None


def describe(entry: dict) -> str:
    """The source line a plan shows for a cached figure."""
    if entry.get("recorded") is True:
        return f"measured on this machine and recorded by the user ({entry.get('how')}, {entry.get('date')})"
    if "measured_at" not in entry:
        return f"measured on this machine by an older qfit ({entry.get('how', 'recorded')}, {entry.get('date')})"
    quality = ("FLAGGED: " + "; ".join(entry["flags"])) if entry.get("flags") else "stable"
    load = entry.get("load_avg_before")
    return (f"measured on this machine {entry['measured_at'][:16]} ({entry.get('how', 'recorded')}; median of the last "
            f"runs, spread {entry.get('spread_pct')} % over {len(entry.get('samples_gbps') or [])} runs, load average "
            f"{load if load is not None else 'n/a'} before; {quality})")


def numpy_copy_sampler(mib: int) -> Callable[[], float]:
    """One untimed copy now (page faults), then each call times one copy and returns GB/s."""
    import numpy as np

    src = np.ones(mib * 2**20 // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)

    def sample() -> float:
        t = time.perf_counter()
        np.copyto(dst, src)
        return 2 * src.nbytes / (time.perf_counter() - t) / 1e9
    return sample


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def measure_here(params: ProbeParams, sample: Callable[[], float] | None = None) -> dict:
    """Probe in this process; the cache entry (figure, samples, spread, flags, date-time, load average before/after)."""
    before, cpus = _loadavg(), os.cpu_count() or 1
    result = probe(sample or numpy_copy_sampler(params.mib), params)
    return {"gbps": result.gbps, "how": HOW, "measured_at": now().isoformat(timespec="seconds"),
            "date": now().strftime("%Y-%m-%d"), "samples_gbps": result.samples_gbps, "spread_pct": result.spread_pct,
            "stable": result.stable, "flags": result.flags + load_flags(before, cpus, params),
            "load_avg_before": before, "load_avg_after": _loadavg(), "logical_cpus": cpus}


def measure(params: ProbeParams | None = None) -> dict:
    """Probe in a child process: its two arrays (2 x `mib` MiB) must not become the peak memory of the process that
    asked (`qfit profile` reports its own peak RSS). In-process when no child can be started."""
    import subprocess
    import sys

    params = params or probe_params()
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    try:
        out = subprocess.run([sys.executable, "-m", "qfit.host_bandwidth", json.dumps(asdict(params))], env=env,
                             capture_output=True, text=True, timeout=300, check=True)
        entry = json.loads(out.stdout.strip().splitlines()[-1])
        if isinstance(entry, dict) and entry.get("gbps"):
            return entry
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    return measure_here(params)


def now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _cache(cache: Path | None) -> Path:
    return cache or cache_dir("host.json")


def read_cache(cache: Path | None = None) -> dict:
    try:
        data = json.loads(_cache(cache).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def store(model: str, entry: dict, cache: Path | None = None) -> None:
    """Store one CPU model's entry (others kept; atomic write)."""
    data = read_cache(cache)
    data[model] = entry
    write_json(_cache(cache), data, mkdir=True, indent=1)


def cached_entry(model: str, cache: Path | None = None) -> dict | None:
    entry = read_cache(cache).get(model)
    return entry if isinstance(entry, dict) and entry.get("gbps") else None


if __name__ == "__main__":   # the child `measure` starts: parameters in argv, the entry as one JSON line on stdout
    import sys

    print(json.dumps(measure_here(ProbeParams(**json.loads(sys.argv[1])))))
