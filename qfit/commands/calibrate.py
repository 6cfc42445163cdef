"""`qfit calibrate RESULTS...`: fit speed factors per engine x device family from profile results, write a user overlay."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("calibrate")
@click.argument("results", nargs=-1, required=True)
@click.option("--out", type=click.Path(dir_okay=False),
              help="Overlay file to write (one engine). Default: ~/.config/qfit/engines/<engine>.yaml.")
@click.option("--dry-run", is_flag=True, help="Show the fit, write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the fit as JSON.")
def calibrate(results, out, dry_run, as_json):
    """Fold profile.json RESULTS (files or --out folders) into engine efficiency overlays, showing the error before/after.

    The repository's reviewed profiles (profiles/engines/) are never edited: factors go to a user overlay.
    """
    from qfit.errors import QfitError
    from qfit.paths import overlay_dir
    from qfit.profile.calibration import fit, read_results, write_overlay

    fits = fit(read_results(list(results)))
    if out and len({f["engine"] for f in fits}) > 1:
        raise QfitError("--out names one file but the results cover several engines: calibrate one engine at a time")
    written = []
    if not dry_run:
        for f in fits:
            path = Path(out) if out else overlay_dir() / f"{f['engine']}.yaml"
            written.append(str(write_overlay(f, path)))
    if as_json:
        click.echo(json.dumps({"fits": fits, "written": written}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table
    table = Table(title="speed calibration (factor = median measured/predicted; error = median |pred/meas - 1|)")
    for head in ("engine", "family", "figure", "points", "factor", "error before", "error after"):
        table.add_column(head)
    for f in fits:
        for key in ("decode", "prefill"):
            if f[key]:
                table.add_row(f["engine"], f["family"], key, str(f[key]["points"]), f"{f[key]['factor']:.3f}",
                              f"{f[key]['error_before_pct']:.1f} %", f"{f[key]['error_after_pct']:.1f} %")
    import sys
    Console(width=None if sys.stdout.isatty() else 140).print(table)
    for p in written:
        click.echo(f"wrote {p}")
