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
