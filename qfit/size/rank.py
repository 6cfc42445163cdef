"""Rankings, Pareto frontier and verdict explanations over the search's options (pure)."""

from __future__ import annotations

from qfit.hardware import Accelerator
from qfit.size.search import Failure, Option, SearchResult
from qfit.workload import Workload


def by_rent(options: list[Option]) -> list[Option]:
    """Priced options, cheapest rent first; ties: fewer GPUs, faster per user, then a stable name order."""
    priced = [o for o in options if o.cost and o.cost.rent_usd_per_hour is not None]
    return sorted(priced, key=lambda o: (round(o.cost.rent_usd_per_hour, 6), o.gpus, -o.decode_tok_s, o.acc.key,
                                         o.precision.name, o.engine.name, o.tp))


def by_tco(options: list[Option]) -> list[Option]:
    priced = [o for o in options if o.cost and o.cost.tco_usd is not None]
    return sorted(priced, key=lambda o: (round(o.cost.tco_usd, 2), o.gpus, -o.decode_tok_s, o.acc.key,
                                         o.precision.name, o.engine.name, o.tp))


def pareto(ranked: list[Option]) -> list[Option]:
    """Options no other beats on all of rent $/h (lower), total throughput and per-user speed (higher).

    `ranked` is cheapest first, so a point is on the frontier iff no earlier frontier point matches or beats it on both
    throughput and per-user speed (an earlier point costs no more)."""
    front: list[Option] = []
    for o in ranked:
        if not any(f.throughput_tok_s >= o.throughput_tok_s and f.decode_tok_s >= o.decode_tok_s for f in front):
            front.append(o)
    return front


def unpriced(options: list[Option], kind: str) -> list[str]:
    """Accelerators with feasible options but no price for that ranking (rent | tco)."""
    if kind == "rent":
        names = {o.acc.short_name for o in options if not (o.cost and o.cost.rent_usd_per_hour is not None)}
    else:
        names = {o.acc.short_name for o in options if not (o.cost and o.cost.tco_usd is not None)}
    return sorted(names)


STAGE = {"memory": 0, "ttft": 1, "speed": 2, "throughput": 2}


def closest_failure(failures: list[Failure], acc_key: str | None = None) -> Failure | None:
    """The attempt that got furthest (memory, then TTFT, then speed/throughput are checked in that order), and among
    those the one nearest to passing (smallest shortfall)."""
    pool = [f for f in failures if acc_key is None or f.acc.key == acc_key]
    if not pool:
        return None
    return min(pool, key=lambda f: (-STAGE[f.constraint], f.shortfall, f.tp, f.precision))


def _rent(acc: Accelerator, book) -> float | None:
    p = book.rent_for(acc) if book else acc.rent
    return p.value if p else None


def explain_cheaper(res: SearchResult, chosen: Option, accelerators: list[Accelerator], book=None) -> list[dict]:
    """For each accelerator whose GPU-hour costs less than the chosen configuration's hour: why it lost.

    Either it failed every shape (binding constraint of its closest attempt and by how much) or its cheapest feasible
    configuration costs more than the chosen one (it needs more GPUs)."""
    target = chosen.cost.rent_usd_per_hour
    cheapest = {}
    for o in by_rent(res.options):
        cheapest.setdefault(o.acc.key, o)
    out = []
    for acc in accelerators:
        price = _rent(acc, book)
        if price is None or price >= target or acc.key == chosen.acc.key:
            continue
        best = cheapest.get(acc.key)
        if best is not None:
            if best.cost.rent_usd_per_hour < target:
                continue  # cannot happen for the cheapest choice; kept for callers that pass another option
            out.append({"accelerator": acc.short_name, "usd_per_gpu_hour": price, "constraint": "cost",
                        "detail": f"feasible from {best.label} at ${best.cost.rent_usd_per_hour:,.2f}/h "
                                  f"({best.cost.rent_usd_per_hour / target:.2f}x the chosen)"})
            continue
        f = closest_failure(res.failures, acc.key)
        if f is None:
            out.append({"accelerator": acc.short_name, "usd_per_gpu_hour": price, "constraint": "n/a",
                        "detail": "no precision x engine pair runs on it (see skipped)"})
            continue
        out.append({"accelerator": acc.short_name, "usd_per_gpu_hour": price, "constraint": f.constraint,
                    "detail": f"{f.precision} ({f.engine}), {f.shape.text}/replica: {f.detail}",
                    "shortfall": round(f.shortfall, 3)})
    return sorted(out, key=lambda d: d["usd_per_gpu_hour"])


def _replicas(f: Failure) -> str:
    return f"{f.tp}-GPU replicas" if f.nodes == 1 else f"replicas of {f.shape.text}"


def _count(f: Failure) -> str:
    name = f.acc.short_name
    return f"{f.tp} x {name}" if f.nodes == 1 else f"{f.nodes} nodes x {f.tp} x {name} (TP{f.tp}xPP{f.nodes})"


def impossible_message(res: SearchResult, w: Workload) -> str:
    """One line: what no configuration meets, and the closest feasible answer where one exists."""
    fails = res.failures
    if not fails:
        return "no accelerator x precision x engine combination could be evaluated: " + (
            "; ".join(res.skipped[:3]) or "nothing to search")
    # The furthest stage any configuration reached is the impossible one: memory -> TTFT -> speed / throughput.
    later = [f for f in fails if f.constraint in {"speed", "throughput"}]
    if later:
        f = closest_failure(later)
        if f.constraint == "speed":
            best = max((x for x in later if x.constraint == "speed"), key=lambda x: x.best)
            return (f"no configuration gives {w.min_tokens_per_s:g} tok/s per user at {w.concurrency} users: best is "
                    f"{best.best:.1f} tok/s with {_replicas(best)} of {best.acc.short_name} at {best.precision} "
                    f"({best.engine}); lower --min-tokens-per-s or --concurrency")
        best = max((x for x in later if x.constraint == "throughput"), key=lambda x: x.best)
        return (f"no configuration within the GPU limit sustains {w.rps:g} req/s: best is {best.best:.2f} req/s on "
                f"{best.acc.short_name} at {best.precision} ({best.engine}); lower --rps or raise --max-gpus")
    ttft = [f for f in fails if f.constraint == "ttft"]
    if ttft:
        best = min(ttft, key=lambda f: f.best)
        return (f"no configuration reaches TTFT <= {w.max_ttft_s:g} s for a {w.prompt:,}-token prompt: best "
                f"achievable is {best.best:.3g} s on {_count(best)} at {best.precision} "
                f"({best.engine}); relax --max-ttft or shorten --input-len")
    f = closest_failure(fails)
    return (f"nothing allowed holds the model for {w.concurrency} users at {w.context:,} tokens: closest is "
            f"{f.acc.short_name} at {f.precision} ({f.engine}) with {f.shape.text}/replica, where {f.detail}; "
            f"try a lower precision, fewer users, a shorter context or larger accelerators")
