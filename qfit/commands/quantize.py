"""`qfit quantize MODEL OUT`: write a standard GPTQ (v1) checkpoint with GPTQModel, or an RTN baseline."""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path

import click

from qfit.errors import QfitError
from qfit.quantize.calib import DEFAULT_CALIB
from qfit.quantize.job import AUTO_CALIBRATION, DEFAULT_DAMP, HELDOUT_WINDOWS
from qfit.stdio import stdout_to_stderr


def _group_size(value: str) -> int | None:
    from qfit.precision import GROUP_SIZES

    if str(value).strip().lower() == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise QfitError(f"--group-size {value!r}: expected auto or one of "
                        f"{', '.join(map(str, GROUP_SIZES['gptq']))}") from None


def _terminate(signum, frame):  # SIGTERM -> same cleanup path as Ctrl-C (temp folder removed)
    raise KeyboardInterrupt


def _rich_progress(console):
    """A per-layer bar with elapsed time and ETA; returns (context manager, factory for run.quantize)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    # no stdout/stderr redirection by rich: during the run they point at the log file (qfit.quantize.terminal)
    bar = Progress(TextColumn("[bold]quantizing[/] layer"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
                   redirect_stdout=False, redirect_stderr=False)

    def factory(total_layers: int):
        task = bar.add_task("layers", total=total_layers)
        return lambda _layer: bar.advance(task)

    return bar, factory


def _progress_view(console, write):
    """(context manager, factory): the rich bar on a terminal, plain throttled lines otherwise (logs, CI, pipes)."""
    if console.is_terminal:
        return _rich_progress(console)
    from qfit.quantize.terminal import PlainProgress

    return contextlib.nullcontext(), lambda total: PlainProgress(write, total)


_AUTO = (f"auto (default): {AUTO_CALIBRATION['cpu'][0]} x {AUTO_CALIBRATION['cpu'][1]} tokens when the codes are "
         f"computed on the CPU (minutes for a 135M model on 2 cores; with the mix and act-order this beat RTN on "
         f"held-out text for SmolLM2-135M, README), "
         f"{AUTO_CALIBRATION['cuda'][0]} x {AUTO_CALIBRATION['cuda'][1]} on a GPU (the GPTQ paper's setting)")


@click.command("quantize")
@click.argument("model")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--bits", type=int, default=4, show_default=True, help="2, 3, 4 or 8.")
@click.option("--group-size", "group_size", default="auto", show_default=True,
              help="auto (128 where it divides every quantized layer's input width, else 64 or 32, else -1), or "
                   "-1 (per column), 16, 32, 64, 128, 256, 512, 1024; checked before any work; Marlin takes "
                   "-1/32/64/128.")
@click.option("--desc-act/--no-desc-act", default=None,
              help="Solve columns in activation order, groups kept static (g_idx i // group size, so the checkpoint is "
                   "desc_act=false, which vLLM and Marlin load). Default: on for gptq (it made GPTQ beat RTN on "
                   "held-out text: README, issue 17), off for rtn.")
@click.option("--clip-search/--no-clip-search", default=None,
              help="Per group, search the clipped range with the least error (GPTQ's mse search, norm 2.4) instead "
                   "of min-max. Default: on for gptq (it made 3-bit GPTQ beat RTN on held-out text; about 2x the CPU "
                   "time), not available for rtn.")
@click.option("--sym/--asym", default=True, show_default=True, help="Symmetric grid (Marlin needs sym).")
@click.option("--keep", multiple=True, metavar="PATTERN",
              help="Leave matching modules 16-bit (glob on the module inside a block, e.g. 'mlp.down_proj', or in one "
                   "block, 'layers.3.mlp.down_proj'); repeatable.")
@click.option("--override", "overrides", multiple=True, metavar="PATTERN=BITS[:GROUP]",
              help="Store matching modules at other bits / group size, e.g. 'self_attn.v_proj=8'; repeatable.")
@click.option("--damp", type=float, default=DEFAULT_DAMP, show_default=True,
              help="Hessian dampening (fraction of mean diagonal).")
@click.option("--calib", default=DEFAULT_CALIB, show_default=True,
              help="Calibration text: built-in mix (= xsum,boolq-passages,pydoc: news, encyclopedia, Python docs, "
                   "equal shares), xsum|boolq-passages|pydoc, a .txt/.jsonl/.parquet file or a hub dataset; several "
                   "comma-separated (e.g. mix,notes.txt) share the windows equally. One source alone tends to "
                   "overfit (the run warns).")
@click.option("--nsamples", default="auto", metavar="N|auto", help=f"Calibration windows. {_AUTO}.")
@click.option("--seqlen", default="auto", metavar="N|auto", help="Tokens per calibration window (auto: as --nsamples).")
@click.option("--method", type=click.Choice(["gptq", "rtn"]), default="gptq", show_default=True)
@click.option("--heldout", "heldout_windows", type=int, default=HELDOUT_WINDOWS, show_default=True, metavar="N",
              help="After the run, perplexity of the checkpoint and the float model on N 512-token held-out windows "
                   "of each domain (news, encyclopedia, Python docs; text calibration never reads); 0 skips it.")
@click.option("--compare-rtn", is_flag=True, help="Also score round-to-nearest at the same bits and group size.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--target-size", metavar="SIZE",
              help="Mixed precision: per-module widths (2/3/4/8, or 16-bit) filling SIZE of weights (e.g. 90MB, "
                   "20GB; the planner's byte count, embeddings included) with the least measured quality loss.")
@click.option("--target-bpw", metavar="BITS",
              help="Mixed precision: an average of BITS stored bits per weight over the quantized linears "
                   "(scales, zeros and g_idx included), e.g. 3.6.")
@click.option("--fit", "fit", metavar="GPU",
              help="Mixed precision: the largest weights that still fit GPU (a `qfit plan` name) at --context, "
                   "--batch, --gpus and --engine, by the planner's memory formula.")
@click.option("--gpus", type=int, default=1, show_default=True, help="With --fit: GPUs (tensor parallel).")
@click.option("--context", metavar="TOKENS", help="With --fit: context per sequence (e.g. 32k; default the model's).")
@click.option("--batch", type=int, default=1, show_default=True, help="With --fit: concurrent sequences.")
@click.option("--engine", help="With a budget: the serving engine (vllm, sglang, ...; --fit: default as `qfit plan` "
                               "picks); vllm/sglang load 4/8-bit GPTQ only, so only those widths are chosen.")
@click.option("--force", is_flag=True, help="Replace an existing OUT.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--trust-remote-code", is_flag=True, help="Allow model code from the hub (off by default).")
def quantize(model, out, bits, group_size, desc_act, clip_search, sym, keep, overrides, damp, calib, nsamples, seqlen, method,
             heldout_windows, compare_rtn, device, target_size, target_bpw, fit, gpus, context, batch, engine, force,
             as_json, trust_remote_code):
    """Quantize MODEL (HF folder, .gguf, hub id or catalog name) into OUT as a GPTQ v1 checkpoint with a qfit-report.

    Before any heavy work it checks the recipe against the model's shapes and prints a time estimate (with its error
    band, from constants measured per host in profiles/quantize/time.yaml). GPTQModel's and transformers' output goes
    to OUT/qfit-quantize.log; the terminal shows a few lines and per-layer progress.

    With --target-size, --target-bpw or --fit, widths are chosen per layer and module (fused q/k/v and gate/up kept uniform) to
    minimise the summed Hessian-weighted error measured in one float pass over the calibration data, under the byte
    budget (--bits is then not used); the allocation is written to OUT/qfit-allocation.json."""
    from rich.console import Console

    from qfit.quantize.job import QuantizeJob, parse_override
    from qfit.quantize.mixed.budget import Target
    from qfit.quantize.run import quantize as run_quantize
    from qfit.quantize.terminal import terminal_stream

    job = QuantizeJob.from_flags(bits=bits, group_size=_group_size(group_size), desc_act=desc_act, sym=sym,
                                 keep=tuple(keep), overrides=tuple(parse_override(o) for o in overrides), damp=damp,
                                 method=method, nsamples=nsamples, seqlen=seqlen, calib=calib,
                                 heldout_windows=heldout_windows, compare_rtn=compare_rtn, clip_search=clip_search)
    target = Target.from_flags(target_size=target_size, target_bpw=target_bpw, fit=fit, gpus=gpus, context=context,
                               batch=batch, engine=engine)
    ctx = click.get_current_context()
    if target is not None and ctx.get_parameter_source("bits") is not click.core.ParameterSource.DEFAULT:
        raise QfitError("--bits sets one width for every module; with --target-size/--target-bpw/--fit the widths are "
                        "chosen per module: drop --bits (or pin modules with --override PATTERN=BITS)")
    term = terminal_stream()   # stays on the terminal while the libraries' output goes to the log file
    console = Console(file=term)

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    signal.signal(signal.SIGTERM, _terminate)
    bar, factory = _progress_view(console, say)
    with stdout_to_stderr(), bar:
        if target is None:
            report = run_quantize(model, out, job, device=device, force=force, progress=factory, notify=say,
                                  trust_remote_code=trust_remote_code)
        else:
            from qfit.quantize.mixed.run import quantize_mixed

            report, _ = quantize_mixed(model, out, job, target, device=device, force=force, progress=factory,
                                       notify=say, trust_remote_code=trust_remote_code)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    from qfit.tables import console as table_console

    _render(table_console(), report)


def _render(console, report) -> None:
    from rich.table import Table

    from qfit.quantize.report import time_line

    d = report.to_dict()
    t = Table(title=f"qfit quantize -> {d['out']}", show_header=False)
    r = d["recipe"]
    extra = "".join(f" keep={k}" for k in r["keep"]) + "".join(
        f" {o['pattern']}={o['bits']}" for o in r["overrides"])
    t.add_row("method", f"{d['method']} {r['bits']}-bit g{r['group_size']} desc_act={r['desc_act']} sym={r['sym']}"
              + extra)
    if d["calibration"]:
        c = d["calibration"]
        t.add_row("calibration", f"{c['nsamples']} x {c['seqlen']} tokens ({r['calibration_size']}), "
                  f"{c['source']['name']} ({c['source']['split']})")
    t.add_row("stored", f"{d['bits_per_weight']:.3f} bits/weight over {d['quantized_params']:,} weights")
    t.add_row("weights", f"{d['weight_bytes'] / 1e6:,.1f} MB (float {d['float_weight_bytes'] / 1e6:,.1f} MB)")
    pred = d["planner_prediction"]
    t.add_row("planner predicted", f"{pred['weight_bytes'] / 1e6:,.1f} MB" if pred.get("available")
              else f"n/a ({pred.get('reason')})")
    t.add_row("on disk", f"{d['size_on_disk_bytes'] / 1e6:,.1f} MB")
    t.add_row("time", f"{time_line(d)} on {d['device']}")
    t.add_row("peak RSS", f"{d['peak_rss_bytes'] / 1e9:.2f} GB (predicted {d['memory_estimate']['total_bytes'] / 1e9:.2f} GB)")
    if d["heldout"]:
        from qfit.quantize.heldout import heldout_header, heldout_lines

        t.add_row("held-out ppl", heldout_header(d["heldout"]))
        for line in heldout_lines(d["heldout"]):
            t.add_row("", line)
    if d["log_file"]:
        t.add_row("library log", d["log_file"])
    for note in d["notes"]:
        t.add_row("note", note)
    console.print(t)
