"""Rendering of a SizeResult: rich tables, CSV (every feasible configuration) and the cost/throughput plot."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from qfit.atomic import refuse_existing, write_with
from qfit.errors import QfitError
from qfit.memory import GIB
from qfit.units import fmt_count, fmt_tokens

CSV_COLUMNS = ("accelerator", "gpus", "replicas", "gpus_per_replica", "nodes_per_replica", "precision", "engine", "batch_per_replica",
               "max_batch_per_replica", "memory_per_gpu_gib", "decode_tokens_per_s_per_user", "ttft_s",
               "throughput_tokens_per_s", "capacity_rps", "rent_usd_per_hour", "usd_per_million_output_tokens",
               "tco_usd", "power_kw", "rack_units", "rent_price_date", "quality")


def _money(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"${x:,.{digits}f}"


def csv_text(result) -> str:
    """All feasible configurations, cheapest rent first (unpriced last), one row each."""
    from qfit.size.rank import by_rent

    ranked = by_rent(result.found.options)
    rest = [o for o in result.found.options if o not in ranked]
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(CSV_COLUMNS)
    for o in ranked + sorted(rest, key=lambda o: (o.gpus, o.acc.key, o.precision.name)):
        c = o.cost
        out.writerow([o.acc.name, o.gpus, o.replicas, o.shape.gpus, o.nodes, o.precision.name, o.engine.name, o.batch, o.max_batch,
                      f"{o.per_gpu_bytes / GIB:.2f}", f"{o.decode_tok_s:.2f}", f"{o.ttft_s:.4f}",
                      f"{o.throughput_tok_s:.1f}", "" if o.capacity_rps is None else f"{o.capacity_rps:.3f}",
                      "" if c.rent_usd_per_hour is None else f"{c.rent_usd_per_hour:.4f}",
                      "" if c.usd_per_million_output_tokens is None else f"{c.usd_per_million_output_tokens:.4f}",
                      "" if c.tco_usd is None else f"{c.tco_usd:.0f}", "" if c.power_kw is None else f"{c.power_kw:.3f}",
                      "" if c.rack_units is None else f"{c.rack_units:g}", c.rent_price.date if c.rent_price else "",
                      o.quality.summary])
    return buf.getvalue()


def _columns(kind: str):
    from qfit.tables import Col

    money = ([Col("$/h"), Col("$/M tok", drop=4)] if kind == "rent" else [Col("TCO"), Col("TCO $/h", drop=4)])
    return [Col("accelerator", "left"), Col("GPUs", drop=6), Col("repl x GPU", short="RxG"), Col("precision", "left"),
            Col("engine", "left", drop=5), Col("users/repl", drop=3, short="users"), Col("GiB/GPU", drop=2),
            Col("tok/s/user"), Col("TTFT s", drop=1), Col("total tok/s", short="tok/s")] + money + [
            Col("kW", drop=7), Col("RU", drop=8)]


def _row(o, kind: str) -> list[str]:
    c = o.cost
    money = ([_money(c.rent_usd_per_hour), _money(c.usd_per_million_output_tokens, 3)] if kind == "rent"
             else [_money(c.tco_usd, 0), _money(c.tco_usd_per_hour)])
    band = (o.perf.error_band or {}).get("decode_pct") if o.perf is not None else None
    speed = f"{o.decode_tok_s:,.1f}" + (f" ±{band:.0f}%" if band else "")
    return [o.acc.short_name, str(o.gpus), o.layout, o.precision.name, o.engine.name, f"{o.batch}/{o.max_batch}",
            f"{o.per_gpu_bytes / GIB:,.1f}", speed, f"{o.ttft_s:.3g}", f"{o.throughput_tok_s:,.0f}", *money,
            "-" if c.power_kw is None else f"{c.power_kw:.2f}", "-" if c.rack_units is None else f"{c.rack_units:g}"]


LEGEND = ("repl x GPU: replicas x GPUs each (tensor parallel); 1x(2x8): one replica over 2 nodes of 8 GPUs (tensor "
          "parallel within a node, a pipeline stage per node); users/repl: users a replica serves / the most its "
          "memory holds at the context; GiB/GPU: memory per GPU; tok/s/user: decode per user at that load (error "
          "band); TTFT: one prompt on an idle replica; $/M tok: rent per million output tokens at full load; kW: "
          "TDP x GPUs; RU: rack units (- where the device profile has none)")


def _print_options(con, title: str, options: list, kind: str, wide: bool) -> None:
    from qfit.tables import print_table

    print_table(con, _columns(kind), [_row(o, kind) for o in options], wide=wide, title=title)


def _workload_line(r) -> str:
    w = r.workload
    parts = [f"{w.concurrency} users at {fmt_tokens(w.context)} context"]
    if w.rps:
        parts.append(f"{w.rps:g} req/s of {w.input_tokens:,} in / {w.output_tokens:,} out tokens")
    if w.min_tokens_per_s:
        parts.append(f">= {w.min_tokens_per_s:g} tok/s per user")
    if w.max_ttft_s:
        parts.append(f"TTFT <= {w.max_ttft_s:g} s")
    return ", ".join(parts)


def print_size(r, top: int = 10, wide: bool = False) -> None:
    from qfit.tables import console as make_console

    console = make_console(wide=wide)
    spec = r.model.spec
    console.print(f"[bold]{spec.name}[/] ({fmt_count(r.params.total)} params) — {_workload_line(r)}")
    s = r.seconds
    nodes = f" x nodes 1-{r.max_nodes}" if r.max_nodes > 1 else ""
    console.print(f"[dim]searched {len(r.accelerators)} accelerators x {len(r.precisions)} precisions x TP 1-"
                  f"{r.max_gpus_per_node}{nodes} x replicas (<= {r.max_total_gpus} GPUs): {r.found.evaluated} replica shapes, "
                  f"{len(r.found.options)} feasible, in {s['search_wall']:.2f} s wall / {s['search_cpu']:.2f} s CPU[/]")
    if r.by_rent:
        _print_options(console, f"Cheapest to rent (top {min(top, len(r.by_rent))} of {len(r.by_rent)} priced)",
                       r.by_rent[:top], "rent", wide)
    if r.by_tco:
        _print_options(console, f"Cheapest to buy: TCO over {r.costs.months} months at "
                       f"${r.costs.power_usd_per_kwh:g}/kWh (top {min(top, len(r.by_tco))})", r.by_tco[:top], "tco",
                       wide)
    if r.frontier:
        _print_options(console, "Pareto frontier over rent $/h, total tok/s and tok/s per user: no other option is "
                       "at least as good on all three", r.frontier, "rent", wide)
    if r.by_rent or r.by_tco:
        console.print(f"[dim]{LEGEND}[/]")
    _print_verdict(console, r)


def _print_verdict(console, r) -> None:
    from rich.markup import escape

    o, w = r.chosen, r.workload
    h = o.headroom(w)
    how = (f"${o.cost.rent_usd_per_hour:,.2f}/h, {_money(o.cost.usd_per_million_output_tokens, 3)} per M output tokens"
           if o.cost.rent_usd_per_hour is not None else "no rental price")
    rp = o.cost.rent_price
    console.print(f"[green bold]CHOSEN[/] {escape(o.label)}: {how}" + (f" (price {rp.date}, {escape(rp.source)})" if rp else ""))
    parts = [f"memory {h['memory_per_gpu_gib']:.1f} GiB/GPU free ({h['memory_pct']:.0f}%), holds {h['max_concurrency']} users"]
    if "speed_x" in h:
        parts.append(f"per-user speed {o.decode_tok_s:.1f} tok/s = {h['speed_x']:.2f}x the floor")
    if "ttft_x" in h:
        parts.append(f"TTFT {o.ttft_s:.3g} s = {h['ttft_x']:.2f}x under the limit")
    if "throughput_x" in h:
        parts.append(f"capacity {o.capacity_rps:.2f} req/s = {h['throughput_x']:.2f}x the load")
    console.print("  headroom: " + "; ".join(parts))
    console.print(f"  accuracy ({o.precision.name}): {escape(o.quality.label)} — typical, model-dependent; "
                  f"{escape(o.quality.source)}")
    if r.cheaper_failed:
        console.print("[bold]Why cheaper accelerators lost[/] (per-GPU rent below the chosen configuration's hour):")
        for d in r.cheaper_failed[:12]:
            console.print(f"  {escape(d['accelerator'])} (${d['usd_per_gpu_hour']:.2f}/GPU-h) "
                          f"{escape('[' + d['constraint'] + ']')}: {escape(d['detail'])}")
        if len(r.cheaper_failed) > 12:
            console.print(f"  ... {len(r.cheaper_failed) - 12} more (--json lists all)")
    console.print("[dim]accuracy cost per precision (typical, model-dependent; profiles/quality.yaml):[/]")
    refs = {}
    for p in r.precisions:
        q = r.quality.of(p)
        refs.update(q.references)
        console.print(f"[dim]  {p}: {escape(q.label)} ({escape(q.source)})[/]")
    if refs:
        console.print("[dim]  references: " + "; ".join(f"{k} = {escape(v)}" for k, v in refs.items()) + "[/]")
    console.print("[dim]notes:[/]")
    for n in r.notes:
        console.print(f"[dim]  - {escape(n)}[/]")


def cost_throughput_frontier(by_rent: list) -> list:
    """Options no cheaper (or equally priced) option beats in total tok/s: the monotone line of the plot."""
    out, best = [], -1.0
    for o in sorted(by_rent, key=lambda o: (o.cost.rent_usd_per_hour, -o.throughput_tok_s)):
        if o.throughput_tok_s > best:
            out.append(o)
            best = o.throughput_tok_s
    return out


def write_plot(r, path: str, force: bool = False) -> None:
    """Rent $/h vs total throughput of every priced option, per-user speed as colour, the frontier as a line."""
    target = Path(path)
    if not force:
        refuse_existing(target)
    if not r.by_rent:
        raise QfitError("no priced configuration to plot (add prices with --prices)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    xs = [o.cost.rent_usd_per_hour for o in r.by_rent]
    ys = [o.throughput_tok_s for o in r.by_rent]
    sc = ax.scatter(xs, ys, c=[o.decode_tok_s for o in r.by_rent], cmap="viridis", s=14, alpha=0.7)
    fig.colorbar(sc, ax=ax, label="per-user decode tok/s")
    front2 = cost_throughput_frontier(r.by_rent)
    ax.plot([o.cost.rent_usd_per_hour for o in front2], [o.throughput_tok_s for o in front2], "r-", lw=1,
            label="cheapest for its total tok/s")
    # the table's frontier has a third objective (tok/s per user): its points need not lie on the 2-D line above
    ax.scatter([o.cost.rent_usd_per_hour for o in r.frontier], [o.throughput_tok_s for o in r.frontier],
               facecolors="none", edgecolors="red", s=40, label="Pareto over $/h, total and per-user tok/s")
    c = r.chosen
    if c.cost.rent_usd_per_hour is not None:
        ax.annotate(f"chosen: {c.label}", (c.cost.rent_usd_per_hour, c.throughput_tok_s), fontsize=7,
                    xytext=(8, -14), textcoords="offset points", bbox={"fc": "white", "ec": "none", "alpha": 0.85},
                    arrowprops={"arrowstyle": "-", "lw": 0.5})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rent $/hour")
    ax.set_ylabel("total output tok/s")
    ax.set_title(f"{r.model.spec.name}: {_workload_line(r)}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        write_with(target, lambda tmp: fig.savefig(tmp, dpi=120, format="png"), overwrite=force, suffix=".png")
    finally:
        plt.close(fig)
