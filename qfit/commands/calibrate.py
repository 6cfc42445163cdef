"""`qfit calibrate RESULTS...`: fit speed factors per engine x device family from profile results, write a user overlay;
`qfit calibrate --reset`: undo the last calibration."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("calibrate")
@click.argument("results", nargs=-1)
@click.option("--out", type=click.Path(dir_okay=False),
              help="Overlay file to write or reset (one engine). Default: ~/.config/qfit/engines/<engine>.yaml.")
@click.option("--dry-run", is_flag=True, help="Show the fit and its effect on the reference plans (or what --reset "
                                              "would remove); write nothing.")
@click.option("--accept-unreliable", is_flag=True,
              help="Fold in results whose speed measurement was flagged unreliable (or never assessed).")
@click.option("--reset", is_flag=True, help="Undo the last calibration: restore the overlay it replaced, or remove it.")
@click.option("--json", "as_json", is_flag=True, help="Print the fit (or the reset) as JSON.")
@click.option("--gpu", help="Device of imported benchmark files that do not record it (vllm bench serve, GuideLLM); "
                            "overrides the file's (llama-bench). `cpu`: this machine's CPU.")
@click.option("--engine", help="Engine that served imported vllm bench serve / GuideLLM runs (vllm, sglang, ...).")
@click.option("--model", "model_ref", help="Model of imported files, when the recorded id or path does not resolve.")
@click.option("--precision", help="Precision of imported runs (default: the file's, else the checkpoint's dtype).")
@click.option("--wide", is_flag=True, help="Show every table column, whatever the terminal width.")
def calibrate(results, out, dry_run, accept_unreliable, reset, as_json, gpu, engine, model_ref, precision, wide):
    """Fold RESULTS into engine efficiency overlays, showing the error before/after and what the factors change in a
    few reference plans before writing. RESULTS are profile.json files (or `qfit profile --out` folders), or the
    JSON of `vllm bench serve --save-result`, GuideLLM (`--output kind=json`) or `llama-bench -o json`, told apart by
    content; each imported point is planned with the same inputs and shown predicted vs measured.

    Results whose speed was flagged unreliable by `qfit profile` are refused unless --accept-unreliable is given.
    The repository's reviewed profiles (profiles/engines/) are never edited: factors go to a user overlay, and
    `qfit calibrate --reset` undoes the last write (run it again to step further back).
    """
    from qfit.errors import QfitError

    if reset:
        if results:
            raise QfitError("--reset takes no RESULTS: it undoes the last calibration of each overlay (or of --out)")
        return _reset(out, dry_run, as_json)
    if not results:
        raise QfitError("no RESULTS: pass profile.json files or `qfit profile --out` folders (or --reset)")
    from qfit.calibrate_import.mapping import Flags, read_all
    from qfit.paths import overlay_dir
    from qfit.profile.calibration import fit, write_overlay
    from qfit.profile.calibration_preview import imported_after, preview

    loaded, imported = read_all(list(results), Flags(gpu, engine, model_ref, precision))
    fits = fit(loaded, accept_unreliable=accept_unreliable)
    if out and len({f["engine"] for f in fits}) > 1:
        raise QfitError("--out names one file but the results cover several engines: calibrate one engine at a time")
    for f in fits:
        f["preview"] = preview(f, f["accelerator"])
    imported_after(fits, imported)
    written = []
    if not dry_run:
        for f in fits:
            path = Path(out) if out else overlay_dir() / f"{f['engine']}.yaml"
            written.append(str(write_overlay(f, path)))
    if as_json:
        click.echo(json.dumps({"fits": fits, "written": written, "imported": imported}, indent=2))
        return
    _render(fits, written, dry_run, imported, wide)


def _render(fits: list[dict], written: list[str], dry_run: bool, imported: list[dict], wide: bool) -> None:
    from qfit.tables import Col, print_table
    from qfit.tables import console as make_console

    console = make_console(wide=wide)
    if imported:
        _print_imported(console, imported, wide)
    rows = [[f["engine"], f["family"], key, str(f[key]["points"]), f"{f[key]['factor']:.3f}",
             f"{f[key]['error_before_pct']:.1f} %", f"{f[key]['error_after_pct']:.1f} %"]
            for f in fits for key in ("decode", "prefill") if f[key]]
    cols = [Col("engine", "left"), Col("family", "left"), Col("figure", "left"), Col("points", drop=1),
            Col("factor"), Col("error before", drop=2), Col("error after")]
    print_table(console, cols, rows, wide=wide, title="speed calibration (factor = median measured/predicted; error = median "
                "|pred/meas - 1|)")
    for f in fits:
        _print_preview(console, f, wide)
        for s in f["sources"]:
            if s["measurement"] != "reliable":
                console.print(f"note: {s['file']} {s['measurement']}", markup=False)
    for p in written:
        click.echo(f"wrote {p} (undo: qfit calibrate --reset)")
    if dry_run:
        click.echo("dry run: nothing written")


def _print_imported(console, imported: list[dict], wide: bool) -> None:
    from qfit.tables import Col, print_table

    def cell(r, what):
        m, p, a = r.get(f"measured_{what}"), r.get(f"predicted_{what}"), r.get(f"after_{what}")
        return "" if m is None else f"{m:,.1f} / {p:,.1f} -> {a:,.1f} ({100 * (p / m - 1):+.0f} -> " \
            f"{100 * (a / m - 1):+.0f} %)"
    rows = [[r["tool"], r["label"], str(r["batch"]), f"{r['input_len']}/{r['output_len']}",
             cell(r, "prefill_tokens_per_s"), cell(r, "decode_tokens_per_s_per_seq")] for r in imported]
    cols = [Col("tool", "left", drop=2), Col("run", "left"), Col("batch", drop=1), Col("in/out tokens", drop=1),
            Col("prefill tok/s measured / plan -> after"), Col("decode tok/s/seq measured / plan -> after")]
    print_table(console, cols, rows, wide=wide, title="imported runs: measured vs planned for the same inputs, now -> with this fit "
                "(% = plan/measured - 1)")


def _print_preview(console, f: dict, wide: bool) -> None:
    from qfit.tables import Col, print_table

    pv = f["preview"]
    rows = []
    for r in pv["rows"]:
        cells = [r["model"], r["precision"], str(r["batch"]), f"{r['input_len']}/{r['output_len']}"]
        if "reason" in r:
            rows.append(cells + [f"n/a: {r['reason']}"[:60], ""])
            continue
        b, a = r["before"], r["after"]
        rows.append(cells + [f"{b['prefill_tokens_per_s']:,.1f} -> {a['prefill_tokens_per_s']:,.1f}",
                             f"{b['decode_tokens_per_s']:,.2f} -> {a['decode_tokens_per_s']:,.2f}"])
    cols = [Col("model", "left"), Col("precision", "left"), Col("batch", drop=2), Col("in/out tokens", drop=1),
            Col("prefill tok/s"), Col("decode tok/s/seq")]
    print_table(console, cols, rows, wide=wide, title=f"{f['engine']} on {pv['accelerator']}: reference plans, tokens/s before "
                "-> after this fit")
    if pv.get("reason"):
        console.print(pv["reason"], markup=False)


def _reset(out: str | None, dry_run: bool, as_json: bool) -> None:
    from qfit.errors import QfitError
    from qfit.paths import overlay_dir
    from qfit.profile.calibration import reset_overlay

    paths = [Path(out)] if out else sorted(overlay_dir().glob("*.yaml"))
    if not paths:
        raise QfitError(f"no calibration overlays in {overlay_dir()}: nothing to reset")
    done = [reset_overlay(p, dry_run) for p in paths]
    if as_json:
        click.echo(json.dumps({"reset": done, "dry_run": dry_run}, indent=2))
        return
    for d in done:
        verb = d["action"] if not dry_run else "would " + d["action"].removesuffix("d")
        now = (f"; in force after it: {_factors_text(d['now'])}" if d["now"]
               else "; plans use the reviewed profiles (profiles/engines/) again")
        click.echo(f"{verb} {d['path']}: factors removed {_factors_text(d['removed']) or '(none)'}{now}")


def _factors_text(factors: dict) -> str:
    return ", ".join(f"{fam} " + " ".join(f"{k} x{v:g}" for k, v in fs.items()) for fam, fs in factors.items())
