"""`qfit inspect CKPT`: layout and kernel-compatibility checks from config and safetensors headers only."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("inspect")
@click.argument("ckpt", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def inspect(ckpt, as_json):
    """Check a GPTQ checkpoint: format, bits, group size, per-tensor layout, bytes, vLLM Marlin compatibility."""
    from qfit.quantize.inspect import inspect_checkpoint

    result = inspect_checkpoint(ckpt)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _render(result)
    if not result.ok:
        raise SystemExit(1)


def _render(result) -> None:
    from rich.table import Table

    from qfit.tables import console

    d = result.to_dict()
    t = Table(title=f"qfit inspect {d['path']}", show_header=False)
    t.add_row("format", f"{d['quant_method']} / {d['format']}")
    t.add_row("recipe", f"{d['bits']}-bit, group {d['group_size']}, desc_act={d['desc_act']}, sym={d['sym']}")
    t.add_row("modules", f"{d['modules_checked']} quantized modules, {d['quantized_params']:,} weights")
    bpw = d["bits_per_weight"]
    t.add_row("stored", f"{bpw:.3f} bits/weight" if bpw else "n/a")
    t.add_row("bytes", f"{d['tensor_bytes']:,} in tensors, {d['file_bytes']:,} in files")
    t.add_row("layout", "[green]ok[/]" if d["ok"] else "[red]problems[/]")
    for p in d["config_problems"]:
        t.add_row("config", f"[red]{p}[/]")
    for m in d["modules"]:
        for p in m["problems"]:
            t.add_row(m["name"], f"[red]{p}[/]")
    t.add_row("loaders", d["loaders"])
    t.add_row("vLLM Marlin", "[green]compatible[/]" if d["marlin_compatible"] else "[yellow]not compatible[/]")
    for r in d["marlin_reasons"]:
        t.add_row("", r)
    console().print(t)
