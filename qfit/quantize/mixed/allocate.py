"""The allocation: pick one width per unit so that total sensitivity is least and total bytes fit the budget.

A multiple-choice knapsack, solved exactly by dynamic programming over Pareto frontiers: after each unit, keep only
the partial allocations that no other beats on both bytes and cost. Bytes are integers (the planner's exact counts),
so "fits" is exact. With one unit per layer and fused group the frontier alone grows too large (a 80-layer model:
minutes), so partial allocations are also dropped when their cost plus a lower bound on the remaining units' cost
(the linear relaxation) exceeds the cost of a known feasible allocation: branch and bound, still exact.
Pure: no torch, no I/O.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from qfit.errors import QfitError

KEEP = 16    # the width meaning "left 16-bit" (Recipe.keep)


@dataclass(frozen=True)
class Option:
    bits: int         # 2/3/4/8 GPTQ, or KEEP
    bytes: int        # exact bytes of every module of the unit, all layers, at this width
    cost: float       # sensitivity: summed Hessian-weighted error (0 for KEEP)


@dataclass(frozen=True)
class Unit:
    """Modules that must share one width (a fused kernel group such as q/k/v), by module key."""

    name: str
    keys: tuple[str, ...]
    options: tuple[Option, ...]


@dataclass(frozen=True)
class Allocation:
    choice: dict[str, Option]     # unit name -> chosen option
    bytes: int                    # fixed + chosen bytes
    cost: float
    budget: int

    def bits_of(self, unit: str) -> int:
        return self.choice[unit].bits


def smallest(units: list[Unit], fixed: int = 0) -> int:
    return fixed + sum(min(o.bytes for o in u.options) for u in units)


def allocate(units: list[Unit], budget: int, fixed: int = 0) -> Allocation:
    """The least-cost choice with fixed + sum(bytes) <= budget. Ties go to fewer bytes. QfitError naming the smallest
    feasible size when nothing fits."""
    if not units:
        raise QfitError("nothing to allocate: the model has no quantizable modules")
    for u in units:
        if not u.options:
            raise QfitError(f"unit {u.name}: no width the kernels can store")
    need = smallest(units, fixed)
    if need > budget:
        raise QfitError(f"budget {budget:,} bytes is below the smallest this model can be stored in: "
                        f"{need:,} bytes ({need / 1e6:,.1f} MB, every module at its lowest width)")
    room = budget - fixed
    bounds = [_Relaxation(units[i:]) for i in range(len(units) + 1)]
    best = bounds[0].integer_cost(room)           # a feasible allocation's cost: nothing costlier can be optimal
    slack = 1e-9 * (abs(best) + 1)                # float sums in another order may differ in the last bits
    # (bytes, cost, back-pointer (option, parent's pointer)): a linked list, so growing an entry costs O(1)
    frontier: list[tuple[int, float, tuple | None]] = [(0, 0.0, None)]
    for i, u in enumerate(units):
        after = bounds[i + 1]
        frontier = _pareto([(b + o.bytes, c + o.cost, (o, node)) for b, c, node in frontier for o in u.options
                            if c + o.cost + after.lower(room - b - o.bytes) <= best + slack])
    b, c, node = min(frontier, key=lambda t: (t[1], t[0]))
    picks: list[Option] = []
    while node is not None:
        o, node = node
        picks.append(o)
    return Allocation({u.name: o for u, o in zip(units, reversed(picks))}, fixed + b, c, budget)


class _Relaxation:
    """The linear relaxation of the knapsack over some units (each unit may sit between two neighbouring points of
    its lower convex hull of (bytes, cost)): its cost at a byte budget is a lower bound on any allocation's
    (Sinha & Zoltners 1979, the multiple-choice knapsack LP); rounded down it is a feasible allocation."""

    def __init__(self, units: list[Unit]):
        self.base_bytes = sum(min(o.bytes for o in u.options) for u in units)
        self.base_cost = 0.0
        steps = []                                # (cost per byte, bytes, cost) of each hull segment
        for u in units:
            hull = _hull(u.options)
            self.base_cost += hull[0][1]
            steps += [((c1 - c0) / (b1 - b0), b1 - b0, c1 - c0) for (b0, c0), (b1, c1) in zip(hull, hull[1:])]
        steps.sort(key=lambda s: s[0])            # steepest saving first; a unit's own segments stay in hull order
        self.slopes = [s[0] for s in steps]
        self.cum_bytes, self.cum_cost = [0], [0.0]
        for _, db, dc in steps:
            self.cum_bytes.append(self.cum_bytes[-1] + db)
            self.cum_cost.append(self.cum_cost[-1] + dc)

    def lower(self, room: int) -> float:
        """Least relaxed cost within `room` bytes (inf when even the lowest widths do not fit)."""
        extra = room - self.base_bytes
        if extra < 0:
            return float("inf")
        k = bisect.bisect_right(self.cum_bytes, extra) - 1
        partial = 0.0 if k >= len(self.slopes) else (extra - self.cum_bytes[k]) * self.slopes[k]
        return self.base_cost + self.cum_cost[k] + partial

    def integer_cost(self, room: int) -> float:
        """Cost of the relaxation's whole segments within `room`: a real allocation (each unit at a hull point)."""
        k = bisect.bisect_right(self.cum_bytes, room - self.base_bytes) - 1
        return self.base_cost + self.cum_cost[k]


def _hull(options: tuple[Option, ...]) -> list[tuple[int, float]]:
    """Lower convex hull of a unit's (bytes, cost) points from its cheapest-in-bytes point, cost falling."""
    pts = sorted({(o.bytes, o.cost) for o in options})
    hull: list[tuple[int, float]] = []
    for b, c in pts:
        if hull and c >= hull[-1][1]:
            continue                              # more bytes, no cheaper: never worth it in the relaxation
        while len(hull) >= 2 and (hull[-1][1] - hull[-2][1]) * (b - hull[-1][0]) >= \
                (c - hull[-1][1]) * (hull[-1][0] - hull[-2][0]):
            hull.pop()                            # the middle point lies on or above the chord
        hull.append((b, c))
    return hull


def _pareto(items):
    """Entries not dominated: sorted by bytes, each strictly cheaper than every smaller one."""
    items.sort(key=lambda t: (t[0], t[1]))
    out, best = [], float("inf")
    for item in items:
        if item[1] < best:
            out.append(item)
            best = item[1]
    return out
