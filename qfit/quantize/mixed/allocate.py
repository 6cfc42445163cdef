"""The allocation: pick one width per unit so that total sensitivity is least and total bytes fit the budget.

A multiple-choice knapsack, solved exactly by dynamic programming over Pareto frontiers: after each unit, keep only
the partial allocations that no other beats on both bytes and cost. Bytes are integers (the planner's exact counts),
so "fits" is exact; the frontier stays small because costs fall steeply with bytes (per-layer units of a 30-layer
model: 120 units, a few thousand frontier entries, well under a second). Pure: no torch, no I/O.
"""

from __future__ import annotations

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
    # tail[i]: the least bytes units i.. still need, so a partial allocation that leaves them no room is dropped early
    tail = [0] * (len(units) + 1)
    for i in range(len(units) - 1, -1, -1):
        tail[i] = tail[i + 1] + min(o.bytes for o in units[i].options)
    room = budget - fixed
    # (bytes, cost, back-pointer (option, parent's pointer)): a linked list, so growing an entry costs O(1)
    frontier: list[tuple[int, float, tuple | None]] = [(0, 0.0, None)]
    for i, u in enumerate(units):
        limit = room - tail[i + 1]
        frontier = _pareto([(b + o.bytes, c + o.cost, (o, node)) for b, c, node in frontier for o in u.options
                            if b + o.bytes <= limit])
    b, c, node = min(frontier, key=lambda t: (t[1], t[0]))
    picks: list[Option] = []
    while node is not None:
        o, node = node
        picks.append(o)
    return Allocation({u.name: o for u, o in zip(units, reversed(picks))}, fixed + b, c, budget)


def _pareto(items):
    """Entries not dominated: sorted by bytes, each strictly cheaper than every smaller one."""
    items.sort(key=lambda t: (t[0], t[1]))
    out, best = [], float("inf")
    for item in items:
        if item[1] < best:
            out.append(item)
            best = item[1]
    return out
