"""`qfit gpus`: the accelerator catalog as a table or JSON (the lead adds `models` to this module)."""

from __future__ import annotations

import json

import click


@click.command("gpus")
@click.option("--vendor", default=None, help="nvidia | amd | intel | apple | cpu")
@click.option("--segment", default=None, help="datacenter | workstation | consumer | unified | cpu")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of full catalog records instead of a table.")
def gpus(vendor: str | None, segment: str | None, as_json: bool) -> None:
    """List the accelerator catalog (profiles/gpus/*.yaml): memory, bandwidth, dense TFLOPS, interconnect, price."""
    from qfit.hardware import list_accelerators

    accs = list_accelerators(vendor=vendor, segment=segment)
    if as_json:
        click.echo(json.dumps([a.to_dict() for a in accs], indent=2))
        return
    _render_gpus(accs)


def _num(v: float | None) -> str:
    """Whole numbers from 100 up, one decimal below (0.18 TFLOPS FP16 on a P40 keeps two)."""
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def _memory_cell(a) -> str:
    opts = "/".join(f"{m:g}" for m in a.memory_options_gib)
    cell = opts if len(a.memory_options_gib) > 1 else f"{a.memory_gib:g}"
    if a.small_memory_rule:
        cell += f" ({a.small_memory_rule[0]:.0%}-{a.default_usable_fraction:.0%} usable)"
    elif a.default_usable_fraction < 1:
        cell += f" ({a.default_usable_fraction:.0%} usable)"
    return cell


def _interconnect_cell(a) -> str:
    ic = a.interconnect
    if ic.kind == "none":
        return "-"
    bw = f" {ic.bandwidth_gbps:g}" if ic.bandwidth_gbps else ""
    return f"{ic.kind}{bw} x{ic.max_gpus}"


def _rent_cell(a) -> str:
    return f"{a.rent.value:.2f} ({a.rent.date[:7]})" if a.rent else "-"


def _render_gpus(accs) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Accelerator catalog ({len(accs)} devices; dense TFLOPS, sources in profiles/gpus/*.yaml)")
    for col, justify in (("name", "left"), ("memory GiB", "right"), ("BW GB/s", "right"), ("BF16", "right"),
                         ("FP8", "right"), ("INT8", "right"), ("link GB/s x max", "left"), ("TDP W", "right"),
                         ("rent $/h", "right")):
        table.add_column(col, justify=justify)
    for a in accs:
        table.add_row(a.short_name, _memory_cell(a), f"{a.bandwidth_gbps:,.0f}", _num(a.tflops.bf16),
                      _num(a.tflops.fp8), _num(a.tflops.int8), _interconnect_cell(a), _num(a.tdp_w),
                      _rent_cell(a))
    console = Console()
    if not console.is_terminal:  # piped: do not squeeze a 9-column table into rich's 80-column default
        console = Console(width=150)
    console.print(table)


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (name, hub id, architecture, params).")
def models(as_json: bool) -> None:
    """List the built-in model catalog (profiles/models/*.json): real configs with their sources, usable offline."""
    from qfit.model.params import count_params
    from qfit.model.sources import catalog_entries
    from qfit.model.spec import parse_config

    rows = []
    for e in catalog_entries():
        spec = parse_config(e["config"], name=e["name"])
        c = count_params(spec)
        rows.append({"name": e["name"], "hub_id": e["hub_id"], "aliases": e.get("aliases", []),
                     "architecture": spec.model_type, "attention_kind": spec.attention_kind,
                     "params_total": c.total, "params_active": c.active, "layers": spec.layers,
                     "max_position_embeddings": spec.max_position_embeddings})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    from qfit.units import fmt_count

    table = Table(title=f"Model catalog ({len(rows)} models; configs and sources in profiles/models/)")
    for col in ("name", "hub id", "architecture", "attention", "params", "active"):
        table.add_column(col, justify="right" if col in {"params", "active"} else "left")
    for r in rows:
        active = fmt_count(r["params_active"]) if r["params_active"] < r["params_total"] else ""
        table.add_row(r["name"], r["hub_id"] or "", r["architecture"], r["attention_kind"],
                      fmt_count(r["params_total"]), active)
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    console.print(table)
