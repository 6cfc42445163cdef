"""What the machine was doing while `qfit profile` timed a model: load average, CPU steal, other processes' load.

`snapshot()` reads the clock, this process's CPU time (os.times: every thread), /proc/stat (Linux) and the load
average; `conditions(before, after, ...)` turns two snapshots into figures, purely:
- other processes' load in cores = (busy CPU time of the whole machine - this process's CPU time) / wall time, where
  busy = user + nice + system + irq + softirq jiffies (/proc/stat `cpu` line; idle, iowait and steal excluded);
- steal % = steal jiffies / all jiffies over the interval (time the hypervisor gave other guests);
- free cores = logical CPUs - other processes' load; the run is over-subscribed when its threads exceed them.
Without /proc/stat (macOS) these read None and only the load average is recorded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

# /proc/stat `cpu` fields: user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
_BUSY = (0, 1, 2, 5, 6)
_STEAL = 7


@dataclass(frozen=True)
class Snapshot:
    wall_s: float                          # time.monotonic()
    own_cpu_s: float                       # this process's user + system CPU time, all threads
    busy_s: float | None                   # the machine's busy CPU time since boot (all CPUs), /proc/stat
    steal_s: float | None
    total_s: float | None                  # every jiffy of every CPU (idle included)
    load_avg: tuple[float, float, float] | None


def parse_proc_stat(text: str, ticks_per_s: float) -> tuple[float, float, float] | None:
    """Pure: (busy, steal, total) seconds summed over all CPUs from /proc/stat's aggregate `cpu` line."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                ticks = [int(v) for v in parts[1:]]
            except ValueError:
                return None
            ticks += [0] * (8 - len(ticks))
            busy = sum(ticks[i] for i in _BUSY)
            total = sum(ticks[:8])     # guest time is already counted in user
            return busy / ticks_per_s, ticks[_STEAL] / ticks_per_s, total / ticks_per_s
    return None


def snapshot(proc_stat: Path = Path("/proc/stat")) -> Snapshot:
    times = os.times()
    try:
        stat = parse_proc_stat(proc_stat.read_text(), float(os.sysconf("SC_CLK_TCK")))
    except (OSError, ValueError, AttributeError):
        stat = None
    try:
        load = tuple(round(x, 2) for x in os.getloadavg())
    except (OSError, AttributeError):
        load = None
    busy, steal, total = stat or (None, None, None)
    return Snapshot(time.monotonic(), times.user + times.system, busy, steal, total, load)


def conditions(before: Snapshot, after: Snapshot, logical_cpus: int, threads: int | None) -> dict:
    """Pure: the machine over the interval between two snapshots (figures rounded for the report)."""
    wall = max(after.wall_s - before.wall_s, 1e-9)
    out: dict = {"wall_s": round(wall, 2), "logical_cpus": logical_cpus, "threads": threads,
                 "load_avg_before": list(before.load_avg) if before.load_avg else None,
                 "load_avg_after": list(after.load_avg) if after.load_avg else None,
                 "own_cpu_cores": round((after.own_cpu_s - before.own_cpu_s) / wall, 2),
                 "other_load_cores": None, "free_cores": None, "steal_pct": None,
                 "how": "/proc/stat busy time minus this process's CPU time over the speed phase, per wall second"}
    if None in (before.busy_s, after.busy_s, before.total_s, after.total_s):
        out["how"] = "no /proc/stat: other processes' load and steal not measured"
        return out
    other = max(0.0, (after.busy_s - before.busy_s) - (after.own_cpu_s - before.own_cpu_s)) / wall
    total = after.total_s - before.total_s
    out["other_load_cores"] = round(other, 2)
    out["free_cores"] = round(max(0.0, logical_cpus - other), 2)
    out["steal_pct"] = round(100 * (after.steal_s - before.steal_s) / total, 2) if total > 0 else 0.0
    return out
