"""`qfit gpus`: the accelerator catalog as a table or JSON (the lead adds `models` to this module)."""

from __future__ import annotations

import json

import click


@click.command("gpus")
@click.option("--vendor", default=None, help="nvidia | amd | intel | apple | cpu")
@click.option("--segment", default=None, help="datacenter | workstation | consumer | unified | cpu")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of full catalog records instead of a table.")
@click.option("--wide", is_flag=True, help="Every column, however wide (default: fit the terminal, or 100 columns).")
def gpus(vendor: str | None, segment: str | None, as_json: bool, wide: bool) -> None:
    """List the accelerator catalog (profiles/gpus/*.yaml): memory, bandwidth, dense TFLOPS, interconnect, price."""
    from qfit.hardware import list_accelerators

    accs = list_accelerators(vendor=vendor, segment=segment)
    if as_json:
        click.echo(json.dumps([a.to_dict() for a in accs], indent=2))
        return
    _render_gpus(accs, wide)


def _num(v: float | None) -> str:
    """Whole numbers from 100 up, one decimal below (0.18 TFLOPS FP16 on a P40 keeps two)."""
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def _memory_cell(a) -> str:
    opts = "/".join(f"{m:g}" for m in a.memory_options_gib)
    cell = opts if len(a.memory_options_gib) > 1 else f"{a.memory_gib:g}"
    if a.small_memory_rule:
        cell += f" ({a.small_memory_rule[0] * 100:.0f}-{a.default_usable_fraction:.0%})"
    elif a.default_usable_fraction < 1:
        cell += f" ({a.default_usable_fraction:.0%})"
    return cell


def _interconnect_cell(a) -> str:
    ic = a.interconnect
    if ic.kind == "none":
        return "-"
    bw = f" {ic.bandwidth_gbps:g}" if ic.bandwidth_gbps else ""
    return f"{ic.kind}{bw} x{ic.max_gpus}"


def _rent_cell(a) -> str:
    return f"{a.rent.value:.2f} ({a.rent.date[:7]})" if a.rent else "-"


def _render_gpus(accs, wide: bool) -> None:
    from qfit.tables import Col, console, print_table

    cols = [Col("name", "left"), Col("memory GiB", short="GiB"), Col("BW GB/s", short="GB/s"), Col("BF16", drop=1),
            Col("FP8", drop=4), Col("INT8", drop=5), Col("link GB/s x max", "left", drop=3, short="link"),
            Col("TDP W", drop=6, short="W"), Col("rent $/h", drop=2)]
    rows = [[a.short_name, _memory_cell(a), f"{a.bandwidth_gbps:,.0f}", _num(a.tflops.bf16), _num(a.tflops.fp8),
             _num(a.tflops.int8), _interconnect_cell(a), _num(a.tdp_w), _rent_cell(a)] for a in accs]
    con = console(wide=wide)
    print_table(con, cols, rows, wide=wide,
                title=f"Accelerator catalog ({len(accs)} devices; dense TFLOPS, sources in profiles/gpus/*.yaml)")
    con.print("[dim]memory in GiB (usable share on unified memory); BW: memory bandwidth; BF16/FP8/INT8: dense "
              "tensor TFLOPS/TOPS (- not found); link: GPU-to-GPU per direction x largest group; rent: on-demand "
              "$/GPU-hour (snapshot month).[/]")


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (name, hub id, architecture, params).")
@click.option("--wide", is_flag=True, help="Every column, however wide (default: fit the terminal, or 100 columns).")
def models(as_json: bool, wide: bool) -> None:
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
    from qfit.tables import Col, console, print_table
    from qfit.units import fmt_count

    cols = [Col("name", "left"), Col("hub id", "left", drop=2), Col("architecture", "left", drop=3, short="arch"),
            Col("attention", "left", drop=1), Col("params"), Col("active")]
    table = [[r["name"], r["hub_id"] or "", r["architecture"], r["attention_kind"], fmt_count(r["params_total"]),
              fmt_count(r["params_active"]) if r["params_active"] < r["params_total"] else ""] for r in rows]
    print_table(console(wide=wide), cols, table, wide=wide,
                title=f"Model catalog ({len(rows)} models; configs and sources in profiles/models/)")
