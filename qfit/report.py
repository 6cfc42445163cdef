"""Rich rendering of plans: single breakdown, batch curve, precision x accelerator matrix."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from qfit.memory import GIB
from qfit.units import fmt_count, fmt_tokens

console = Console()
if not console.is_terminal:  # piped or captured: tables stay readable instead of squeezed to 80 columns
    console = Console(width=160)


def _cap(gib: float) -> str:
    return f"{gib:g}" if float(gib).is_integer() else f"{gib:.1f}"


def _gib(x: float) -> str:
    return f"{x / GIB:,.1f}"


def _title(p) -> str:
    spec, prm = p.model.spec, p.params
    moe = f", {fmt_count(prm.active)} active" if prm.active < prm.total else ""
    return (f"[bold]{spec.name}[/] ({fmt_count(prm.total)} params{moe}, {spec.attention_kind}) on "
            f"[bold]{p.gpus} x {p.accelerator.name}[/] ({_cap(p.accelerator.memory_gib)} GiB) — {p.precision.label}, "
            f"{p.engine.name}, context {fmt_tokens(p.context)}, batch {p.batch}, KV {p.kv_dtype}")


def print_plan(p) -> None:
    console.print(_title(p))
    m = p.memory
    t = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    t.add_column("memory")
    t.add_column("GiB (all GPUs)", justify="right")
    t.add_column("GB", justify="right")
    for label, value in (("weights", m.weights), ("KV cache", m.kv_cache), ("activations", m.activations),
                         ("runtime overhead", m.overhead), ("total", m.total)):
        t.add_row(label, _gib(value), f"{value / 1e9:,.1f}")
    t.add_row("per GPU", _gib(m.per_gpu), f"{m.per_gpu / 1e9:,.1f}")
    t.add_row("budget per GPU", _gib(p.budget_per_gpu), f"{p.budget_per_gpu / 1e9:,.1f}")
    console.print(t)
    if p.fits:
        console.print(f"[green bold]FITS[/]  {p.reason}; headroom {_gib(p.headroom_per_gpu)} GiB per GPU")
    else:
        console.print(f"[red bold]DOES NOT FIT[/]  {p.reason}")
        if p.suggestion:
            console.print(f"  {p.suggestion}")
    console.print(f"max context at batch {p.batch}: {p.max_context:,} tokens;  "
                  f"max batch at {fmt_tokens(p.context)} context: {p.max_batch:,}")
    if p.performance is not None:
        _print_perf(p.performance.to_dict(), hypothetical=not p.fits)
    console.print("[dim]assumptions:[/]")
    perf = list(p.performance.assumptions) if p.performance is not None else []
    for a in dict.fromkeys(list(p.assumptions) + perf):
        console.print(f"[dim]  - {a}[/]")


def _print_perf(d: dict, hypothetical: bool = False) -> None:
    band = d.get("error_band") or {}
    dec = band.get("decode_pct")
    pre = band.get("prefill_pct")
    console.print(
        ("speed if it fit" if hypothetical else "speed") + f": prefill {d['prefill_tokens_per_s']:,.0f} tok/s" + (f" (±{pre:.0f}%)" if pre else "")
        + f", decode {d['decode_tokens_per_s']:,.1f} tok/s per sequence" + (f" (±{dec:.0f}%)" if dec else "")
        + f", TTFT {d['ttft_s']:.3g} s, TPOT {d['tpot_s'] * 1000:.3g} ms, {d['bound']}-bound")


def print_curve(plans: list) -> None:
    console.print(_title(plans[0]).replace(f"batch {plans[0].batch}", "batch curve"))
    t = Table(header_style="bold", box=None)
    for col in ("batch", "per GPU GiB", "fits", "decode tok/s/seq", "total tok/s", "TTFT s", "bound"):
        t.add_column(col, justify="right")
    for p in plans:
        d = p.performance.to_dict() if p.performance is not None else {}
        total = d.get("aggregate_tokens_per_s")
        t.add_row(str(p.batch), _gib(p.memory.per_gpu), "yes" if p.fits else "[red]no[/]",
                  f"{d['decode_tokens_per_s']:,.1f}" if d else "n/a", f"{total:,.0f}" if total else "n/a",
                  f"{d['ttft_s']:.3g}" if d else "n/a", d.get("bound", "n/a"))
    console.print(t)
    from qfit.perf import quantization_stops_helping
    from qfit.plan import curve_points

    first = quantization_stops_helping(curve_points(plans))
    if first:
        console.print(f"compute-bound from batch {first}: weight-only quantization no longer speeds decode there")


def print_matrix(plans: list) -> None:
    p0 = plans[0]
    accs = list(dict.fromkeys(p.accelerator.key for p in plans))
    names = {p.accelerator.key: p.accelerator.short_name for p in plans}
    precs = list(dict.fromkeys(p.precision.name for p in plans))
    cell = {(p.precision.name, p.accelerator.key): p for p in plans}
    console.print(f"[bold]{p0.model.spec.name}[/] ({fmt_count(p0.params.total)} params) — {p0.gpus} GPU(s) each, "
                  f"context {fmt_tokens(p0.context)}, batch {p0.batch}; cells: headroom per GPU in GiB")
    t = Table(header_style="bold", box=None)
    t.add_column("precision")
    t.add_column("weights GB", justify="right")
    for a in accs:
        t.add_column(names[a], justify="right")
    for prec in precs:
        row = [prec, next(f"{p.memory.weights / 1e9:,.1f}" for p in plans if p.precision.name == prec)]
        for a in accs:
            p = cell.get((prec, a))
            if p is None:
                row.append("[dim]-[/]")
            elif p.fits:
                row.append(f"[green]✓ {p.headroom_per_gpu / GIB:,.1f}[/]")
            else:
                row.append(f"[red]✗ needs {p.min_gpus}[/]" if p.min_gpus else "[red]✗ >64[/]")
        t.add_row(*row)
    console.print(t)
    console.print("[dim]✓ fits (headroom GiB per GPU), ✗ does not (GPUs of that kind it would need); "
                  "'-' the engine cannot run that precision there. "
                  "Engine: vllm on GPUs, llama.cpp for GGUF, transformers on Apple/CPU unless --engine.[/]")


def print_precisions(plans: list) -> None:
    """One accelerator, every precision: weights, per-GPU need, verdict, GPUs needed, max context, speed."""
    p0 = plans[0]
    console.print(f"[bold]{p0.model.spec.name}[/] ({fmt_count(p0.params.total)} params, {p0.model.spec.attention_kind})"
                  f" on [bold]{p0.gpus} x {p0.accelerator.name}[/] ({_cap(p0.accelerator.memory_gib)} GiB each) — "
                  f"context {fmt_tokens(p0.context)}, batch {p0.batch}")
    t = Table(header_style="bold", box=None)
    for col in ("precision", "engine", "weights GB", "KV GiB", "per GPU GiB", "verdict", "GPUs needed",
                "max context", "decode tok/s"):
        t.add_column(col, justify="left" if col in {"precision", "engine", "verdict"} else "right")
    for p in plans:
        d = p.performance.to_dict() if p.performance is not None else None
        verdict = "[green]fits[/]" if p.fits else "[red]does not fit[/]"
        t.add_row(p.precision.name, p.engine.name, f"{p.memory.weights / 1e9:,.1f}", _gib(p.memory.kv_cache),
                  _gib(p.memory.per_gpu), verdict, str(p.min_gpus) if p.min_gpus else ">64",
                  f"{p.max_context:,}" if p.fits else "-", f"{d['decode_tokens_per_s']:,.1f}" if d else "n/a")
    console.print(t)
    console.print(f"[dim]budget {_gib(p0.budget_per_gpu)} GiB per GPU under vllm (memory fraction), full memory under "
                  "transformers/llama.cpp; max context at this batch on the GPUs asked; GPUs needed keeps the "
                  "precision. `--precision P` for the full breakdown and assumptions.[/]")


def _loss_cell(q) -> str:
    if q.ppl_delta_pct is not None:
        return "baseline" if q.ppl_delta_pct == 0 else f"+{q.ppl_delta_pct:g}% ppl"
    return f"{q.recovery_pct:g}% kept" if q.recovery_pct is not None else "no figure"


def _count3(n: float) -> str:
    """Three significant figures: 79.7B, 3.87B, 839M (999.9M rounds up to 1.00B)."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        value = float(f"{n / div:.3g}")
        if value >= 1:
            return (f"{value:.3g}" if value >= 100 else f"{value:#.3g}").rstrip(".") + suffix
    return f"{n:.0f}"


def _survey_row(r) -> list[str]:
    p, prm = r.plan, r.plan.params
    d = p.performance.to_dict()
    band = (d.get("error_band") or {}).get("decode_pct")
    params = _count3(prm.total) + (f"/{_count3(prm.active)}" if p.model.spec.is_moe else "")
    return [p.model.spec.name, params, p.precision.name, p.engine.name, f"{p.memory.per_gpu / GIB:,.1f}",
            f"{p.max_context:,}", f"{d['decode_tokens_per_s']:,.1f}" + (f" ±{band:.0f}%" if band else ""),
            f"{d['prefill_tokens_per_s']:,.0f}", _loss_cell(r.quality)]


def print_survey(result) -> None:
    """`qfit plan --gpu X` without --model: the models that fit, ranked, then those that fit nowhere."""
    acc, req = result.accelerator, result.request
    fit = [r for r in result.rows if r.fits]
    nowhere = [r for r in result.rows if not r.fits]
    ctx = fmt_tokens(req.context) if req.context else "8k (or a model's shorter maximum)"
    if result.detected:
        console.print(f"[dim]detected: {result.detected}[/]")
    console.print(f"[bold]{req.gpus} x {acc.name}[/] ({_cap(acc.memory_gib)} GiB): {len(fit)} of {result.considered} "
                  f"models fit at context {ctx}, batch {req.batch}; by {result.sort}")
    t = Table(header_style="bold", box=None, pad_edge=False)
    for col in ("model", "params/active", "precision", "engine", "GiB/GPU", "max ctx", "decode tok/s", "prefill",
                "loss"):
        t.add_column(col, justify="left" if col in {"model", "precision", "engine", "loss"} else "right",
                     no_wrap=col != "model")
    for r in fit:
        t.add_row(*_survey_row(r))
    console.print(t)
    if nowhere:
        console.print(f"[bold]Fit nowhere on {req.gpus} x {acc.short_name}[/] ({len(nowhere)}), down to 3-bit:")
        for r in nowhere:
            console.print(f"  {r.model.spec.name} ({fmt_count(r.plan.params.total)}): {r.need}")
    console.print("[dim]precision: the most bits that fit (16 > 8 > 6 > 5 > 4 > 3), ties broken by the least loss "
                  "in profiles/quality.yaml (loss: perplexity increase or share of benchmark score kept; typical, "
                  "model-dependent); engine: the device's default for that format unless --engine; decode tok/s "
                  "per sequence at the batch, prefill tok/s of the context; `qfit plan --model M --gpu G "
                  "--precision P` shows one in full.[/]")
