"""Rich rendering of plans: single breakdown, batch curve, precisions on one device, precision x accelerator matrix,
and the survey of every model on one device. Widths follow qfit.tables (the terminal, or 100 columns; --wide: all)."""

from __future__ import annotations

from rich.table import Table

from qfit.memory import GIB
from qfit.tables import Col, console, print_table
from qfit.units import fmt_count, fmt_tokens


def _cap(gib: float) -> str:
    return f"{gib:g}" if float(gib).is_integer() else f"{gib:.1f}"


def _gib(x: float) -> str:
    return f"{x / GIB:,.1f}"


def _title(p) -> str:
    spec, prm = p.model.spec, p.params
    moe = f", {fmt_count(prm.active)} active" if prm.active < prm.total else ""
    nodes = f"{p.pipeline} nodes x " if p.pipeline > 1 else ""
    count = p.tensor_parallel if p.pipeline > 1 else p.gpus
    return (f"[bold]{spec.name}[/] ({fmt_count(prm.total)} params{moe}, {spec.attention_kind}) on "
            f"[bold]{nodes}{count} x {p.accelerator.name}[/] ({_cap(p.accelerator.memory_gib)} GiB) — {p.precision.label}, "
            f"{p.engine.name}, context {fmt_tokens(p.context)}, batch {p.batch}, KV {p.kv_dtype}")


def print_plan(p, wide: bool = False) -> None:
    con = console(wide=wide)
    con.print(_title(p))
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
    con.print(t)
    if p.fits:
        con.print(f"[green bold]FITS[/]  {p.reason}; headroom {_gib(p.headroom_per_gpu)} GiB per GPU")
    else:
        con.print(f"[red bold]DOES NOT FIT[/]  {p.reason}")
        if p.suggestion:
            con.print(f"  {p.suggestion}")
    if p.offload is not None:
        o = p.offload
        con.print(f"offload ({o.flag}): GPUs hold the table above, host memory {_gib(o.host_bytes)} of "
                  f"{_gib(o.host.bytes)} GiB; host bandwidth {o.host.bandwidth_gbps:.1f} GB/s ({o.host.source})")
    con.print(f"max context at batch {p.batch}: {p.max_context:,} tokens;  "
              f"max batch at {fmt_tokens(p.context)} context: {p.max_batch:,}")
    if p.kv_pool is not None and p.kv_pool.tokens:
        k = p.kv_pool
        state = f", {k.state_bytes_per_seq / 2**20:,.1f} MiB of recurrent state each" if k.state_bytes_per_seq else ""
        con.print(f"KV pool: {_gib(k.bytes_per_gpu)} GiB per GPU = {k.tokens:,} tokens; holds {k.max_concurrency:.2f} "
                  f"sequences of {fmt_tokens(p.context)} tokens{state} (vLLM logs these as 'GPU KV cache size' and "
                  "'Maximum concurrency')")
    if p.performance is not None:
        con.print(_perf_line(p.performance.to_dict(), hypothetical=not p.fits))
    con.print("[dim]assumptions:[/]")
    perf = list(p.performance.assumptions) if p.performance is not None else []
    for a in dict.fromkeys(list(p.assumptions) + perf):
        con.print(f"[dim]  - {a}[/]")


def _perf_line(d: dict, hypothetical: bool = False) -> str:
    band = d.get("error_band") or {}
    dec, pre = band.get("decode_pct"), band.get("prefill_pct")
    return (("speed if it fit" if hypothetical else "speed") + f": prefill {d['prefill_tokens_per_s']:,.0f} tok/s"
            + (f" (±{pre:.0f}%)" if pre else "") + f", decode {d['decode_tokens_per_s']:,.1f} tok/s per sequence"
            + (f" (±{dec:.0f}%)" if dec else "") + f", TTFT {d['ttft_s']:.3g} s, TPOT {d['tpot_s'] * 1000:.3g} ms, "
            f"{d['bound']}-bound")


def print_curve(plans: list, wide: bool = False) -> None:
    from qfit.perf import quantization_stops_helping
    from qfit.plan import curve_points

    con = console(wide=wide)
    con.print(_title(plans[0]).replace(f"batch {plans[0].batch}", "batch " + ",".join(str(p.batch) for p in plans)))
    cols = [Col("batch", drop=0), Col("GiB/GPU"), Col("fits", "left", drop=0), Col("decode tok/s/seq"),
            Col("total tok/s"), Col("TTFT s", drop=1), Col("bound", "left", drop=2)]
    rows = []
    for p in plans:
        d = p.performance.to_dict() if p.performance is not None else {}
        total = d.get("aggregate_tokens_per_s")
        rows.append([str(p.batch), _gib(p.memory.per_gpu), "yes" if p.fits else "[red]no[/]",
                     f"{d['decode_tokens_per_s']:,.1f}" if d else "n/a", f"{total:,.0f}" if total else "n/a",
                     f"{d['ttft_s']:.3g}" if d else "n/a", d.get("bound", "n/a")])
    print_table(con, cols, rows, wide=wide)
    first = quantization_stops_helping(curve_points(plans))
    con.print(f"compute-bound from batch {first}: weight-only quantization no longer speeds decode there" if first
              else f"memory-bound at every batch shown: weight-only quantization ({plans[0].precision.label}) still "
              "speeds decode at each")
    con.print("[dim]GiB/GPU: memory per GPU at that batch; decode tok/s/seq: per sequence, total = x batch; "
              "bound: what limits a decode step (memory bandwidth or compute).[/]")


def _matrix_cell(p) -> str:
    if p is None:
        return "[dim]-[/]"
    if p.fits:
        return f"[green]✓ {p.headroom_per_gpu / GIB:,.1f}[/]"
    return f"[red]✗ needs {p.min_gpus}[/]" if p.min_gpus else "[red]✗ >64[/]"


def print_matrix(plans: list, wide: bool = False) -> None:
    """Precisions x accelerators; accelerators that do not fit the width go to a further table, none is dropped."""
    con = console(wide=wide)
    p0 = plans[0]
    accs = list(dict.fromkeys(p.accelerator.key for p in plans))
    names = {p.accelerator.key: p.accelerator.short_name for p in plans}
    precs = list(dict.fromkeys(p.precision.name for p in plans))
    cell = {(p.precision.name, p.accelerator.key): p for p in plans}
    weights = {p.precision.name: p.memory.weights for p in plans}
    con.print(f"[bold]{p0.model.spec.name}[/] ({fmt_count(p0.params.total)} params) — {p0.gpus} GPU(s) each, "
              f"context {fmt_tokens(p0.context)}, batch {p0.batch}; cells: headroom per GPU in GiB")
    for chunk in _chunks(accs, names, None if wide else con.width):
        cols = [Col("precision", "left"), Col("weights GiB")] + [Col(names[a]) for a in chunk]
        rows = [[prec, _gib(weights[prec])] + [_matrix_cell(cell.get((prec, a))) for a in chunk] for prec in precs]
        print_table(con, cols, rows, wide=True)
    con.print("[dim]✓ fits (headroom GiB per GPU), ✗ does not (GPUs of that kind it would need); "
              "'-' the engine cannot run that precision there. "
              "Engine: vllm on GPUs, llama.cpp for GGUF, transformers on Apple/CPU unless --engine.[/]")


def _chunks(accs: list[str], names: dict, width: int | None) -> list[list[str]]:
    """Accelerator columns in groups that fit `width` beside the precision and weights columns."""
    if width is None:
        return [accs]
    fixed, chunks, cur, used = len("gguf-q4_k_m") + len("weights GiB") + 2, [], [], 0
    for a in accs:
        w = max(len(names[a]), len("✗ needs 64")) + 2
        if cur and fixed + used + w > width:
            chunks.append(cur)
            cur, used = [], 0
        cur.append(a)
        used += w
    return chunks + [cur] if cur else chunks


def print_precisions(plans: list, wide: bool = False) -> None:
    """One accelerator, every precision: weights, per-GPU need, verdict, GPUs needed, max context, speed."""
    con = console(wide=wide)
    p0 = plans[0]
    con.print(f"[bold]{p0.model.spec.name}[/] ({fmt_count(p0.params.total)} params, {p0.model.spec.attention_kind})"
              f" on [bold]{p0.gpus} x {p0.accelerator.name}[/] ({_cap(p0.accelerator.memory_gib)} GiB each) — "
              f"context {fmt_tokens(p0.context)}, batch {p0.batch}")
    cols = [Col("precision", "left"), Col("engine", "left", drop=3), Col("weights", drop=4), Col("KV", drop=5),
            Col("per GPU"), Col("verdict", "left"), Col("GPUs needed", drop=2, short="GPUs"),
            Col("max context", drop=1, short="max ctx"), Col("decode tok/s", short="tok/s")]
    rows = []
    for p in plans:
        d = p.performance.to_dict() if p.performance is not None else None
        rows.append([p.precision.name, p.engine.name, _gib(p.memory.weights), _gib(p.memory.kv_cache),
                     _gib(p.memory.per_gpu), "[green]fits[/]" if p.fits else "[red]does not fit[/]",
                     str(p.min_gpus) if p.min_gpus else ">64", f"{p.max_context:,}" if p.fits else "-",
                     f"{d['decode_tokens_per_s']:,.1f}" if d else "n/a"])
    print_table(con, cols, rows, wide=wide)
    con.print(f"[dim]memory in GiB; {_budget_words(plans)}; max context at this batch on the GPUs asked; GPUs "
              "needed keeps the precision. `--precision P` for the full breakdown and assumptions.[/]")


def _budget_words(plans: list) -> str:
    """What each engine shown may fill (only the engines in the table: a CPU plan quotes no vLLM budget)."""
    seen = {p.engine.name: p for p in plans}
    words = [f"{name} fills {p.budget_per_gpu / GIB:,.1f} GiB per GPU ({p.engine.memory_fraction:.0%} reserved)"
             if p.engine.memory_fraction else f"{name} may use all {p.budget_per_gpu / GIB:,.1f} GiB"
             for name, p in seen.items()]
    return "; ".join(words)


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


def print_survey(result, wide: bool = False) -> None:
    """`qfit plan --gpu X` without --model: the models that fit, ranked, then those that fit nowhere."""
    con = console(wide=wide)
    acc, req = result.accelerator, result.request
    fit = [r for r in result.rows if r.fits]
    nowhere = [r for r in result.rows if not r.fits]
    ctx = fmt_tokens(req.context) if req.context else "8k (or a model's shorter maximum)"
    if result.detected:
        con.print(f"[dim]detected: {result.detected}[/]")
    con.print(f"[bold]{req.gpus} x {acc.name}[/] ({_cap(acc.memory_gib)} GiB): {len(fit)} of {result.considered} "
              f"models fit at context {ctx}, batch {req.batch}; by {result.sort}")
    cols = [Col("model", "left"), Col("params/active", drop=4, short="params"), Col("precision", "left"),
            Col("engine", "left", drop=3), Col("GiB/GPU"), Col("max ctx", drop=1), Col("decode tok/s"),
            Col("prefill", drop=5), Col("loss", "left", drop=2)]
    print_table(con, cols, [_survey_row(r) for r in fit], wide=wide)
    if nowhere:
        con.print(f"[bold]Fit nowhere on {req.gpus} x {acc.short_name}[/] ({len(nowhere)}), down to 3-bit:")
        for r in nowhere:
            con.print(f"  {r.model.spec.name} ({fmt_count(r.plan.params.total)}): {r.need}")
    con.print("[dim]precision: the most bits that fit (16 > 8 > 6 > 5 > 4 > 3), ties broken by the least loss "
              "in profiles/quality.yaml (loss: perplexity increase or share of benchmark score kept; typical, "
              "model-dependent); engine: the device's default for that format unless --engine; decode tok/s "
              "per sequence at the batch, prefill tok/s of the context; `qfit plan --model M --gpu G "
              "--precision P` shows one in full.[/]")
